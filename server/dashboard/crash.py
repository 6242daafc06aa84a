"""A crash's page, its downloads, and reprocessing it.

- ``GET /crashes/<crash_id>``: reason and address, threads (crashing first) and modules with
  symbol status a page at a time (``?threads=N``, ``?modules=N``: server/dashboard/stack.py),
  annotations, attachments (text ones in a log viewer, escaped, with the ``GGML_ASSERT`` /
  ``panicked at`` lines marked). Each annotation value, the build, platform, OS version and
  CPU link to the search of all crashes with that value (``search_links``).
- ``GET /crashes/<crash_id>/minidump`` and ``/crashes/<crash_id>/attachments/<name>``: the
  raw bytes for a signed-in user (the /api twins want the admin token).
- ``POST /crashes/<crash_id>/reprocess`` (the project's triagers and admins, CSRF): enqueue it again, back to the page.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from schemas.tables import Attachment, Crash
from server import auth
from server.access_rules import may
from server.api.crashes import _blob_response, _load_crash, crash_document, load_report
from server.api.dumps import DumpRefused, raw_dump_deleted, vendor_safe_download, wants_vendor_safe
from server.dashboard import pages, stack
from server.dashboard.access import action, page, problem, refused
from server.dashboard.feedback import crash_feedback
from server.dashboard.search import search_href
from server.state import ServerState
from storage import queries
from storage.blobs import BlobNotFound
from storage.search_index import crash_fields
from storage.search_query import ANNOTATION_PREFIX, MAX_VALUE, is_field, is_indexed
from workers.reprocess import enqueue_all

LOG_VIEW_BYTES = 256 * 1024  # the tail of each log shown inline; the download has it all
MARKER = re.compile(r"GGML_ASSERT|panicked at")  # what triage/components.py reads reasons from


def is_text(attachment: Attachment) -> bool:
    """Whether the attachment is a log or text (shown inline): the rule processing uses."""
    name = (attachment.filename or attachment.name).lower()
    textual = (attachment.content_type or "").startswith("text/") or name.endswith((".log", ".txt"))
    return textual or "log" in name


def log_lines(state: ServerState, attachment: Attachment) -> dict[str, Any]:
    """The attachment's last LOG_VIEW_BYTES as lines ``{"number", "text", "marked"}``, with
    ``truncated`` when the start was cut (numbers then count from the cut)."""
    try:
        with state.ctx.blobs.open(attachment.blob_key) as handle:
            start = max(0, attachment.size - LOG_VIEW_BYTES)
            handle.seek(start)
            text = handle.read(LOG_VIEW_BYTES).decode("utf-8", "replace")
    except BlobNotFound:
        return {"lines": [], "truncated": False, "missing": True}
    if start:
        text = text.partition("\n")[2]  # drop the partial first line
    lines = [{"number": n, "text": line, "marked": bool(MARKER.search(line))}
             for n, line in enumerate(text.splitlines(), 1)]
    return {"lines": lines, "truncated": start > 0, "missing": False,
            "marked": [line["number"] for line in lines if line["marked"]]}


def page_number(params: Mapping[str, str], name: str) -> int:
    """The page asked for in the query (``?threads=3``); 1 when absent or not a number."""
    value = params.get(name, "")
    return int(value) if value.isdigit() and len(value) < 10 else 1


def report_view(report: dict[str, Any] | None, params: Mapping[str, str], hung: int | None = None) -> dict[str, Any]:
    """What the crash page shows of the processed report: crash and system info, one page
    of threads (a hang's hung thread first: hung is its index) and one of modules
    (``?threads=N``, ``?modules=N``), and ``cut``, the lists processing left out
    (symbolicator/limits.py)."""
    return {
        "info": (report or {}).get("crash_info") or {},
        "system": (report or {}).get("system_info") or {},
        "threads": stack.thread_page(report, page_number(params, "threads"), hung=hung),
        "modules": stack.module_page(report, page_number(params, "modules")),
        "cut": (report or {}).get("cut") or {},
    }


def search_links(crash: Crash) -> dict[str, Any]:
    """Links to the search page's "all crashes of the project with this value" (docs/search.md):
    ``{"build", "platform", "os_version", "cpu": href or None, "annotations": {key: href}}``.
    Each is ``<field>==<value>``, equals with the value taken literally (a value may begin with
    ! ^ ~ < > =), and only where the search can find the value: a field searched as a column
    of crashes always, the others as processing indexes them (storage/search_index.crash_fields:
    an annotation that is a list, or whose key the search cannot name, has no link). A crash
    not processed yet is not among the crashes its own indexed links find."""
    row = {"annotations": crash.annotations, "processed": crash.processed, "signature": crash.signature,
           "platform": crash.platform, "component": crash.component, "build": crash.build,
           "tester_id": crash.tester_id, "kind": crash.kind}
    indexed = {(field, value) for field, value in crash_fields(row) if is_field(field)}

    def href(field: str, value: str | None) -> str | None:
        searchable = not is_indexed(field) or (field, value) in indexed
        if not value or len(value) > MAX_VALUE or not searchable:
            return None
        return search_href([("project", crash.project_id), (field, "=" + value)])

    summary = crash.processed or {}
    found = {field[len(ANNOTATION_PREFIX):]: href(field, value) for field, value in indexed
             if field.startswith(ANNOTATION_PREFIX)}
    return {"build": href("build", crash.build), "platform": href("platform", crash.platform),
            "os_version": href("os_version", summary.get("os_version")), "cpu": href("cpu", summary.get("cpu_arch")),
            "annotations": {key: link for key, link in found.items() if link}}


def crash_view(state: ServerState, crash_id: str, params: Mapping[str, str]) -> dict[str, Any] | None:
    """Everything the crash page shows, or None for an unknown crash."""
    found = _load_crash(state, crash_id)
    if found is None:
        return None
    crash, project, attachments = found
    report = load_report(state, crash)
    return {
        "doc": crash_document(crash, project, attachments),
        "search": search_links(crash),
        "processed": crash.processed or {},
        **report_view(report, params, stack.hung_index(report, crash.kind, crash.hang_thread)),
        "hang": stack.hang_text(crash.kind, crash.hang_seconds, crash.hang_thread),
        "logs": {a.name: log_lines(state, a) for a in attachments if is_text(a)},
        "pending": state.queue.is_pending(crash.crash_id),
        "feedback": crash_feedback(state, crash.crash_id),
    }


@page
async def crash_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /crashes/<crash_id>."""
    crash_id = request.path_params["crash_id"]
    crash = await run_in_threadpool(queries.get_crash, state.ctx.engine, crash_id=crash_id)
    if crash is None or not may(who, crash.project_id, "read"):  # another project's crash: the same 404
        return problem(request, who, 404, "Not found", f"There is no crash {crash_id}.")
    view = await run_in_threadpool(crash_view, state, crash_id, request.query_params)
    if view is None:
        return problem(request, who, 404, "Not found", f"There is no crash {crash_id}.")
    return pages.render(request, "crash.html", {"user": who, "may_triage": may(who, crash.project_id, "triage"), **view})


@page
async def minidump_download(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /crashes/<crash_id>/minidump: the raw dump as uploaded; ``?vendor_safe=1``: its
    vendor-safe copy."""
    crash = await run_in_threadpool(queries.get_crash, state.ctx.engine, crash_id=request.path_params["crash_id"])
    if crash is None or crash.minidump_key is None or not may(who, crash.project_id, "read"):
        # no minidump key: a Sentry event without a dump (docs/sentry.md); another project's: the same 404
        deleted = crash and may(who, crash.project_id, "read") and raw_dump_deleted(crash)
        if deleted:  # retention deleted it (CRASHD_RAW_DUMP_DAYS)
            return problem(request, who, 410, "Gone", f"The {deleted}; the processed report stays.")
        return problem(request, who, 404, "Not found", "There is no minidump for this crash.")
    if wants_vendor_safe(request):  # ?vendor_safe=1 (server/api/dumps.py, docs/privacy.md)
        try:
            return await vendor_safe_download(state, crash)
        except DumpRefused as exc:
            return problem(request, who, exc.status_code, "No vendor-safe dump", exc.detail)
    return _blob_response(state, crash.minidump_key, "application/x-dmp", f"{crash.crash_id}.dmp")


@page
async def attachment_download(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /crashes/<crash_id>/attachments/<name>: one attachment, always as a download
    (``application/octet-stream``: an uploaded .html must never render on this origin)."""
    found = await run_in_threadpool(_load_crash, state, request.path_params["crash_id"])
    name = request.path_params["name"]
    match = [a for a in found[2] if a.name == name] if found and may(who, found[0].project_id, "read") else []
    if not match:
        return problem(request, who, 404, "Not found", "There is no such attachment.")
    response = _blob_response(state, match[0].blob_key, "application/octet-stream", match[0].filename or name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@action
async def reprocess(request: Request, state: ServerState, who: auth.Principal, form: FormData) -> Response:
    """POST /crashes/<crash_id>/reprocess: run the crash through the pipeline again."""
    crash_id = request.path_params["crash_id"]
    crash = await run_in_threadpool(queries.get_crash, state.ctx.engine, crash_id=crash_id)
    if crash is None:
        return problem(request, who, 404, "Not found", f"There is no crash {crash_id}.")
    if (refusal := refused(request, who, crash.project_id, "triage", f"crash {crash_id}")) is not None:
        return refusal
    if await run_in_threadpool(enqueue_all, state.queue, [crash_id]) != 1:
        return problem(request, who, 503, "Queue unavailable", "The crash could not be enqueued; try again.")
    return RedirectResponse(f"/crashes/{crash_id}?reprocess=queued", status_code=303)
