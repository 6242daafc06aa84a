"""JSON API over crash groups: GET /api/groups and GET /api/groups/<id>."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.access import requires
from server.api.crashes import load_report
from server.api.documents import jsonable
from server.api.params import group_query, page_query, project_id, query
from server.state import ServerState, state_of
from storage import dashboard_queries, queries


def group_json(row: dict[str, Any]) -> dict[str, Any]:
    """A group row with times as ISO strings."""
    out = dict(row)
    for key in ("first_seen", "last_seen"):
        out[key] = queries.as_utc(out[key]).isoformat() if out.get(key) else None
    for build in out.get("builds", []):
        for key in ("first_seen", "last_seen"):
            build[key] = queries.as_utc(build[key]).isoformat() if build.get(key) else None
    return out


@requires("read")
async def list_endpoint(request: Request) -> Response:
    """GET /api/groups?project=&component=&build=&platform=&status=&since=&sort=&order=&limit=
    &offset=&days=: ``{"groups": [...], "total", "limit", "offset"}`` (most testers first
    unless sorted otherwise; server/api/params.group_query reads the parameters)."""
    state = state_of(request)
    params = request.query_params
    found = query(group_query, params)
    page = await run_in_threadpool(dashboard_queries.list_groups_page, state.ctx.engine,
                                   project_id=await project_id(state, params), **found)
    rows = [{"id": g["group_id"], **g} for g in page["groups"]]
    return JSONResponse(jsonable({"groups": rows, "total": page["total"], "limit": found["limit"],
                                  "offset": found["offset"]}))


@requires("read")
async def detail_endpoint(request: Request) -> Response:
    """GET /api/groups/<id>?crashes=&days=: the group, its builds (with sessions and crash
    rate), platforms, testers, latest crashes, ticket with history, and a representative
    crash with its crashing thread's stack (trust and inlined frames)."""
    state = state_of(request)
    found = query(page_query, request.query_params)
    group_id = request.path_params["group_id"]
    group = await run_in_threadpool(dashboard_queries.group_page, state.ctx.engine, group_id=group_id,
                                    **found) if queries.is_row_id(group_id) else None
    if group is None:
        raise HTTPException(404, "group not found")
    for build in group["builds"]:
        build["crash_count"] = build["crashes"]
    out = {"id": group["group_id"], **group}
    out["representative_crash"] = await run_in_threadpool(representative, state, group["representative_crash_id"])
    return JSONResponse(jsonable(out))


def representative(state: ServerState, crash_id: str | None) -> dict[str, Any] | None:
    """The representative crash: id, build, tester, received_at, crash_reason, top_frames,
    and ``stack``: its crashing thread's frames from the processed report (frame, trust,
    module, module_offset, function, file, line, inlines, missing_symbols), None when the
    report is not in the blob store."""
    crash = queries.get_crash(state.ctx.engine, crash_id=crash_id) if crash_id else None
    if crash is None:
        return None
    report = load_report(state, crash) or {}
    frames = (report.get("crashing_thread") or {}).get("frames")
    return {
        "crash_id": crash.crash_id, "build": crash.build, "tester_id": crash.tester_id,
        "received_at": queries.as_utc(crash.received_at).isoformat(),
        "top_frames": (crash.processed or {}).get("top_frames", []),
        "crash_reason": (crash.processed or {}).get("crash_reason"),
        "stack": None if frames is None else [{k: v for k, v in f.items() if k != "registers"} for f in frames],
    }
