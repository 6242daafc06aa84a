"""The Starlette application: create_app(settings) wires storage, queue and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schemas.settings import Settings
from server import api, groups_api
from server import builds_api, tickets_api
from server import dashboard_api, openapi
from server.dashboard import login, pages, routes as dashboard_routes
from server.ingest import minidump as ingest, sentry as sentry_ingest, sessions as sessions_api
from server.ingest import symbols as symbols_api, symbols_v2
from server.outages import OutageMiddleware
from server.state import ServerState, build_state
from workers import retention, symbol_prune, triage_jobs
from workers.sweeper import sweep

log = logging.getLogger(__name__)


def init_sentry(settings: Settings) -> None:
    """Report the server's own errors to CRASHD_SENTRY_DSN (which may be crashd itself)."""
    if settings.sentry_dsn:
        import sentry_sdk

        sentry_sdk.init(dsn=settings.sentry_dsn, environment=settings.environment, send_default_pii=False,
                        before_send=sentry_ingest.drop_envelope_endpoint_errors)  # no report loops


async def _sweeper_loop(state: ServerState) -> None:
    while True:
        await asyncio.sleep(state.settings.sweeper_interval_seconds)
        try:
            await run_in_threadpool(sweep, state.ctx, state.queue)
            await run_in_threadpool(triage_jobs.tick, state.ctx, state.queue)  # rules, regressions, verification
            await run_in_threadpool(state.queue.enqueue_notify)  # retries of ticket notifications
            await run_in_threadpool(retention.tick, state.ctx)  # CRASHD_RETENTION_DAYS, a batch a tick
            await run_in_threadpool(symbol_prune.tick, state.ctx)  # CRASHD_SYMBOL_RETENTION_DAYS
        except Exception:  # noqa: BLE001 - keep sweeping
            log.exception("sweeper failed")


ROUTES = [
    Route("/api/{project}/minidump/", ingest.minidump_endpoint, methods=["POST"]),
    Route("/submit", ingest.submit_endpoint, methods=["POST"]),
    Route("/api/{project}/envelope/", sentry_ingest.envelope_endpoint, methods=["POST"]),
    Route("/api/{project}/store/", sentry_ingest.store_endpoint, methods=["POST"]),
    Route("/__broken__", sentry_ingest.broken_endpoint, methods=["GET"]),
    Route("/api/{project}/symbols/", symbols_api.upload_endpoint, methods=["POST"]),
    # Breakpad's sym-upload-v2 (symupload -p sym-upload-v2 -k <token> FILE http://HOST/api/<project>/symbols)
    Route("/api/{project}/symbols/v1/symbols/{debug_file}/{debug_id}", symbols_v2.check_status_endpoint,
          methods=["GET"]),
    Route("/api/{project}/symbols/v1/uploads:create", symbols_v2.create_endpoint, methods=["POST"]),
    Route("/api/{project}/symbols/v1/uploads/{upload}", symbols_v2.upload_endpoint, methods=["PUT", "POST"]),
    Route("/api/symbols/{debug_file}/{debug_id}", symbols_api.lookup_endpoint, methods=["GET"]),
    Route("/api/crashes/{crash_id}", api.crash_detail, methods=["GET"]),
    Route("/api/crashes/{crash_id}/minidump", api.crash_minidump, methods=["GET"]),
    Route("/api/crashes/{crash_id}/attachments/{name:path}", api.crash_attachment, methods=["GET"]),
    Route("/api/discards", api.discards, methods=["GET"]),
    Route("/api/groups", groups_api.list_endpoint, methods=["GET"]),
    Route("/api/groups/{group_id:int}", groups_api.detail_endpoint, methods=["GET"]),
    Route("/api/{project}/sessions/", tickets_api.verify_after(sessions_api.upload_endpoint), methods=["POST"]),
    Route("/api/builds", builds_api.list_endpoint, methods=["GET"]),
    Route("/api/builds/compare", builds_api.compare_endpoint, methods=["GET"]),
    Route("/api/tickets", tickets_api.list_endpoint, methods=["GET"]),
    Route("/api/tickets/{ticket_id:int}", tickets_api.detail_endpoint, methods=["GET"]),
    Route("/api/tickets/{ticket_id:int}/{action}", tickets_api.action_endpoint, methods=["POST"]),
    *dashboard_api.ROUTES,  # /api/triage, /api/symbols (JSON twins of dashboard pages)
    *openapi.ROUTES,  # /api/openapi.json, built from this list
    Route("/__heartbeat__", api.heartbeat, methods=["GET"]),
    Route("/__lbheartbeat__", api.lbheartbeat, methods=["GET"]),
    Route("/__version__", api.version, methods=["GET"]),
    *login.ROUTES,
    *dashboard_routes.ROUTES,  # HTML pages: exact paths outside /api, after every API route
    Mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static"),
]


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 and 405 (``/api/tickets/abc``, ``GET /api/1/minidump/``): under
    /api/ as ``{"detail": ...}`` like every other API error, elsewhere Starlette's plain text."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def session_middleware(settings: Settings) -> Middleware:
    """The dashboard's session cookie: signed (itsdangerous), HttpOnly, SameSite=Lax, Secure in
    production (docs/auth.md). Raises ValueError in production without CRASHD_SESSION_SECRET."""
    return Middleware(SessionMiddleware, secret_key=settings.resolve_session_secret(),
                      session_cookie=login.SESSION_COOKIE, max_age=login.SESSION_MAX_AGE_SECONDS,
                      same_site="lax", https_only=settings.cookies_secure)


def create_app(settings: Settings, state: ServerState | None = None) -> Starlette:
    """The ASGI app. State is built at start-up (lifespan) unless handed in."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own = app.state.crashd is None
        if own:
            init_sentry(settings)
            app.state.crashd = await run_in_threadpool(build_state, settings)
        sweeper = asyncio.create_task(_sweeper_loop(app.state.crashd))
        try:
            yield
        finally:
            sweeper.cancel()
            if own:
                app.state.crashd.queue.close()
                app.state.crashd.ctx.engine.dispose()

    middleware = [session_middleware(settings), Middleware(OutageMiddleware)]  # 503 for an outage
    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: http_error})
    app.state.crashd = state
    return app
