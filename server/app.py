"""The Starlette application: create_app(settings) wires storage, queue and routes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from server.api.routes import ROUTES as API_ROUTES
from server.api.tickets import verify_after
from server.dashboard import login, pages
from server.dashboard import routes as dashboard_routes
from server.ingest import sessions as ingest_sessions
from server.ingest.routes import ROUTES as INGEST_ROUTES
from server.lifespan import init_sentry, sweeper_loop
from server.outages import OutageMiddleware
from server.state import ServerState, build_state

ROUTES = [
    *INGEST_ROUTES,  # crash, envelope and symbol uploads (server/ingest/routes.py)
    Route("/api/{project}/sessions/", verify_after(ingest_sessions.upload_endpoint), methods=["POST"]),
    *API_ROUTES,  # JSON reads, ticket actions, /api/openapi.json (built from this list), health, version
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


def create_app(settings: Settings, state: ServerState | None = None, *, database_queue: bool = False) -> Starlette:
    """The ASGI app. State is built at start-up (lifespan) unless handed in (database_queue:
    server/state.build_state's)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own = app.state.crashd is None
        if own:
            init_sentry(settings)
            app.state.crashd = await run_in_threadpool(functools.partial(build_state, settings, database_queue=database_queue))
        sweeper = asyncio.create_task(sweeper_loop(app.state.crashd))
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
