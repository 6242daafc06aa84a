"""JSON API over tester feedback (any reader; docs/feedback.md):

- ``GET /api/feedback?project=&category=&build=&tester=&group=&crash=&limit=&offset=``: the
  reports, newest first, ``{"feedback": [...], "total", "limit", "offset"}``;
- ``GET /api/feedback/<id>/attachments/<name>``: a report's file. A screenshot (checked to be a
  PNG, JPEG, GIF or WebP at ingest) is served as its image type, so that a page can show it in
  an ``<img>``; anything else as ``application/octet-stream``. Always with ``nosniff``, a
  sandboxing Content-Security-Policy and ``Content-Disposition: attachment``.
"""

from __future__ import annotations

from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.access import check, requires
from server.api.crashes import _blob_response
from server.api.params import MAX_LIMIT, MAX_OFFSET, int_param, project_scope, query
from server.ingest.feedback import IMAGE_TYPES
from server.state import state_of
from storage import feedback as stored
from storage.queries import is_row_id
from triage.feedback import CATEGORIES

SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'"}


def feedback_query(params: Mapping[str, str]) -> dict[str, Any]:
    """list_feedback's filters (all but project_id) from ``category``, ``build``, ``tester``,
    ``group``, ``crash``, ``limit`` (1..1000, default 50; larger is cut) and ``offset``.
    Raises ValueError with the reason."""
    category = params.get("category") or None
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}")
    group = params.get("group") or None
    if group is not None and not (group.isascii() and group.isdigit() and is_row_id(int(group))):
        raise ValueError(f"group must be a group id, not {group!r}")
    return {"category": category, "build": params.get("build") or None, "tester_id": params.get("tester") or None,
            "group_id": int(group) if group is not None else None, "crash_id": params.get("crash") or None,
            "limit": int_param(params, "limit", 50, 1, MAX_LIMIT, clip=True),
            "offset": int_param(params, "offset", 0, 0, MAX_OFFSET)}


@requires("read")
async def list_endpoint(request: Request) -> Response:
    """GET /api/feedback: reports with filters, newest first."""
    state = state_of(request)
    params = request.query_params
    found = query(feedback_query, params)
    page = await run_in_threadpool(stored.list_feedback, state.ctx.engine,
                                   project_id=await project_scope(request), **found)
    return JSONResponse({**page, "limit": found["limit"], "offset": found["offset"]})


@requires("read")
async def attachment_endpoint(request: Request) -> Response:
    """GET /api/feedback/<id>/attachments/<name>: one file of a report."""
    state = state_of(request)
    row = await run_in_threadpool(stored.get_feedback, state.ctx.engine, feedback_id=request.path_params["feedback_id"])
    name = request.path_params["name"]
    match = [a for a in (row.attachments if row else []) if a.get("name") == name]
    if row is None or not match:
        raise HTTPException(404, "attachment not found")
    check(request, row.project_id, "read", "attachment")
    attachment = match[0]
    media_type = attachment.get("content_type") if attachment.get("content_type") in IMAGE_TYPES else None
    response = _blob_response(state, str(attachment["blob_key"]), media_type or "application/octet-stream",
                              str(attachment.get("filename") or name))
    response.headers.update(SAFE_HEADERS)
    return response
