"""The ``crashd`` command: serve, worker, project, sweep, migrate, prune, triage, patch-notes, progress-log,
group, user, token, release.

Every command reads the same Settings (``CRASHD_*`` environment variables). This module builds
the parser and runs a command; each family of commands lives in its own module of server/cli/.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from pydantic import ValidationError

from schemas.settings import Settings
from server.cli.context import NoDatabase
from server.cli.groups import add_group_commands
from server.cli.offline import cmd_signature, cmd_stackwalk
from server.cli.projects import cmd_project_create, cmd_project_limit, cmd_project_list
from server.cli.prune import add_prune_command, add_symbols_prune_command
from server.cli.releases import add_release_commands
from server.cli.reprocess import cmd_reprocess, cmd_sweep
from server.cli.serve import cmd_migrate, cmd_serve, cmd_worker
from server.cli.symbols import cmd_symbols_upload
from server.cli.triage import add_triage_commands
from server.cli.users import add_user_commands

log = logging.getLogger("crashd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crashd", description="crash-report ingestion server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="web processes on the one port (uvicorn's); the processing worker is separate")
    serve.add_argument("--worker-processes", type=int, default=1, metavar="M",
                       help="without Redis: worker processes taking crashes from the database (1; each ~100 MB)")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run a processing worker: RQ's with CRASHD_REDIS_URL, else one that "
                            "takes crashes from the database (`crashd serve` starts that one itself)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--fork", action="store_true",
                        help="run each job in a forked process (isolation; every job starts cold)")
    worker.add_argument("--max-jobs", type=int, default=None,
                        help="exit after this many jobs (let a supervisor start a fresh worker)")
    worker.set_defaults(func=cmd_worker)
    project = sub.add_parser("project", help="manage projects").add_subparsers(dest="action", required=True)
    for name, func in (("create", cmd_project_create), ("list", cmd_project_list)):
        p = project.add_parser(name)
        if name == "create":
            p.add_argument("name")
        p.add_argument("--json", action="store_true")
        p.add_argument("--base-url", default=None,
                       help="server URL used in printed upload URLs (default: the address the last "
                       "`crashd serve` on this data folder listened on, else http://127.0.0.1:8000; "
                       "CRASHD_PUBLIC_URL wins)")
        p.set_defaults(func=func)
    limit = project.add_parser("limit", help="a project's own rate limit (reports a minute)")
    limit.add_argument("project", help="name or id")
    limit.add_argument("per_minute", help="N, 0 for no limit, or `default` (CRASHD_RATE_LIMIT_PER_MINUTE)")
    limit.set_defaults(func=cmd_project_limit)
    sub.add_parser("sweep", help="re-enqueue stuck crashes once").set_defaults(func=cmd_sweep)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    reprocess = sub.add_parser("reprocess", help="run crashes through processing again")
    which = reprocess.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every crash")
    which.add_argument("--group", type=int, metavar="ID", help="the crashes of one group")
    which.add_argument("--since", metavar="DATE", help="crashes received since DATE (ISO) or 24h / 7d ago")
    which.add_argument("--failed", action="store_true",
                       help="the `failed` crashes, each with CRASHD_MAX_ATTEMPTS attempts again")
    reprocess.set_defaults(func=cmd_reprocess)
    walk = sub.add_parser("stackwalk", help="walk and symbolicate minidumps offline")
    walk.add_argument("dumps", nargs="+", metavar="DUMP")
    walk.add_argument("--symbols", action="append", default=[], metavar="DIR",
                      help="a symbol folder in the Breakpad layout (repeatable)")
    walk.add_argument("--json", action="store_true", help="rust-minidump's JSON, one document per line")
    walk.add_argument("--all-threads", action="store_true", help="human output: every thread")
    walk.set_defaults(func=cmd_stackwalk)
    sig = sub.add_parser("signature", help="process one dump offline and explain its signature")
    sig.add_argument("dump", metavar="DUMP")
    sig.add_argument("--symbols", action="append", default=[], metavar="DIR",
                     help="a symbol folder in the Breakpad layout (repeatable)")
    sig.add_argument("--json", action="store_true", help="signature, notes and version as JSON")
    sig.set_defaults(func=cmd_signature)
    symbols = sub.add_parser("symbols", help="debug files").add_subparsers(dest="action", required=True)
    up = symbols.add_parser("upload", help="upload debug files to a crashd server (skips those it has)")
    up.add_argument("paths", nargs="+", metavar="PATH",
                    help="a Breakpad symbol tree, .sym or native debug files (ELF, Mach-O, PDB), or a zip")
    up.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    up.add_argument("--token", required=True, help="an API token: the project's uploader token (`crashd token "
                    "create NAME --role uploader --project P`) or an admin's; never an ingest key")
    up.add_argument("--project", default="_", help="project id or name in the upload URL (default `_`: an "
                    "uploader token's project; for an admin token, the shared store)")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds per request (the server converts the file)")
    up.add_argument("--json", action="store_true", help="a JSON summary with every file's outcome")
    up.set_defaults(func=cmd_symbols_upload)
    add_symbols_prune_command(symbols)  # crashd symbols prune (docs/symbols.md)
    add_triage_commands(sub)
    add_group_commands(sub)
    add_user_commands(sub)  # crashd user ..., crashd token ... (docs/auth.md)
    add_prune_command(sub)  # crashd prune (docs/deploy.md)
    add_release_commands(sub)  # crashd release deploy (docs/releases.md)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crashd`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings()
    except ValidationError as exc:  # name the problem, never echo the values (secrets)
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"configuration error: {where}: {error['msg']}", file=sys.stderr)
        return 2
    func: Callable[[Settings, argparse.Namespace], int] = args.func
    try:
        return func(settings, args)
    except NoDatabase as exc:  # run in the wrong folder: never a fresh empty database (server/cli/context.py)
        print(f"error: {exc}", file=sys.stderr)
        print("  (a new installation: `crashd serve` or `crashd migrate` creates it)", file=sys.stderr)
        return 2

