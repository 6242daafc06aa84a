"""ServerState: everything a request handler needs, built once at start-up by build_state()
and reached from a request with state_of(request).

It imports only modules of server/ that import nothing of server/ themselves (caches,
ratelimit, signin_throttle), so every endpoint module can import it and no import circle
goes through it (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from schemas.settings import Settings
from server.caches import Credentials, LiveSessions, ProjectKeys
from server.dashboard.signin_throttle import SignInThrottle
from server.ingest.ratelimit import MemoryRateLimiter, RateLimiter, make_rate_limiter
from storage.db import migrate
from workers import jobs
from workers.db_queue import DatabaseJobQueue
from workers.queue import InProcessJobQueue, JobQueue, make_queue


@dataclass
class ServerState:
    """Everything a request handler needs, built once at start-up."""

    settings: Settings
    ctx: jobs.WorkerContext
    queue: JobQueue
    admin_token: str
    tmp_dir: Path
    projects: ProjectKeys
    limiter: RateLimiter = field(default_factory=lambda: MemoryRateLimiter(0))  # docs/sentry.md
    credentials: Credentials | None = None  # users and API tokens, remembered briefly (server/caches.py)
    sign_ins: SignInThrottle = field(default_factory=SignInThrottle)  # failed sign-ins (server/dashboard/login.py)
    live_sessions: LiveSessions | None = None  # dashboard sessions, remembered briefly (server/caches.py)


def build_state(settings: Settings, *, database_queue: bool = False) -> ServerState:
    """Create engine, blob store and queue, and run migrations. database_queue (no Redis):
    a worker process takes the crashes from the database (workers/db_queue.py, what
    ``crashd serve`` runs) instead of a worker thread in this process."""
    ctx = jobs.build_context(settings)
    migrate(ctx.engine)
    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    queue: JobQueue = (DatabaseJobQueue(ctx.engine) if database_queue and not settings.redis_url
                       else make_queue(settings))
    if isinstance(queue, InProcessJobQueue):
        jobs.install_context(ctx)  # the in-process worker shares the server's engine
    return ServerState(settings, ctx, queue, settings.resolve_admin_token(), tmp_dir, ProjectKeys(ctx.engine),
                       make_rate_limiter(settings), Credentials(ctx.engine, settings.auth_cache_seconds),
                       SignInThrottle(redis_url=settings.redis_url, prefix=settings.queue_name,
                                      redis_timeout=settings.redis_socket_timeout_seconds))


def state_of(request: Request) -> ServerState:
    """The ServerState of the application serving request (create_app puts it there)."""
    state: ServerState = request.app.state.crashd
    return state
