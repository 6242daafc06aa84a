"""A dependency that is down answers 503, never 500 (docs/deploy.md, timeouts).

When PostgreSQL, the blob store or Redis fails under a request, the client is told to come
back (``503`` + ``Retry-After``) in the words of the endpoint: Breakpad's text
``Discarded=storage_unavailable`` on ``/submit``, ``{"detail": "storage_unavailable"}``
under ``/api/``. An ingest request's body is read to its end first: a client still sending
a minidump when the server answers and closes sees a reset, not the answer.

On the ingest paths every database, blob store or Redis error counts (the client retries,
nothing is lost); elsewhere only an outage does (a connection refused, cut or timed out), so
a plain bug stays a 500 and reaches CRASHD_SENTRY_DSN.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.ingest.discard import RETRY_AFTER_SECONDS, StorageUnavailable
from storage.blobs import BlobNotFound, BlobStoreError

log = logging.getLogger(__name__)

INGEST_PATH = re.compile(r"^/submit/?$|^/api/[^/]+/(minidump|envelope|store|sessions|symbols)/?$")
# Read at most this much of a refused body before answering anyway (then the connection closes).
DRAIN_LIMIT_BYTES = 200 * 1024 * 1024


def is_outage(exc: BaseException) -> bool:
    """True when exc says a dependency is unreachable or timed out (not that a query is wrong)."""
    if isinstance(exc, (PoolTimeout, RedisConnectionError, RedisTimeoutError)):
        return True
    if isinstance(exc, BlobStoreError):
        return not isinstance(exc, BlobNotFound)
    if isinstance(exc, DBAPIError):  # PostgreSQL's; SQLite's errors are never an outage here
        return exc.connection_invalidated or isinstance(exc.orig, (psycopg.OperationalError, psycopg.InterfaceError))
    return False


def refuses(path: str, exc: BaseException) -> bool:
    """Whether a request to path that raised exc is answered 503 (see the module docstring)."""
    if isinstance(exc, StorageUnavailable) or is_outage(exc):
        return True
    return bool(INGEST_PATH.match(path)) and isinstance(exc, (SQLAlchemyError, BlobStoreError, RedisError))


def refusal(path: str) -> Response:
    """The 503 of path, in its endpoint's words."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if path.rstrip("/") == "/submit":
        return PlainTextResponse("Discarded=storage_unavailable\n", status_code=503, headers=headers)
    if path.startswith("/api/"):
        return JSONResponse({"detail": "storage_unavailable"}, status_code=503, headers=headers)
    return PlainTextResponse("storage unavailable, try again later", status_code=503, headers=headers)


class OutageMiddleware:
    """ASGI middleware: a request that raises an outage (see refuses) is answered 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {"body_done": False, "started": False}

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                seen["body_done"] = True
            return message

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["started"] = True
            await send(message)

        try:
            await self.app(scope, tracked_receive, tracked_send)
        except Exception as exc:
            path = scope["path"]
            if seen["started"] or not refuses(path, exc):
                raise
            log.error("%s %s answered 503, a dependency is unavailable: %s: %s",
                      scope["method"], path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            if not seen["body_done"]:
                await _drain(tracked_receive, seen)
            await refusal(path)(scope, receive, send)


async def _drain(receive: Receive, seen: dict[str, Any]) -> None:
    """Read the rest of the request body (up to DRAIN_LIMIT_BYTES) and drop it."""
    received = 0
    while not seen["body_done"] and received <= DRAIN_LIMIT_BYTES:
        message = await receive()
        received += len(message.get("body", b""))
