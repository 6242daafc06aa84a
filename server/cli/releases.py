"""``crashd release deploy VERSION``: tell crashd a version was deployed (docs/releases.md).

Reads the commits of ``--commits A..B`` with ``git log`` (at most 10,000: a longer range is
refused before anything is sent), then posts ``POST /api/<project>/releases/`` to ``--server``
with ``--token`` (a deployer token of the project, or an admin's), or, without ``--server``,
does the same in the local database with the server's own code (workers/releases.deploy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any
from urllib.parse import quote

import httpx

from schemas.settings import Settings
from server.cli.context import command_context, project_id_of
from storage import queries
from triage.releases import DEFAULT_ENVIRONMENT, MAX_COMMITS, MESSAGE_MAX, BadRelease, parse_release
from workers.releases import deploy
from workers.triage_jobs import worker_queue

# One commit per record: fields split by US (0x1f), records ended by RS (0x1e); %B is the
# raw body, which may hold newlines but not these control characters.
GIT_FORMAT = "%H%x1f%an%x1f%B%x1e"


class GitError(Exception):
    """git failed or the range holds too many commits; str() says which."""


def git_commits(revision_range: str, *, repo: str = ".") -> list[dict[str, str]]:
    """The commits of revision_range (``A..B``), newest first, as ``{"id", "author", "message"}``
    with messages cut to MESSAGE_MAX. Raises GitError (git's own message, or more than
    MAX_COMMITS commits: only MAX_COMMITS + 1 are read)."""
    if revision_range.startswith("-"):
        raise GitError(f"not a revision range: {revision_range!r}")
    try:
        done = subprocess.run(["git", "-C", repo, "log", f"--format={GIT_FORMAT}", f"--max-count={MAX_COMMITS + 1}",
                               revision_range, "--"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git log failed: {exc}") from exc
    if done.returncode != 0:
        raise GitError(f"git log {revision_range} failed: {done.stderr.strip()}")
    commits = []
    for record in done.stdout.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 3:
            commit_id, author, message = fields
            commits.append({"id": commit_id, "author": author, "message": message.strip()[:MESSAGE_MAX]})
    if len(commits) > MAX_COMMITS:
        raise GitError(f"more than {MAX_COMMITS} commits in {revision_range}: post a narrower range")
    return commits


def release_body(args: argparse.Namespace, commits: list[dict[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"version": args.version, "environment": args.environment, "commits": commits}
    body.update({k: v for k, v in (("url", args.url), ("deployed_at", args.deployed_at)) if v})
    return body


def post(server: str, token: str, project: str, body: dict[str, Any], *, timeout: float) -> tuple[int, dict[str, Any]]:
    """POST the release; (status, the JSON answer). Raises httpx.HTTPError when unreachable."""
    url = f"{server.rstrip('/')}/api/{quote(project, safe='')}/releases/"
    response = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text[:200]}
    return response.status_code, answer if isinstance(answer, dict) else {"detail": str(answer)[:200]}


def local(settings: Settings, project: str, body: dict[str, Any]) -> dict[str, Any]:
    """Do the deploy in the local database. Raises LookupError (project) or BadRelease."""
    ctx = command_context(settings)
    if project == "_":
        projects = queries.list_projects(ctx.engine)
        if len(projects) != 1:
            raise LookupError("name the project with --project (there is not exactly one)")
        project = str(projects[0].id)
    project_id = project_id_of(ctx, project)
    assert project_id is not None
    try:
        return deploy(ctx, worker_queue(ctx), project_id=project_id, release=parse_release(body))
    finally:
        ctx.engine.dispose()


def cmd_release_deploy(settings: Settings, args: argparse.Namespace) -> int:
    """Record a deploy (docs/releases.md); print the answer. 1 on any refusal."""
    try:
        commits = git_commits(args.commits, repo=args.repo) if args.commits else []
    except GitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    body = release_body(args, commits)
    if args.server:
        if not args.token:
            print("error: --server needs --token (a deployer token of the project)", file=sys.stderr)
            return 1
        try:
            status, answer = post(args.server, args.token, args.project, body, timeout=args.timeout)
        except httpx.HTTPError as exc:
            print(f"error: {args.server}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        if status != 200:
            print(f"error: HTTP {status} {answer.get('detail')}", file=sys.stderr)
            return 1
    else:
        try:
            answer = local(settings, args.project, body)
        except (LookupError, BadRelease) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(answer) if args.json else summary(answer))
    return 0


def summary(answer: dict[str, Any]) -> str:
    release = answer["release"]
    lines = [f"release {release['version']} ({release['environment']}): "
             + ("recorded" if answer["created"] else "already recorded, nothing changed"),
             f"resolved: {', '.join(f'#{t}' for t in answer['resolved']) or 'none'}"]
    if answer["already_resolved"]:
        lines.append(f"already resolved: {', '.join(f'#{t}' for t in answer['already_resolved'])}")
    if answer["unknown"]:
        lines.append(f"unknown references: {', '.join(answer['unknown'])}")
    for skipped in answer.get("skipped", []):
        lines.append(f"not resolved #{skipped['ticket']}: {skipped['why']}")
    lines.append(f"patch notes: {answer['patch_notes']}")
    return "\n".join(lines)


def add_release_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``crashd release deploy``."""
    release = sub.add_parser("release", help="releases: deploys that resolve tickets and send patch notes")
    actions = release.add_subparsers(dest="action", required=True)
    p = actions.add_parser("deploy", help="record a deploy of VERSION (docs/releases.md)")
    p.add_argument("version", metavar="VERSION", help="the deployed build, e.g. 0.9.9-staging-beta3")
    p.add_argument("--environment", default=DEFAULT_ENVIRONMENT, help="default staging")
    p.add_argument("--commits", metavar="A..B", help="the git range deployed (git log A..B; at most 10,000 commits)")
    p.add_argument("--repo", default=".", help="the git repository to read --commits from (default: here)")
    p.add_argument("--url", help="a link to the CI run")
    p.add_argument("--deployed-at", help="ISO 8601 time of the deploy (default now)")
    p.add_argument("--project", default="_", help="project id or name (default `_`: the deployer token's project; "
                   "locally the only project)")
    p.add_argument("--server", help="the crashd server's base URL; without it the local database is written")
    p.add_argument("--token", help="with --server: a deployer token of the project (or an admin's)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the request")
    p.add_argument("--json", action="store_true", help="print the server's JSON answer")
    p.set_defaults(func=cmd_release_deploy)
