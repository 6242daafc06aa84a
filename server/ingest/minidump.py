"""Crash upload endpoints: ``POST /api/<project>/minidump/`` (Sentry) and ``POST /submit``
(Breakpad/Socorro). Persist, then acknowledge (server/ingest/crashmover.py): the raw dump,
the attachments and the annotations are in the blob store and the crash row is committed
before the 200; enqueueing comes after and may fail without failing the upload. A refusal is
answered by server/ingest/refusal.py (``Discarded=<code>`` on /submit).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from schemas.tables import Project
from server.auth import INGEST_KEY_PARAMS
from server.ingest.crashmover import persist_and_enqueue
from server.ingest.discard import MalformedUpload, UploadTooLarge
from server.ingest.keys import authenticate
from server.ingest.refusal import MINIDUMP, SUBMIT, count_quietly, refusing
from server.ingest.sentry_native import apply_native_parts
from server.ingest.upload_parser import (
    Budget,
    ParsedUpload,
    SpoolWriter,
    UploadPart,
    assemble,
    decoded_body,
    prepare_minidump,
)
from server.ingest.whole_body import WholeBody, read_multipart, split_body
from server.state import ServerState, state_of

log = logging.getLogger(__name__)


@refusing(MINIDUMP)
async def minidump_endpoint(request: Request) -> Response:
    """Sentry / sentry-native path; answers the crash id as text."""
    return await ingest(request, "minidump", project_ref=request.path_params["project"])


@refusing(SUBMIT)
async def submit_endpoint(request: Request) -> Response:
    """Breakpad / Socorro path; answers ``CrashID=bp-<uuid>``."""
    return await ingest(request, "submit", project_ref=None)


async def ingest(request: Request, via: str, project_ref: str | None) -> Response:
    """Authenticate, read, persist, acknowledge, enqueue; via is the endpoint (``submit``
    answers Breakpad's ``CrashID=bp-<uuid>``). Raises Discarded (@refusing answers it).
    Thread-pool hops cost CPU under load (bench/ingest.py): a remembered key and the
    in-memory rate limit are answered on the event loop, and everything after the body is
    read runs in one hop."""
    state = state_of(request)
    project = await authenticate(state, request, project_ref)
    assert project.id is not None  # a stored project has its id
    if await state.limiter.over_limit(project.id, project.rate_limit_per_minute) is not None:
        return await _drop_rate_limited(request, state, via)
    read = await read_body(request, state)
    crash_id = await run_in_threadpool(_persist, state, project, read, via, query_annotations(request))
    if via == "submit":
        return PlainTextResponse(f"CrashID=bp-{crash_id}\n")
    return PlainTextResponse(crash_id)


def _persist(state: ServerState, project: Project, read: BodyParts | ParsedUpload, via: str,
             from_query: dict[str, str]) -> str:
    """The body's parts into a ParsedUpload, then persist_and_enqueue; the files are closed
    whatever happens."""
    parsed = finish_upload(read, state)
    try:
        return persist_and_enqueue(state, project, parsed, via, from_query)
    finally:
        parsed.close()


async def _drop_rate_limited(request: Request, state: ServerState, via: str) -> Response:
    """Over the project's rate limit: read the body to its end and drop it, answering 200.
    Crashpad retries every other answer (a 429 too) forever, and one that hangs up mid-body
    as well, so the minidump endpoints never refuse for load (docs/sentry.md)."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > state.settings.max_upload_bytes:
            break
    await count_quietly(state, "rate_limited")
    log.info("upload dropped: rate_limited")
    headers = {"X-Crashd-Discarded": "rate_limited"}
    if via == "submit":
        return PlainTextResponse("Discarded=rate_limited\n", headers=headers)
    return PlainTextResponse(str(uuid.UUID(int=0)), headers=headers)


@dataclass
class BodyParts:
    """A multipart body as read: its (headers, part) pairs, or the whole body that
    finish_upload splits into them, and what is left of its budget."""

    parts: list[tuple[dict[str, str], UploadPart]] | WholeBody
    budget: Budget


async def read_body(request: Request, state: ServerState) -> BodyParts | ParsedUpload:
    """Stream the body: a multipart body's parts (finish_upload makes them a ParsedUpload),
    or the ParsedUpload of a bare minidump body. Raises MalformedUpload/UploadTooLarge."""
    settings = state.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise UploadTooLarge("too_large", f"Content-Length {declared}")
    budget = Budget(settings.max_decompressed_bytes)
    body = decoded_body(
        request.stream(),
        content_encoding=request.headers.get("content-encoding", "").strip().lower(),
        max_upload_bytes=settings.max_upload_bytes,
    )
    media_type, _, params = request.headers.get("content-type", "").partition(";")
    media_type = media_type.strip().lower()
    if media_type.startswith("multipart/"):
        boundary = _boundary(params)
        return BodyParts(await read_multipart(body, boundary=boundary, tmp_dir=state.tmp_dir, budget=budget),
                         budget)
    # A bare minidump body (sentry-native, curl --data-binary).
    writer = SpoolWriter(state.tmp_dir, budget)
    try:
        async for chunk in body:
            writer.write(chunk)
        part = writer.finish("upload_file_minidump", None, media_type or None)
        return ParsedUpload(await run_in_threadpool(prepare_minidump, part, "", state.tmp_dir, budget))
    except BaseException:
        writer.file.close()
        raise


def finish_upload(read: BodyParts | ParsedUpload, state: ServerState) -> ParsedUpload:
    """A multipart body's parts (split here when it was read whole) as a ParsedUpload (sentry-native's __sentry-event and
    breadcrumb parts and sentry[...] fields applied). Closes the parts when it raises."""
    if isinstance(read, ParsedUpload):
        return read
    parts = read.parts
    if isinstance(parts, WholeBody):
        parts = split_body(parts, tmp_dir=state.tmp_dir, budget=read.budget)
    parsed = assemble(parts, tmp_dir=state.tmp_dir, budget=read.budget)
    try:
        return apply_native_parts(parsed, state.tmp_dir, read.budget)
    except BaseException:
        parsed.close()
        raise


def _boundary(params: str) -> bytes:
    match = re.search(r'boundary\s*=\s*("([^"]+)"|[^\s;]+)', params, re.IGNORECASE)
    if not match:
        raise MalformedUpload("bad_multipart", "multipart Content-Type without a boundary")
    return (match.group(2) or match.group(1)).encode("latin-1")


def query_annotations(request: Request) -> dict[str, str]:
    """Query parameters other than the key (Crashpad sends product, version, guid there)."""
    return {k: v for k, v in request.query_params.items() if k not in INGEST_KEY_PARAMS}


