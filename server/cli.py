"""The ``crashd`` command: serve, worker, project, sweep, migrate, prune, triage, patch-notes, progress-log,
user, token.

Every command reads the same Settings (``CRASHD_*`` environment variables).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

from pydantic import ValidationError

from schemas.settings import Settings
from schemas.tables import Project

log = logging.getLogger("crashd")


def project_urls(settings: Settings, project: Project, base_url: str) -> dict[str, str | int | None]:
    """What a client needs to upload to project: its key and both endpoint URLs."""
    base = (settings.public_url or base_url).rstrip("/")
    scheme, _, host = base.partition("://")
    return {
        "project": project.name,
        "project_id": project.id,
        "ingest_key": project.ingest_key,
        "dsn": f"{scheme}://{project.ingest_key}@{host}/{project.id}",
        "minidump_url": f"{base}/api/{project.id}/minidump/?sentry_key={project.ingest_key}",
        "submit_url": f"{base}/submit?key={project.ingest_key}",
    }


def _base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the HTTP server (and, without Redis, the in-process worker)."""
    import uvicorn

    from server import log_redaction
    from server.app import build_state, create_app, init_sentry
    from server.triage_cli import rules_ok
    from storage import queries

    if not rules_ok(settings):
        return 2
    try:
        settings.resolve_session_secret()  # the dashboard's cookie key; production must set it
    except ValueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    log_redaction.install()  # our own log lines (the root logger's handlers)
    init_sentry(settings)
    state = build_state(settings)
    projects = queries.list_projects(state.ctx.engine)
    project = projects[0] if projects else queries.create_project(state.ctx.engine, name="default")
    urls = project_urls(settings, project, _base_url(args.host, args.port))
    mode = "RQ on " + settings.redis_url if settings.redis_url else "in-process worker"
    print(f"crashd listening on {_base_url(args.host, args.port)}  ({state.ctx.engine.dialect.name}, {mode})")
    print(f"  project '{project.name}' minidump upload URL: {urls['minidump_url']}")
    print(f"  project '{project.name}' Breakpad submit URL: {urls['submit_url']}")
    if settings.environment == "development":
        print(f"  admin token: {state.admin_token}")
    else:  # never write a production secret to logs
        print("  admin token: the value of CRASHD_ADMIN_TOKEN")
    # After the admin token: scripts (and tests' serve_process) read the first four lines.
    print(f"  project '{project.name}' DSN for sentry-native / sentry-sdk: {urls['dsn']}")
    print(f"  dashboard: {_base_url(args.host, args.port)}/" + dashboard_hint(state.ctx.engine))
    sys.stdout.flush()
    try:
        # X-Forwarded-For only from CRASHD_TRUSTED_PROXIES: uvicorn's default believes any
        # 127.0.0.1 peer, which let anyone behind a local proxy pick the address the sign-in
        # throttle counts; and no ingest key or token in the access log (server/log_redaction.py)
        uvicorn.run(create_app(settings, state), host=args.host, port=args.port, log_level=args.log_level,
                    proxy_headers=bool(settings.trusted_proxies), forwarded_allow_ips=settings.trusted_proxies,
                    log_config=log_redaction.uvicorn_log_config())
    finally:
        state.queue.close()
    return 0


def dashboard_hint(engine: "Engine") -> str:
    """How to sign in: a reminder to create the first user while there is none."""
    from storage import users

    if users.list_users(engine):
        return ""
    return "  (no users yet: `crashd user create NAME --role admin` reads a password from stdin)"


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run an RQ worker for the processing queue."""
    if not settings.redis_url:
        print("crashd worker needs CRASHD_REDIS_URL; without it `crashd serve` runs the jobs itself",
              file=sys.stderr)
        return 2
    from server.triage_cli import rules_ok

    if not rules_ok(settings):
        return 2

    from storage.db import migrate
    from workers import jobs
    from sqlalchemy.exc import SQLAlchemyError
    from workers.rq_worker import OutageLog, StopSignal, run_worker, wait_for

    ctx = jobs.build_context(settings)
    stop = StopSignal()
    stop.install()  # a worker started while the database is down waits for it, as for Redis
    if not wait_for(lambda: migrate(ctx.engine), (SQLAlchemyError,), OutageLog(what="the database"), stop):
        return 0
    if args.fork:
        # A process per job: a crash in native code cannot take the worker down, but every
        # job starts cold (imports, a database connection, symbol caches): ~10x slower.
        ctx.engine.dispose()
    else:
        # Jobs run in this process and keep it warm: one engine with pooled connections and
        # one symbol provider with loaded modules for every job. RQ's time limit still
        # applies (SIGALRM in this thread); the pipeline also stops itself at 0.8 of it.
        jobs.install_context(ctx)
    # Redis down (at start or later): the worker waits and resumes (workers/rq_worker.py)
    return run_worker(settings, fork=args.fork, burst=args.burst, max_jobs=args.max_jobs)


def cmd_project_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a project and print its ingest key and upload URLs."""
    from storage import queries
    from storage.db import make_engine, migrate

    engine = make_engine(settings)
    migrate(engine)
    try:
        project = queries.create_project(engine, name=args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    urls = project_urls(settings, project, args.base_url)
    if args.json:
        print(json.dumps(urls))
    else:
        for key, value in urls.items():
            print(f"{key}: {value}")
    return 0


def cmd_project_list(settings: Settings, args: argparse.Namespace) -> int:
    """List projects with their keys and URLs (JSON lines with --json)."""
    from storage import queries
    from storage.db import make_engine, migrate

    engine = make_engine(settings)
    migrate(engine)
    for project in queries.list_projects(engine):
        urls = project_urls(settings, project, args.base_url)
        print(json.dumps(urls) if args.json else f"{project.id}\t{project.name}\t{project.ingest_key}\t{urls['dsn']}")
    return 0


def cmd_project_limit(settings: Settings, args: argparse.Namespace) -> int:
    """Set a project's own rate limit: N reports a minute, 0 for none, `default` for the
    server's CRASHD_RATE_LIMIT_PER_MINUTE. Servers see it within ProjectKeys' 10 s."""
    from storage import queries
    from storage.db import make_engine, migrate

    if args.per_minute == "default":
        limit = None
    elif args.per_minute.isdigit():
        limit = int(args.per_minute)
    else:
        print(f"error: {args.per_minute!r}: give a number of reports a minute, 0 or `default`", file=sys.stderr)
        return 2
    engine = make_engine(settings)
    migrate(engine)
    project = queries.set_rate_limit(engine, ref=args.project, per_minute=limit)
    if project is None:
        print(f"error: no project {args.project!r}", file=sys.stderr)
        return 1
    shown = {None: f"the server's default ({settings.rate_limit_per_minute or 'none'})", 0: "none"}
    print(f"project {project.name!r}: rate limit {shown.get(limit, f'{limit} reports a minute')}")
    return 0


def cmd_sweep(settings: Settings, args: argparse.Namespace) -> int:
    """Re-enqueue crashes stuck in `received`/`processing` once, then exit."""
    from storage.db import migrate
    from workers import jobs
    from workers.queue import InProcessJobQueue, make_queue
    from workers.sweeper import sweep

    ctx = jobs.build_context(settings)
    migrate(ctx.engine)
    jobs.install_context(ctx)
    queue = make_queue(settings)
    enqueued = sweep(ctx, queue)
    if isinstance(queue, InProcessJobQueue):
        queue.join()
    queue.close()
    print(f"re-enqueued {len(enqueued)} crashes")
    return 0


def cmd_stackwalk(settings: Settings, args: argparse.Namespace) -> int:
    """Process dumps offline with the worker's code: one JSON document per line with --json."""
    from pathlib import Path

    from symbolicator.process import local_provider, process_minidump
    from symbolicator.report_text import format_report

    provider = local_provider([Path(d) for d in args.symbols], settings.symbol_cache_dir)
    status = 0
    for path in args.dumps:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            status = 1
            continue
        report = process_minidump(data, provider)
        if args.json:
            print(json.dumps(report, separators=(",", ":")))
        else:
            print(format_report(report, all_threads=args.all_threads))
    return status


def cmd_symbols_upload(settings: Settings, args: argparse.Namespace) -> int:
    """Upload debug files to a crashd server, skipping those it already holds (docs/symbols.md)."""
    from server.symbols_client import upload_paths

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one progress line per file, not per request
    return upload_paths(args.paths, url=args.url, token=args.token, project=args.project, as_json=args.json,
                        timeout=args.timeout)


def cmd_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    """Reprocess crashes after a change to the lists or rules (or symbols)."""
    from server.groups_api import parse_since
    from storage.db import migrate
    from workers import jobs
    from workers.queue import InProcessJobQueue, make_queue
    from workers.reprocess import enqueue_all, select_crashes

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return 2
    ctx = jobs.build_context(settings)
    migrate(ctx.engine)
    jobs.install_context(ctx)
    crash_ids = select_crashes(ctx, everything=args.all, group_id=args.group, since=since, failed=args.failed)
    queue = make_queue(settings)
    bar = progress_bar("reprocess")
    enqueue_all(queue, crash_ids, bar)
    if isinstance(queue, InProcessJobQueue):  # no Redis: the jobs run here, wait for them
        queue.join()
    queue.close()
    where = "processed" if isinstance(queue, InProcessJobQueue) else "enqueued on RQ"
    print(f"{len(crash_ids)} crashes {where}", file=sys.stderr)
    return 0


def progress_bar(label: str, width: int = 30) -> Callable[[int, int], None]:
    """A text progress bar on stderr: redrawn in place on a terminal, a line per 10% in logs."""
    tty = sys.stderr.isatty()
    shown = {"tenth": -1}

    def draw(done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        line = f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if tty:
            print("\r" + line, end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif 10 * done // max(total, 1) != shown["tenth"]:
            shown["tenth"] = 10 * done // max(total, 1)
            print(line, file=sys.stderr, flush=True)
    return draw


def cmd_signature(settings: Settings, args: argparse.Namespace) -> int:
    """Process one dump offline and print its signature with the notes and each frame's fate
    (``--json``: the Result as JSON)."""
    from pathlib import Path

    from symbolicator.process import local_provider, process_minidump
    from triage.signature import explain, generate

    try:
        data = Path(args.dump).read_bytes()
    except OSError as exc:
        print(f"error: {args.dump}: {exc}", file=sys.stderr)
        return 1
    provider = local_provider([Path(d) for d in args.symbols], settings.symbol_cache_dir)
    report = process_minidump(data, provider)
    if args.json:
        result = generate(report)
        print(json.dumps({"signature": result.signature, "notes": result.notes, "version": result.version}))
    else:
        print(explain(report))
    return 0


def cmd_triage_report(settings: Settings, args: argparse.Namespace) -> int:
    """The triage meeting's agenda (server/triage_cli.py)."""
    from server.triage_cli import cmd_report

    return cmd_report(settings, args)


def cmd_patch_notes(settings: Settings, args: argparse.Namespace) -> int:
    """The crashes fixed in a build and the testers to ask for a retest (server/triage_cli.py)."""
    from server import triage_cli

    return triage_cli.cmd_patch_notes(settings, args)


def cmd_progress_log(settings: Settings, args: argparse.Namespace) -> int:
    """The P0/P1 log as Markdown (server/triage_cli.py)."""
    from server import triage_cli

    return triage_cli.cmd_progress_log(settings, args)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Apply database migrations and exit."""
    from storage.db import make_engine, migrate

    migrate(make_engine(settings))
    print("database is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crashd", description="crash-report ingestion server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run an RQ worker (needs CRASHD_REDIS_URL)")
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
        p.add_argument("--base-url", default="http://127.0.0.1:8000",
                       help="server URL used in printed upload URLs (CRASHD_PUBLIC_URL wins)")
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
    from server.prune_cli import add_symbols_prune_command

    add_symbols_prune_command(symbols)  # crashd symbols prune (docs/symbols.md)
    add_triage_commands(sub)
    from server.prune_cli import add_prune_command
    from server.users_cli import add_user_commands

    add_user_commands(sub)  # crashd user ..., crashd token ... (docs/auth.md)
    add_prune_command(sub)  # crashd prune (docs/deploy.md)
    return parser


def add_triage_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """crashd triage report, crashd patch-notes, crashd progress-log (docs/triage.md)."""
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--project", metavar="P", help="only this project (name or id)")
        p.add_argument("--format", choices=("markdown", "json"), default="markdown")

    triage = sub.add_parser("triage", help="triage outputs").add_subparsers(dest="action", required=True)
    report = triage.add_parser("report", help="new and top groups, open P0/P1, fixes awaiting verification")
    report.add_argument("--since", default="24h", metavar="DATE", help="crashes since DATE (ISO) or 24h / 7d ago")
    report.add_argument("--no-mark", action="store_true", help="do not record this as the last report")
    common(report)
    report.set_defaults(func=cmd_triage_report)
    notes = sub.add_parser("patch-notes", help="groups fixed in a build and the testers who hit them")
    notes.add_argument("--build", required=True, help="the fix build, e.g. 0.9.9-staging-beta2")
    common(notes)
    notes.set_defaults(func=cmd_patch_notes)
    progress = sub.add_parser("progress-log", help="the P0/P1 log as Markdown")
    common(progress)
    progress.set_defaults(func=cmd_progress_log)


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
    return func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
