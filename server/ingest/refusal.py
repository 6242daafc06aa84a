"""The one place where an ingest request is refused (Antenna's ``breakpad_resource.py``: one
``except``). An endpoint, or anything it calls, raises Discarded (server/ingest/discard.py);
the endpoint's ``@refusing(flavor)`` logs the refusal, counts it as a discard
(``GET /api/discards``) and answers in the endpoint's words:

- ``/submit`` (Breakpad, Socorro): the text ``Discarded=<code>``;
- every other ingest endpoint: ``{"detail": "<code>"}`` (plus ``"file"`` for a symbol upload);
- a 503 (``storage_unavailable``, ``spool_full``) with ``Retry-After: 60``; Sentry's 429
  with ``Retry-After`` and ``X-Sentry-Rate-Limits`` (server/ingest/ratelimit.py).

A client that hangs up mid-body is counted as ``client_disconnected`` (nobody reads the
answer). A storage failure is logged as an error and not counted (counting needs the database).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from server.ingest.discard import RETRY_AFTER_SECONDS, Discarded, StorageUnavailable
from server.ingest.ratelimit import rate_limit_headers
from server.state import ServerState, state_of
from storage import queries

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Flavor:
    """How a family of ingest endpoints refuses: name (in the log), Breakpad's text or JSON,
    and what a discard is counted as: the bare reason (``bad_gzip`` for ``malformed_bad_gzip``)
    without count_prefix, else the code under it (``symbols_malformed_bad_gzip``)."""

    name: str
    text: bool = False
    count_prefix: str = ""

    def counted(self, exc: Discarded) -> str:
        """The reason exc is counted under."""
        if not self.count_prefix:
            return exc.reason
        code = exc.discard_code
        return code if code.startswith(self.count_prefix) else f"{self.count_prefix}{code}"

    def refused(self, exc: Discarded) -> Response:
        """exc as this flavor answers it."""
        headers = None
        if exc.retry_after is not None:
            headers = rate_limit_headers(exc.retry_after)
        elif exc.status_code == 503:
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if self.text:
            return PlainTextResponse(f"Discarded={exc.discard_code}\n", status_code=exc.status_code, headers=headers)
        body = {"detail": exc.discard_code} | ({"file": exc.file} if exc.file else {})
        return JSONResponse(body, status_code=exc.status_code, headers=headers)


SUBMIT = Flavor("upload", text=True)  # POST /submit
MINIDUMP = Flavor("upload")  # POST /api/<project>/minidump/
ENVELOPE = Flavor("envelope")  # POST /api/<project>/envelope/ and /store/
SESSIONS = Flavor("sessions", count_prefix="sessions_")  # POST /api/<project>/sessions/
SYMBOLS = Flavor("symbol upload", count_prefix="symbols_")  # /api/<project>/symbols/ (v1 and v2)


def refusing(flavor: Flavor, *, outages: tuple[type[Exception], ...] = ()) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint so that the Discarded it raises is answered by refuse(); a
    ClientDisconnect is ``client_disconnected``, one of outages ``storage_unavailable``."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def refusing_endpoint(request: Request) -> Response:
            try:
                return await endpoint(request)
            except Discarded as exc:
                refused = exc
            except ClientDisconnect:  # a Crashpad upload timing out; it will retry
                refused = Discarded(400, "client_disconnected", "client disconnected")
            except outages as exc:
                refused = StorageUnavailable(str(exc))
            return await refuse(state_of(request), flavor, refused)

        return refusing_endpoint

    return wrap


async def refuse(state: ServerState, flavor: Flavor, exc: Discarded) -> Response:
    """Log exc, count it (unless storage failed) and answer it in flavor's words."""
    if isinstance(exc, StorageUnavailable):
        log.error("storage unavailable, %s refused with 503: %s", flavor.name, exc.why)
    else:
        log.info("%s discarded: %s (%s)", flavor.name, exc.discard_code, exc.why)
        await count_quietly(state, flavor.counted(exc))
    return flavor.refused(exc)


async def count_quietly(state: ServerState, reason: str) -> None:
    """count() from the event loop."""
    await run_in_threadpool(count, state, reason)


def count(state: ServerState, reason: str) -> None:
    """Count a discard under reason; counting must never turn a 400 into a 500."""
    try:
        queries.count_discard(state.ctx.engine, reason=reason[:64])
    except SQLAlchemyError as exc:
        log.warning("could not count discard %s: %s", reason, exc)
