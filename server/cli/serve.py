"""``crashd serve``, ``crashd worker`` and ``crashd migrate``: the long-running processes and the
database they share.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette

from schemas.settings import Settings
from schemas.tables import Project
from server import log_redaction
from server.app import create_app
from server.cli.context import rules_ok
from server.cli.projects import project_urls, record_server_url
from server.cli.supervisor import PARENT_VARIABLE, WorkerSupervisor, die_with_supervisor
from server.lifespan import init_sentry
from server.state import build_state
from storage import queries, users
from storage.db import derived_data_writes, make_engine, migrate
from workers import jobs
from workers.db_queue import DatabaseWorker
from workers.ingest_pressure import IngestPressure
from workers.rq_worker import OutageLog, StopSignal, run_worker, wait_for


def _base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the HTTP server: --workers web processes and, without Redis, --worker-processes
    worker processes that take crashes from the database (server/cli/supervisor.py)."""
    if not rules_ok(settings):
        return 2
    if args.workers < 1 or args.worker_processes < 1:
        print("--workers and --worker-processes must be at least 1", file=sys.stderr)
        return 2
    try:
        settings.resolve_session_secret()  # the dashboard's cookie key; production must set it
    except ValueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    log_redaction.install()  # our own log lines (the root logger's handlers)
    init_sentry(settings)
    state = build_state(settings, database_queue=True)
    project = first_project(state.ctx.engine)
    urls = project_urls(settings, project, _base_url(args.host, args.port))
    record_server_url(settings, _base_url(args.host, args.port))  # for `crashd project create`'s URLs
    mode = ("RQ on " + settings.redis_url if settings.redis_url else
            f"{args.worker_processes} worker processes on the database queue" if args.worker_processes > 1 else
            "a worker process on the database queue")
    web = f", {args.workers} web processes" if args.workers > 1 else ""
    print(f"crashd listening on {_base_url(args.host, args.port)}  ({state.ctx.engine.dialect.name}, {mode}{web})")
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
    supervisors = [] if settings.redis_url else [WorkerSupervisor() for _ in range(args.worker_processes)]
    # X-Forwarded-For only from CRASHD_TRUSTED_PROXIES: uvicorn's default believes any
    # 127.0.0.1 peer, which let anyone behind a local proxy pick the address the sign-in
    # throttle counts; and no ingest key or token in the access log (server/log_redaction.py)
    options = {"host": args.host, "port": args.port, "log_level": args.log_level,
               "proxy_headers": bool(settings.trusted_proxies), "forwarded_allow_ips": settings.trusted_proxies,
               "log_config": log_redaction.uvicorn_log_config()}
    try:
        for supervisor in supervisors:
            supervisor.start()
        if args.workers == 1:
            uvicorn.run(create_app(settings, state), **options)
        else:  # each web process builds its own state (web_app) from the same environment
            state.ctx.engine.dispose()
            uvicorn.run("server.cli.serve:web_app", factory=True, workers=args.workers, **options)
    finally:
        for supervisor in supervisors:
            supervisor.stop()
        state.queue.close()
    return 0


def web_app() -> Starlette:
    """One web process of ``crashd serve --workers N`` (uvicorn imports this factory in each)."""
    log_redaction.install()
    return create_app(Settings(), database_queue=True)


def dashboard_hint(engine: "Engine") -> str:
    """How to sign in: a reminder to create the first user while there is none."""
    if users.list_users(engine):
        return ""
    return "  (no users yet: `crashd user create NAME --role admin` reads a password from stdin)"


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run a worker: RQ's with CRASHD_REDIS_URL, else the database queue's (workers/db_queue.py)."""
    if not rules_ok(settings):
        return 2
    if not settings.redis_url:
        return database_worker(settings, args)

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


def database_worker(settings: Settings, args: argparse.Namespace) -> int:
    """The embedded default's worker: jobs in this process, crashes from the database."""
    if args.fork:
        print("--fork needs CRASHD_REDIS_URL (RQ's forking worker)", file=sys.stderr)
        return 2
    if not die_with_supervisor():
        return 0
    ctx = jobs.build_context(settings)
    stop = StopSignal()
    stop.install()
    if not wait_for(lambda: migrate(ctx.engine), (SQLAlchemyError,), OutageLog(what="the database"), stop):
        return 0
    derived_data_writes(ctx.engine)
    jobs.install_context(ctx)
    # started by `crashd serve`: give way to its web processes while they are busy
    worker = DatabaseWorker(ctx.engine, stop.event, pressure=IngestPressure.of_supervisor(PARENT_VARIABLE))
    return worker.run(max_jobs=args.max_jobs, burst=args.burst)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Apply database migrations and exit."""
    migrate(make_engine(settings))
    print("database is up to date")
    return 0


def first_project(engine: Engine) -> Project:
    """The first project, or a new one named ``default`` when there is none. Two servers started
    together (scaled out) may both find none: the one whose insert loses reads the winner's."""
    projects = queries.list_projects(engine)
    if projects:
        return projects[0]
    try:
        return queries.create_project(engine, name="default")
    except ValueError:  # another server created it a moment ago
        return queries.list_projects(engine)[0]
