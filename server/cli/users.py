"""``crashd user ...`` and ``crashd token ...``: dashboard users, their per-project roles
(``crashd user grant|revoke``) and API tokens (docs/auth.md).

Passwords are read from stdin (one line; a prompt without echo on a terminal), never from the
command line, where ``ps`` and shell history would show them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from sqlalchemy.engine import Engine

from schemas.settings import Settings
from server.auth import hash_password
from server.cli.context import command_engine
from storage import grants, queries, users, web_sessions


def read_password() -> str | None:
    """One line of stdin without its line ending (a no-echo prompt on a terminal); None when empty."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    return password or None


def cmd_user_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a user with the password read from stdin."""
    password = read_password()
    if password is None:
        print("error: empty password (give it on stdin: one line)", file=sys.stderr)
        return 1
    try:
        users.create_user(command_engine(settings), name=args.name, role=args.role, password_hash=hash_password(password))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name!r} created ({args.role})")
    return 0


def cmd_user_password(settings: Settings, args: argparse.Namespace) -> int:
    """Set a user's password from stdin; the user's sessions end."""
    password = read_password()
    if password is None:
        print("error: empty password (give it on stdin: one line)", file=sys.stderr)
        return 1
    engine = command_engine(settings)
    if not users.set_password(engine, name=args.name, password_hash=hash_password(password)):
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 1
    web_sessions.revoke_user(engine, user_name=args.name)  # every signed-in copy, server-side
    print(f"password of {args.name!r} changed; its sessions have ended")
    return 0


def cmd_user_list(settings: Settings, args: argparse.Namespace) -> int:
    """Users with their roles and project grants (JSON lines with --json)."""
    engine = command_engine(settings)
    by_user, _ = grants.all_grants(engine)
    names = _project_names(engine)
    for user in users.list_users(engine):
        held = by_user.get(user.name, ())
        row = {"name": user.name, "role": user.role, "created_at": user.created_at.isoformat(),
               "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
               "grants": [_grant_json(g, names) for g in held]}
        print(json.dumps(row) if args.json else
              f"{user.name}\t{user.role}\t{row['last_login_at'] or 'never'}\t{_grants_text(held, names)}")
    return 0


def _project_names(engine: Engine) -> dict[int, str]:
    return {p.id: p.name for p in queries.list_projects(engine) if p.id is not None}


def _grant_json(grant: grants.Grant, names: dict[int, str]) -> dict[str, object]:
    return {"project_id": grant.project_id, "project": names.get(grant.project_id), "role": grant.role,
            "security": grant.security}


def _grants_text(held: tuple[grants.Grant, ...], names: dict[int, str]) -> str:
    """``game:triager+security,tools:viewer``; ``every project`` without grants."""
    if not held:
        return "every project"
    return ",".join(f"{names.get(g.project_id, g.project_id)}:{g.role}{'+security' if g.security else ''}"
                    for g in held)


def _user_in_project(engine: Engine, args: argparse.Namespace) -> int:
    """The id of ``--project`` for the user ``args.name``. Raises ValueError for an unknown
    user or project."""
    if users.get_user(engine, name=args.name) is None:
        raise ValueError(f"no user {args.name!r}")
    project_id = _project_id(engine, args.project)
    assert project_id is not None  # --project is required
    return project_id


def cmd_user_grant(settings: Settings, args: argparse.Namespace) -> int:
    """Give a user a role in one project (replacing its role there); from now on the user
    sees only the projects it has grants in, unless it is a global admin."""
    engine = command_engine(settings)
    try:
        grants.set_user_grant(engine, user_name=args.name, project_id=_user_in_project(engine, args),
                              role=args.role, security=args.security)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name!r} is {args.role}{' with security' if args.security else ''} in project {args.project!r}")
    return 0


def cmd_user_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Take a user's role in one project away (with none left, a global viewer reads every
    project again)."""
    engine = command_engine(settings)
    try:
        if not grants.revoke_user_grant(engine, user_name=args.name, project_id=_user_in_project(engine, args)):
            raise ValueError(f"user {args.name!r} has no role in project {args.project!r}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name!r} has no role in project {args.project!r} any more")
    user = users.get_user(engine, name=args.name)
    if user is not None and user.role == "viewer" and not grants.user_grants(engine, user_name=args.name):
        print(f"note: {args.name!r} has no project role left: as a global viewer it reads every project again "
              "(docs/auth.md)", file=sys.stderr)
    return 0


def cmd_user_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Delete a user; the user's sessions stop working."""
    engine = command_engine(settings)
    if not users.delete_user(engine, name=args.name):
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 1
    web_sessions.revoke_user(engine, user_name=args.name)  # every signed-in copy, server-side
    print(f"user {args.name!r} deleted")
    return 0


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create an API token and print it once (only its hash is kept)."""
    engine = command_engine(settings)
    try:
        project_id = _project_id(engine, args.project)
        _, token = users.create_token(engine, name=args.name, role=args.role, project_id=project_id,
                                      security=args.security)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(token)
    scope = f" for project {args.project!r}" if args.project else ""
    print(f"API token {args.name!r} ({args.role}{scope}): shown once, keep it now "
          "(send it as `Authorization: Bearer <token>`)", file=sys.stderr)
    return 0


def _project_id(engine: Engine, ref: str | None) -> int | None:
    """The id of the project named or numbered ref (None for None). Raises ValueError when unknown."""
    if ref is None:
        return None
    project = queries.find_project(engine, ref=ref)
    if project is None:
        raise ValueError(f"no project {ref!r}")
    return project.id


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> int:
    """API tokens by name, role and project grants (the secrets are not kept)."""
    engine = command_engine(settings)
    _, by_token = grants.all_grants(engine)
    names = _project_names(engine)
    for row in users.list_tokens(engine):
        held = by_token.get(row.id, ()) if row.id is not None else ()
        item = {"name": row.name, "role": row.role, "project_id": row.project_id, "created_at": row.created_at.isoformat(),
                "grants": [_grant_json(g, names) for g in held]}
        role = f"{row.role}:{row.project_id}" if row.project_id is not None else row.role
        role = _grants_text(held, names) if row.role == users.PROJECT_ONLY else role
        print(json.dumps(item) if args.json else f"{row.name}\t{role}\t{item['created_at']}")
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Delete an API token; requests with it are refused."""
    if not users.revoke_token(command_engine(settings), name=args.name):
        print(f"error: no token {args.name!r}", file=sys.stderr)
        return 1
    print(f"API token {args.name!r} revoked")
    return 0


def add_user_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """crashd user create|list|delete|password|grant|revoke, crashd token create|list|revoke."""
    user = sub.add_parser("user", help="dashboard users").add_subparsers(dest="action", required=True)
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    for group, verb, func, help_text in (
        (user, "create", cmd_user_create, "create a user; the password is read from stdin"),
        (user, "password", cmd_user_password, "set a user's password from stdin (ends its sessions)"),
        (user, "delete", cmd_user_delete, "delete a user (ends its sessions)"),
        (user, "list", cmd_user_list, "list users with their project grants"),
        (user, "grant", cmd_user_grant, "give a user a role in one project"),
        (user, "revoke", cmd_user_revoke, "take a user's role in one project away"),
        (token, "create", cmd_token_create, "create an API token and print it once"),
        (token, "revoke", cmd_token_revoke, "revoke an API token"),
        (token, "list", cmd_token_list, "list API tokens"),
    ):
        p = group.add_parser(verb, help=help_text)
        if verb != "list":
            p.add_argument("name")
        if verb in ("grant", "revoke") and group is user:
            p.add_argument("--project", required=True, help="the project (id or name)")
        if verb == "grant":
            p.add_argument("--role", required=True, choices=grants.GRANT_ROLES,
                           help="viewer: read; triager: also ticket actions, merge, reprocess; admin: everything "
                                "in the project")
            p.add_argument("--security", action="store_true", help="also see the project's restricted items")
        if verb == "create" and group is user:
            p.add_argument("--role", required=True, choices=users.ROLES, help="admin: read and change; viewer: read")
        elif verb == "create":
            p.add_argument("--role", required=True, choices=users.TOKEN_ROLES,
                           help="admin: read and change; viewer: read; triager (with --project): also ticket "
                                "actions, merge, reprocess; uploader: upload symbols to --project only; "
                                "deployer: post releases of --project only (docs/releases.md)")
            p.add_argument("--project", help="the project (id or name): an uploader's or deployer's, or the one project a "
                                             "viewer, triager or admin token is limited to")
            p.add_argument("--security", action="store_true",
                           help="with --project: the token also sees the project's restricted items")
        if verb == "list":
            p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(func=func)
