"""A tester's report in words, as received (the shared first step of feedback,
server/ingest/feedback.py, and security reports, server/ingest/security.py): a JSON object or a
multipart body of text fields and files, read within the upload caps. A leaf of server/ingest:
it imports neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from schemas.tables import Project
from server.ingest.discard import Discarded, UploadTooLarge
from server.ingest.keys import authenticate
from server.ingest.minidump import _boundary
from server.ingest.upload_parser import (
    Budget,
    UploadPart,
    decoded_body,
    load_json_object,
    parse_multipart,
    read_whole_body,
)
from server.state import ServerState, state_of
from triage.feedback import MAX_MESSAGE_BYTES

JSON_BODY_BYTES = 64 * 1024  # a JSON report (no files) decoded; more is <what>_too_long
FIELD_BYTES = 4 * 1024  # any other text field of a multipart report


@dataclass
class Report:
    """One report as received, before it is checked (every value text or None)."""

    fields: dict[str, str | None]
    source: str
    files: list[UploadPart] = field(default_factory=list)
    feedback_id: str | None = None

    def close(self) -> None:
        for part in self.files:
            part.close()


async def read_report(request: Request, state: ServerState, text_fields: Mapping[str, int | None],
                      what: str) -> Report:
    """The report in a multipart body (text fields and files) or a JSON object; text_fields
    names its text fields (None: the long one, read up to MAX_MESSAGE_BYTES + 1). Raises
    MalformedUpload, UploadTooLarge (``<what>_too_long`` past JSON_BODY_BYTES)."""
    media_type, _, params = request.headers.get("content-type", "").partition(";")
    if not media_type.strip().lower().startswith("multipart/"):
        whole = await read_whole_body(request, max_upload_bytes=state.settings.max_upload_bytes,
                                      max_decompressed_bytes=JSON_BODY_BYTES, over_reason=f"{what}_too_long")
        values = load_json_object(bytes(whole), what)
        return Report({name: text_of(values.get(name)) for name in text_fields}, "api")
    settings = state.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise UploadTooLarge("too_large", f"Content-Length {declared}")
    budget = Budget(settings.max_decompressed_bytes)
    body = decoded_body(request.stream(), max_upload_bytes=settings.max_upload_bytes,
                        content_encoding=request.headers.get("content-encoding", "").strip().lower())
    parts = await parse_multipart(body, boundary=_boundary(params), tmp_dir=state.tmp_dir, budget=budget)
    report = Report({}, "api")
    for _, part in parts:
        if part.filename is None and part.name in text_fields and part.name not in report.fields:
            report.fields[part.name] = _field(part, long=text_fields[part.name] is None)
        else:
            report.files.append(part)
    return report


def _field(part: UploadPart, *, long: bool) -> str:
    """A text field's value (the long one up to one byte past its cap: it is then refused)."""
    limit = MAX_MESSAGE_BYTES + 1 if long else FIELD_BYTES
    try:
        return part.file.read(limit).decode("utf-8", "replace")
    finally:
        part.close()


def text_of(value: Any) -> str | None:
    """A JSON value as field text: strings and numbers; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value)


async def take_report(request: Request, text_fields: Mapping[str, int | None], what: str,
                      save: Callable[[ServerState, Project, Report], str]) -> str:
    """One report endpoint's work: the ingest key, the project's rate limit, the body read as a
    report, then save (run in a thread) stores it; returns what save returns (its id).
    Raises Discarded (401 bad key, 429 rate_limited, bad input) as the refusal handler expects."""
    state = state_of(request)
    project = await authenticate(state, request, request.path_params["project"])
    assert project.id is not None  # a stored project has its id
    retry_after = await state.limiter.over_limit(project.id, project.rate_limit_per_minute)
    if retry_after is not None:
        raise Discarded(429, "rate_limited", retry_after=retry_after)
    report = await read_report(request, state, text_fields, what)
    try:
        return await run_in_threadpool(save, state, project, report)
    finally:
        report.close()
