"""Crash upload endpoints: ``POST /api/<project>/minidump/`` (Sentry) and ``POST /submit``
(Breakpad/Socorro). Persist, then acknowledge (Antenna's crashmover): the raw dump, the
attachments and the annotations are in the blob store and the crash row is committed before
the 200; enqueueing comes after and may fail without failing the upload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from schemas.tables import Attachment, Crash, Project, utcnow
from server.auth import INGEST_KEY_PARAMS, ingest_key
from server.ingest.sentry_native import apply_native_parts
from server.ingest.upload_parser import (
    Budget,
    MalformedUpload,
    ParsedUpload,
    SpoolWriter,
    UploadPart,
    UploadTooLarge,
    assemble,
    decoded_body,
    parse_multipart,
    prepare_minidump,
)
from storage import queries
from storage.blobs import BlobStoreError, day_key
from server.state import ServerState, state_of


log = logging.getLogger(__name__)

# Annotation names that carry the build, the product and the tester, in order of preference.
BUILD_KEYS = ("ver", "version", "release", "sentry.release")
PRODUCT_KEYS = ("prod", "product", "ProductName", "sentry.extra.product")
TESTER_KEYS = ("tester_id", "guid", "user_id", "sentry.user.id")
# The client (installation) that retries an upload: Crashpad's guid first.
CLIENT_KEYS = ("guid", "tester_id", "user_id", "sentry.user.id")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Rejected(Exception):
    """An upload refused before parsing (authentication); reason is counted."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


class StorageUnavailable(Exception):
    """Blob store or database failed: the client gets 503 and retries."""


@dataclass(frozen=True)
class Flavor:
    """How one endpoint answers: Breakpad's text or Sentry's plain id / JSON errors."""

    name: str

    def accepted(self, crash_id: str) -> Response:
        if self.name == "submit":
            return PlainTextResponse(f"CrashID=bp-{crash_id}\n")
        return PlainTextResponse(crash_id)

    def refused(self, status_code: int, code: str) -> Response:
        headers = {"Retry-After": "60"} if status_code == 503 else None
        if self.name == "submit":
            return PlainTextResponse(f"Discarded={code}\n", status_code=status_code, headers=headers)
        return JSONResponse({"detail": code}, status_code=status_code, headers=headers)


SUBMIT = Flavor("submit")
MINIDUMP = Flavor("minidump")


async def minidump_endpoint(request: Request) -> Response:
    """Sentry / sentry-native path; answers the crash id as text."""
    return await ingest(request, MINIDUMP, project_ref=request.path_params["project"])


async def submit_endpoint(request: Request) -> Response:
    """Breakpad / Socorro path; answers ``CrashID=bp-<uuid>``."""
    return await ingest(request, SUBMIT, project_ref=None)


async def ingest(request: Request, flavor: Flavor, project_ref: str | None) -> Response:
    """Authenticate, read, persist, acknowledge, enqueue."""
    state = state_of(request)
    try:
        project = await run_in_threadpool(authenticate, state, request, project_ref)
        if await run_in_threadpool(state.limiter.hit, project.id, project.rate_limit_per_minute) is not None:
            return await _drop_rate_limited(request, state, flavor)
        parsed = await read_upload(request, state)
        try:
            crash_id = await run_in_threadpool(
                persist_and_enqueue, state, project, parsed, flavor.name, query_annotations(request)
            )
        finally:
            parsed.close()
    except MalformedUpload as exc:
        return await _refuse(state, flavor, exc.status_code, exc.discard_code, exc.reason, str(exc))
    except Rejected as exc:
        return await _refuse(state, flavor, exc.status_code, exc.reason, exc.reason, str(exc))
    except StorageUnavailable as exc:
        log.error("storage unavailable, upload refused with 503: %s", exc)
        return flavor.refused(503, "storage_unavailable")
    except ClientDisconnect:
        # The client hung up mid-body (a Crashpad upload timing out); it will retry. Nobody
        # reads this answer, but the discard is counted.
        return await _refuse(state, flavor, 400, "client_disconnected", "client_disconnected", "client disconnected")
    return flavor.accepted(crash_id)


async def _drop_rate_limited(request: Request, state: ServerState, flavor: Flavor) -> Response:
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
    if flavor.name == "submit":
        return PlainTextResponse("Discarded=rate_limited\n", headers=headers)
    return PlainTextResponse(str(uuid.UUID(int=0)), headers=headers)


def persist_and_enqueue(state: ServerState, project: Project, parsed: ParsedUpload, via: str,
                        from_query: dict[str, str]) -> str:
    """persist_upload, then enqueue a new crash (one thread-pool hop for both)."""
    crash_id, created = persist_upload(state, project, parsed, via, from_query)
    if created:
        enqueue_quietly(state, crash_id)
    return crash_id


async def _refuse(state: ServerState, flavor: Flavor, status: int, code: str, reason: str, why: str) -> Response:
    log.info("upload discarded: %s (%s)", code, why)
    await count_quietly(state, reason)
    return flavor.refused(status, code)


async def count_quietly(state: ServerState, reason: str) -> None:
    """Count a discard; counting must never turn a 400 into a 500."""
    try:
        await run_in_threadpool(queries.count_discard, state.ctx.engine, reason=reason[:64])
    except SQLAlchemyError as exc:
        log.warning("could not count discard %s: %s", reason, exc)


def authenticate(state: ServerState, request: Request, project_ref: str | None) -> Project:
    """The project whose ingest key the request carries. Raises Rejected (401/404)."""
    return project_for_key(state, ingest_key(request), project_ref)


def project_for_key(state: ServerState, key: str | None, project_ref: str | None) -> Project:
    """The project of ingest key (which must be project_ref's, an id or name, when given).
    Raises Rejected (401 missing_key / bad_key)."""
    if not key:
        raise Rejected(401, "missing_key")
    project = state.projects.get(key)
    if project is None:
        raise Rejected(401, "bad_key")
    if project_ref is not None and project_ref not in (str(project.id), project.name):
        raise Rejected(401, "bad_key")
    return project


async def read_upload(request: Request, state: ServerState) -> ParsedUpload:
    """Stream and parse the body into a ParsedUpload. Raises MalformedUpload/UploadTooLarge."""
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
        parts = await parse_multipart(body, boundary=boundary, tmp_dir=state.tmp_dir, budget=budget)
        parsed = await run_in_threadpool(assemble, parts, tmp_dir=state.tmp_dir, budget=budget)
        try:  # sentry-native's __sentry-event / breadcrumb parts, sentry[...] fields
            return await run_in_threadpool(apply_native_parts, parsed, state.tmp_dir, budget)
        except BaseException:
            parsed.close()
            raise
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


def _boundary(params: str) -> bytes:
    match = re.search(r'boundary\s*=\s*("([^"]+)"|[^\s;]+)', params, re.IGNORECASE)
    if not match:
        raise MalformedUpload("bad_multipart", "multipart Content-Type without a boundary")
    return (match.group(2) or match.group(1)).encode("latin-1")


def query_annotations(request: Request) -> dict[str, str]:
    """Query parameters other than the key (Crashpad sends product, version, guid there)."""
    return {k: v for k, v in request.query_params.items() if k not in INGEST_KEY_PARAMS}


def first_of(annotations: dict[str, str], keys: tuple[str, ...]) -> str | None:
    """The first non-empty annotation among keys, truncated to the column size."""
    for key in keys:
        value = annotations.get(key, "").strip()
        if value:
            return value[:200]
    return None


def fingerprint(project: Project, client_id: str | None, dump_sha256: str) -> str:
    """Dedupe key of a client retry: the same dump from the same client of one project."""
    raw = f"{project.id}\0{client_id or ''}\0{dump_sha256}".encode()
    return hashlib.sha256(raw).hexdigest()


def persist_upload(
    state: ServerState, project: Project, parsed: ParsedUpload, via: str, from_query: dict[str, str]
) -> tuple[str, bool]:
    """Store blobs and rows for an upload. Returns (crash_id, created); created is False
    when this is a retry of an upload stored within the dedupe window.
    Raises StorageUnavailable."""
    annotations = {**from_query, **parsed.annotations}  # form fields win over the query
    key = fingerprint(project, first_of(annotations, CLIENT_KEYS), parsed.minidump.sha256)

    def put_minidump(crash: Crash) -> str:
        crash.minidump_key = day_key("minidumps", crash.received_at, f"{crash.crash_id}.dmp")
        crash.minidump_size, crash.minidump_sha256 = parsed.minidump.size, parsed.minidump.sha256
        state.ctx.blobs.put_file(crash.minidump_key, parsed.minidump.file)
        return crash.minidump_key

    return store_crash(state, project, annotations, parsed.attachments, via, key, put_minidump)


def store_crash(state: ServerState, project: Project, annotations: dict[str, str], parts: list[UploadPart],
                via: str, key: str, put_primary: Callable[[Crash], str]) -> tuple[str, bool]:
    """Store one crash: its primary blob (put_primary fills the crash's key fields, writes
    the blob and returns its key: the minidump, or a Sentry event's JSON), attachments, the
    annotations document and the rows. A retry with the same dedupe key within the window
    returns the first crash. Returns (crash_id, created). Raises StorageUnavailable."""
    window = timedelta(hours=state.settings.dedupe_window_hours)
    engine, blobs = state.ctx.engine, state.ctx.blobs
    written: list[str] = []
    try:
        existing = queries.find_recent_duplicate(engine, fingerprint=key, window=window)
        if existing is not None:
            return existing, False
        now, crash_id = utcnow(), str(uuid.uuid4())
        crash = Crash(
            crash_id=crash_id, project_id=project.id, received_at=now, updated_at=now,  # type: ignore[arg-type]
            submitted_via=via, product=first_of(annotations, PRODUCT_KEYS),
            build=first_of(annotations, BUILD_KEYS), tester_id=first_of(annotations, TESTER_KEYS),
            annotations_key=day_key("annotations", now, f"{crash_id}.json"), annotations=annotations,
        )
        written.append(put_primary(crash))
        attachments = store_attachments(state, crash, parts, written)
        document = {"crash_id": crash_id, "project": project.name, "received_at": now.isoformat(),
                    "submitted_via": via, "annotations": annotations,
                    "attachments": [a.model_dump(exclude={"id"}) for a in attachments]}
        blobs.put_bytes(crash.annotations_key, json.dumps(document, indent=1).encode())
        written.append(crash.annotations_key)
        stored_id, created = queries.insert_crash(
            engine, crash=crash, attachments=attachments, fingerprint=key, window=window
        )
    except (BlobStoreError, SQLAlchemyError) as exc:
        delete_quietly(state, written)
        raise StorageUnavailable(str(exc)) from exc
    if not created:  # a concurrent retry won the race: keep one copy only
        delete_quietly(state, written)
    return stored_id, created


def store_attachments(state: ServerState, crash: Crash, parts: list[UploadPart],
                      written: list[str]) -> list[Attachment]:
    """Put each part in the blob store (its key appended to written); the rows to insert."""
    attachments = []
    seen: set[str] = set()
    for index, part in enumerate(parts):
        name = printable(part.name)
        if not name.strip("."):  # "" or "..": a link to it would resolve to another page
            name = f"attachment-{index}"
        while name in seen:  # two parts with one field name are both kept
            name = f"{name}-{index}"
        seen.add(name)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]
        key = day_key("attachments", crash.received_at, f"{crash.crash_id}/{index:02d}-{safe}")
        state.ctx.blobs.put_file(key, part.file)
        written.append(key)
        attachments.append(Attachment(
            crash_id=crash.crash_id, name=name[:200], filename=printable(part.filename or "")[:300] or None,
            content_type=CONTROL.split(part.content_type or "")[0].strip()[:200] or None,
            size=part.size, sha256=part.sha256, blob_key=key,
        ))
    return attachments


def printable(text: str) -> str:
    """text with control characters (CR, LF, NUL ...) as ``_``: an envelope item's
    ``filename`` "a\\r\\nb" would otherwise end up in a Content-Disposition header (and NUL
    is refused by PostgreSQL)."""
    return CONTROL.sub("_", text)


def delete_quietly(state: ServerState, keys: list[str]) -> None:
    for key in keys:
        try:
            state.ctx.blobs.delete(key)
        except BlobStoreError as exc:
            log.warning("could not remove %s: %s", key, exc)


def enqueue_quietly(state: ServerState, crash_id: str) -> None:
    """Enqueue processing; a failure is logged and left to the sweeper, never raised."""
    try:
        state.queue.enqueue(crash_id)
    except Exception as exc:  # noqa: BLE001 - the upload is safe; the sweeper retries
        log.warning("enqueue of %s failed, the sweeper will retry: %s", crash_id, exc)
