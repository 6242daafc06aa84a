"""JSON API over crashes for people and tools (any reader): a crash, its minidump and
attachments, and the discarded uploads per reason."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from schemas.tables import Attachment, Crash
from server.access_rules import projects_visible
from server.api.access import check, requires
from server.api.dumps import no_dump, raw_dump_deleted, vendor_safe_download, wants_vendor_safe
from server.auth import caller
from server.state import ServerState, state_of
from storage import queries
from storage.blobs import BlobNotFound
from storage.feedback import feedback_for_crash


def _iso(value: Any) -> str | None:
    value = queries.as_utc(value)
    return value.isoformat() if value is not None else None


def crash_document(crash: Crash, project_name: str | None, attachments: list[Attachment]) -> dict[str, Any]:
    """The JSON shape of GET /api/crashes/<crash_id>."""
    return {
        "crash_id": crash.crash_id,
        "status": crash.status,
        "project": project_name,
        "project_id": crash.project_id,
        "submitted_via": crash.submitted_via,
        "received_at": _iso(crash.received_at),
        "processed_at": _iso(crash.processed_at),
        "product": crash.product,
        "build": crash.build,
        "tester_id": crash.tester_id,
        "annotations": crash.annotations,
        "minidump": {"size": crash.minidump_size, "sha256": crash.minidump_sha256,
                     "deleted": raw_dump_deleted(crash)},  # "raw dump deleted after 30 days" (CRASHD_RAW_DUMP_DAYS)
        "size": crash.minidump_size,
        "sha256": crash.minidump_sha256,
        "attachments": [
            {"name": a.name, "filename": a.filename, "content_type": a.content_type,
             "size": a.size, "sha256": a.sha256}
            for a in attachments
        ],
        "processing_error": crash.processing_error,
        "signature": crash.signature,
        "signature_version": crash.signature_version,
        "component": crash.component,
        "reason_text": crash.reason_text,
        "group_id": crash.group_id,
        "platform": crash.platform,
        "kind": crash.kind,
        "level": crash.level,
        "hang_seconds": crash.hang_seconds,
        "hang_thread": crash.hang_thread,
        "processed": crash.processed,
    }


def load_report(state: ServerState, crash: Crash) -> dict[str, Any] | None:
    """The full processed report (rust-minidump JSON) from the blob store, if processed."""
    key = (crash.processed or {}).get("report_key")
    if not key:
        return None
    try:
        return json.loads(state.ctx.blobs.read_bytes(key))
    except (BlobNotFound, ValueError):
        return None


def _load_crash(state: ServerState, crash_id: str) -> tuple[Crash, str | None, list[Attachment]] | None:
    crash = queries.get_crash(state.ctx.engine, crash_id=crash_id)
    if crash is None:
        return None
    project = queries.find_project(state.ctx.engine, ref=str(crash.project_id))
    attachments = queries.get_attachments(state.ctx.engine, crash_id=crash.crash_id)
    return crash, project.name if project else None, attachments


@requires("read")
async def crash_detail(request: Request) -> Response:
    """GET /api/crashes/<crash_id>: status, project, annotations, attachments, size, sha256."""
    state = state_of(request)
    found = await run_in_threadpool(_load_crash, state, request.path_params["crash_id"])
    if found is None:
        raise HTTPException(404, "crash not found")
    check(request, found[0].project_id, "read", "crash")  # another project's crash: 404 too
    document = crash_document(*found)
    document["stackwalk"] = await run_in_threadpool(load_report, state, found[0])
    document["feedback"] = await run_in_threadpool(feedback_for_crash, state.ctx.engine, crash_id=found[0].crash_id)
    return JSONResponse(document)


@requires("read")
async def crash_minidump(request: Request) -> Response:
    """GET /api/crashes/<crash_id>/minidump: the raw dump bytes; ``?vendor_safe=1``: the
    vendor-safe copy (server/api/dumps.py)."""
    state = state_of(request)
    crash = await run_in_threadpool(queries.get_crash, state.ctx.engine, crash_id=request.path_params["crash_id"])
    if crash is None:
        raise HTTPException(404, "crash not found")
    check(request, crash.project_id, "read", "crash")
    if crash.minidump_key is None:  # a Sentry event without a minidump, or one retention deleted
        raise no_dump(crash)
    if wants_vendor_safe(request):  # ?vendor_safe=1: memory the walks do not need zeroed (docs/privacy.md)
        return await vendor_safe_download(state, crash)
    return _blob_response(state, crash.minidump_key, "application/x-dmp", f"{crash.crash_id}.dmp")


@requires("read")
async def crash_attachment(request: Request) -> Response:
    """GET /api/crashes/<crash_id>/attachments/<name>: one attachment's bytes."""
    state = state_of(request)
    found = await run_in_threadpool(_load_crash, state, request.path_params["crash_id"])
    name = request.path_params["name"]
    match = [a for a in found[2] if a.name == name] if found else []
    if found is None or not match:
        raise HTTPException(404, "attachment not found")
    check(request, found[0].project_id, "read", "attachment")
    attachment = match[0]
    media_type = attachment.content_type or ""
    if not media_type.isprintable() or not media_type.isascii():  # a row stored before ingest sanitized it
        media_type = "application/octet-stream"
    return _blob_response(state, attachment.blob_key, media_type, attachment.filename or attachment.name)


def _blob_response(state: ServerState, key: str, media_type: str, filename: str) -> Response:
    try:
        handle = state.ctx.blobs.open(key)
    except BlobNotFound:
        return JSONResponse({"detail": "blob missing from the store"}, status_code=410)
    handle.close()
    return StreamingResponse(
        state.ctx.blobs.iter_chunks(key), media_type=media_type,
        headers={"Content-Disposition": content_disposition(filename)},
    )


def content_disposition(filename: str) -> str:
    """``attachment`` with filename (RFC 6266): an ASCII ``filename=`` for old clients and
    ``filename*=UTF-8''...`` (RFC 5987) with the real name. A header is Latin-1 only and must
    not hold CR/LF: ``journal-é.log`` as ``filename=`` alone gave a 500."""
    ascii_name = re.sub(r'[^\x20-\x7e]|["\\]', "_", filename) or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


@requires("read")
async def discards(request: Request) -> Response:
    """GET /api/discards: rejected uploads per reason (today and all time). They belong to no
    project, so a caller limited to some projects sees none."""
    state = state_of(request)
    if projects_visible(caller(request, state)) is not None:
        return JSONResponse({"today": {}, "all_time": {}})
    today = queries.utcnow().strftime("%Y-%m-%d")
    engine = state.ctx.engine
    return JSONResponse({
        "today": await run_in_threadpool(queries.discard_counts, engine, day=today),
        "all_time": await run_in_threadpool(queries.discard_counts, engine),
    })
