"""``crashd user ...`` and ``crashd token ...``: dashboard users and API tokens (docs/auth.md).

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
from storage import queries, users, web_sessions
from storage.db import make_engine, migrate


def _engine(settings: Settings) -> Engine:
    """The database, migrated."""
    engine = make_engine(settings)
    migrate(engine)
    return engine


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
        users.create_user(_engine(settings), name=args.name, role=args.role, password_hash=hash_password(password))
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
    engine = _engine(settings)
    if not users.set_password(engine, name=args.name, password_hash=hash_password(password)):
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 1
    web_sessions.revoke_user(engine, user_name=args.name)  # every signed-in copy, server-side
    print(f"password of {args.name!r} changed; its sessions have ended")
    return 0


def cmd_user_list(settings: Settings, args: argparse.Namespace) -> int:
    """Users with their roles (JSON lines with --json)."""
    for user in users.list_users(_engine(settings)):
        row = {"name": user.name, "role": user.role, "created_at": user.created_at.isoformat(),
               "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None}
        print(json.dumps(row) if args.json else f"{user.name}\t{user.role}\t{row['last_login_at'] or 'never'}")
    return 0


def cmd_user_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Delete a user; the user's sessions stop working."""
    engine = _engine(settings)
    if not users.delete_user(engine, name=args.name):
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 1
    web_sessions.revoke_user(engine, user_name=args.name)  # every signed-in copy, server-side
    print(f"user {args.name!r} deleted")
    return 0


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create an API token and print it once (only its hash is kept)."""
    engine = _engine(settings)
    try:
        project_id = _project_id(engine, args.project)
        _, token = users.create_token(engine, name=args.name, role=args.role, project_id=project_id)
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
    """API tokens by name and role (the secrets are not kept)."""
    for row in users.list_tokens(_engine(settings)):
        item = {"name": row.name, "role": row.role, "project_id": row.project_id, "created_at": row.created_at.isoformat()}
        role = f"{row.role}:{row.project_id}" if row.project_id is not None else row.role
        print(json.dumps(item) if args.json else f"{row.name}\t{role}\t{item['created_at']}")
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Delete an API token; requests with it are refused."""
    if not users.revoke_token(_engine(settings), name=args.name):
        print(f"error: no token {args.name!r}", file=sys.stderr)
        return 1
    print(f"API token {args.name!r} revoked")
    return 0


def add_user_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """crashd user create|list|delete|password, crashd token create|list|revoke."""
    user = sub.add_parser("user", help="dashboard users").add_subparsers(dest="action", required=True)
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    for group, verb, func, help_text in (
        (user, "create", cmd_user_create, "create a user; the password is read from stdin"),
        (user, "password", cmd_user_password, "set a user's password from stdin (ends its sessions)"),
        (user, "delete", cmd_user_delete, "delete a user (ends its sessions)"),
        (user, "list", cmd_user_list, "list users"),
        (token, "create", cmd_token_create, "create an API token and print it once"),
        (token, "revoke", cmd_token_revoke, "revoke an API token"),
        (token, "list", cmd_token_list, "list API tokens"),
    ):
        p = group.add_parser(verb, help=help_text)
        if verb != "list":
            p.add_argument("name")
        if verb == "create" and group is user:
            p.add_argument("--role", required=True, choices=users.ROLES, help="admin: read and change; viewer: read")
        elif verb == "create":
            p.add_argument("--role", required=True, choices=users.TOKEN_ROLES,
                           help="admin: read and change; viewer: read; uploader: upload symbols to --project only")
            p.add_argument("--project", help="the project (id or name) an uploader token uploads symbols to")
        if verb == "list":
            p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(func=func)
