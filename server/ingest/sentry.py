"""Sentry's endpoints: ``POST /api/<project_id>/envelope/`` and ``/api/<project_id>/store/``.

A client configured with the project's DSN (``http://<ingest_key>@<host>:<port>/<project_id>``)
sends here. The key comes from ``X-Sentry-Auth``, ``?sentry_key=`` or the envelope header's
``dsn``. The body may be gzip, deflate, br or zstd (Content-Encoding). The answer is
``200 {"id": "<event_id>"}`` once everything valid is stored (persist, then acknowledge).

A malformed envelope is refused with ``400 {"detail": "malformed_envelope_<reason>"}``,
counted like every discard, after the valid items before the problem were stored. Items of a
type we do not use (transaction, profile, client_report ...) are skipped. Over the project's
rate limit: ``429`` with ``Retry-After`` and ``X-Sentry-Rate-Limits``. docs/sentry.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import zlib
from urllib.parse import urlsplit

from sentry_sdk.types import Event, Hint
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.tables import Project
from server.auth import can_write, ingest_key
from server.ingest.discard import Discarded, MalformedUpload, UploadTooLarge
from server.ingest.envelope import Envelope, EnvelopeItemTooLarge, Item, MalformedEnvelope, parse_envelope
from server.ingest.keys import project_of
from server.ingest.refusal import ENVELOPE, refusing
from server.ingest.sentry_store import store_envelope
from server.ingest.upload_parser import MAX_JSON_DEPTH, OUT_CHUNK, read_whole_body, too_deep
from server.state import ServerState, state_of

log = logging.getLogger(__name__)
SENTRY_ENDPOINT = re.compile(r"^/api/[^/]+/(envelope|store)/?$")
LIMITED_TYPES = ("event", "attachment", "feedback", "user_report")  # counted against the rate limit; sessions never
BASE64_SLICE = 64 * 1024  # a multiple of 4: a raven body is decoded slice by slice


@refusing(ENVELOPE)
async def envelope_endpoint(request: Request) -> Response:
    """POST /api/<project_id>/envelope/: an envelope of events, attachments and sessions."""
    return await receive(request, "envelope")


@refusing(ENVELOPE)
async def store_endpoint(request: Request) -> Response:
    """POST /api/<project_id>/store/: one event as JSON (older SDKs)."""
    return await receive(request, "store")


async def receive(request: Request, via: str) -> Response:
    """Authenticate, read, store, answer. Raises Discarded (bad compression, too large,
    unreadable envelope, over the rate limit: @refusing answers it)."""
    state = state_of(request)
    project, envelope, problem = await read_envelope(request, state, via)
    if envelope.of_type(*LIMITED_TYPES):
        assert project.id is not None  # a stored project has its id
        retry_after = await state.limiter.over_limit(project.id, project.rate_limit_per_minute)
        if retry_after is not None:
            raise Discarded(429, "rate_limited", retry_after=retry_after)
    stored_problem = await run_in_threadpool(store_envelope, state, project, envelope, via)
    refused = problem or stored_problem  # the envelope's own problem first
    if refused is not None:  # the valid part is stored; the client learns what was wrong
        raise refused
    return JSONResponse({"id": envelope.headers["event_id"]})


async def read_envelope(request: Request, state: ServerState,
                        via: str) -> tuple[Project, Envelope, MalformedUpload | None]:
    """The project, the envelope (a /store/ body as one) and what was malformed in it (the
    envelope then holds the valid items before the problem). The key of the request comes
    first, then the envelope header's ``dsn``. Raises Discarded, MalformedUpload."""
    project_ref = request.path_params["project"]
    key = ingest_key(request)
    project = await project_of(state, key, project_ref) if key else None
    body = await read_body(request, state)  # held whole: docs/sentry.md, known gaps
    problem: MalformedUpload | None = None
    try:
        max_event = state.settings.max_event_bytes
        envelope = store_as_envelope(body, max_event) if via == "store" else parse_envelope(body, max_event)
    except MalformedEnvelope as exc:
        problem, envelope = exc, exc.envelope
        if project is None and not envelope.headers:  # nothing to authenticate with: say why
            raise
    if project is None:
        project = await project_of(state, dsn_key(envelope), project_ref)
    return project, envelope, problem


async def read_body(request: Request, state: ServerState) -> bytearray:
    """The body, decoded per Content-Encoding, within the configured caps (one copy in
    memory: the items' payloads are views into it). Raises MalformedUpload, UploadTooLarge."""
    settings = state.settings
    return await read_whole_body(request, max_upload_bytes=settings.max_upload_bytes,
                                 max_decompressed_bytes=min(settings.max_decompressed_bytes,
                                                            settings.max_envelope_bytes),
                                 over_reason="too_large_decompressed")


def dsn_key(envelope: Envelope) -> str | None:
    """The public key of the envelope header's ``dsn`` (``http://<key>@host/42``), if any."""
    dsn = envelope.headers.get("dsn")
    if not isinstance(dsn, str):
        return None
    try:
        return urlsplit(dsn).username or None
    except ValueError:
        return None


def store_as_envelope(body: bytes | bytearray, max_event_bytes: int) -> Envelope:
    """A ``/store/`` body (an event as JSON; raven-era clients send it zlib-compressed and
    base64-encoded) as an envelope of one event item. Raises MalformedEnvelope,
    EnvelopeItemTooLarge (the event, inflated or not, is over max_event_bytes)."""
    data = bytes(body).strip()
    envelope = Envelope()
    if data[:1] != b"{":
        try:
            data = inflate_raven(data, max_event_bytes)
        except (binascii.Error, zlib.error, ValueError):
            pass  # not base64+zlib: the JSON check below says what is wrong
        except UploadTooLarge as exc:
            raise EnvelopeItemTooLarge(f"store body inflates past {max_event_bytes} bytes", envelope) from exc
    if len(data) > max_event_bytes:
        raise EnvelopeItemTooLarge(f"store body: {len(data)} bytes", envelope)
    try:
        event = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedEnvelope("envelope_json", f"store body: {str(exc)[:200]}", envelope) from exc
    if not isinstance(event, dict) or too_deep(event):
        raise MalformedEnvelope("envelope_json", f"store body: not a JSON object at most {MAX_JSON_DEPTH} deep",
                                envelope)
    envelope.items.append(Item({"type": "event"}, data, event))
    return envelope


def inflate_raven(data: bytes, limit: int) -> bytes:
    """base64 then zlib, decoded slice by slice so that a bomb (2.8 MB of base64 that
    inflates to gigabytes) stops at limit bytes. Raises binascii.Error, zlib.error,
    ValueError (not base64+zlib), UploadTooLarge."""
    inflater = zlib.decompressobj()
    out = bytearray()
    for start in range(0, len(data), BASE64_SLICE):
        packed = base64.b64decode(data[start:start + BASE64_SLICE], validate=True)
        while True:  # a full output buffer may leave input, or output, for another call
            room = min(OUT_CHUNK, limit + 1 - len(out))
            chunk = inflater.decompress(packed, room)
            out += chunk
            if len(out) > limit:
                raise UploadTooLarge("too_large_event", "inflated store body exceeds the limit")
            packed = inflater.unconsumed_tail
            if not packed and len(chunk) < room:
                break
    if not inflater.eof:
        raise ValueError("the zlib stream is truncated")
    return bytes(out)


def drop_envelope_endpoint_errors(event: Event, hint: Hint) -> Event | None:
    """sentry-sdk ``before_send`` of CRASHD_SENTRY_DSN: an error raised while handling an
    envelope or store request is logged, not reported. Reported to a crashd (this one, when
    dogfooding), it would arrive through the same failing endpoint and report itself again."""
    request = event.get("request")
    url = request.get("url") if isinstance(request, dict) else None
    if isinstance(url, str) and SENTRY_ENDPOINT.search(urlsplit(url).path):
        log.error("error in %s not reported to CRASHD_SENTRY_DSN (it could loop): %s", url,
                  event.get("exception") or event.get("message"))
        return None
    return event


async def broken_endpoint(request: Request) -> Response:
    """GET /__broken__ (admins): raise an error on purpose, so that error reporting
    (CRASHD_SENTRY_DSN) can be checked end to end, like Antenna's ``/__broken__``."""
    state = state_of(request)
    if not can_write(request, state):  # admins only
        return JSONResponse({"detail": "admin bearer token required"}, status_code=401)
    raise RuntimeError("crashd /__broken__: an error raised on purpose to test error reporting")

