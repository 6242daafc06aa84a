"""JSON API over crash groups: GET /api/groups and GET /api/groups/<id>."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api import project_from_query
from server.auth import can_read
from storage import dashboard_queries, queries
from server.state import ServerState, state_of


RELATIVE = re.compile(r"^(\d+)([hdw])$")
UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None) -> datetime | None:
    """`24h`, `7d`, `2w` ago, or an ISO date/time (UTC when no zone), as an aware UTC
    datetime. Raises ValueError with one wording for every caller (the JSON API, the
    dashboard, the CLI), also for a time out of datetime's range."""
    if not value:
        return None
    match = RELATIVE.match(value.strip())
    try:
        if match:
            return datetime.now(timezone.utc) - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        parsed = datetime.fromisoformat(value.strip())
        # in UTC here: 0001-01-01T00:00+01:00 has no UTC time, and 99999999d no date at all
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except OverflowError:
        raise ValueError(f"since {value!r} is out of range (years 1..9999)") from None
    except ValueError:
        raise ValueError(f"since must be like 24h, 7d, 2w or an ISO date, not {value!r}") from None


def group_json(row: dict[str, Any]) -> dict[str, Any]:
    """A group row with times as ISO strings."""
    out = dict(row)
    for key in ("first_seen", "last_seen"):
        out[key] = queries.as_utc(out[key]).isoformat() if out.get(key) else None  # type: ignore[union-attr]
    for build in out.get("builds", []):
        for key in ("first_seen", "last_seen"):
            build[key] = queries.as_utc(build[key]).isoformat() if build.get(key) else None  # type: ignore[union-attr]
    return out


def _refuse(status: int, detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=status)


async def list_endpoint(request: Request) -> Response:
    """GET /api/groups?project=&component=&build=&platform=&status=&since=&sort=&order=&limit=
    &offset=&days=: ``{"groups": [...], "total", "limit", "offset"}`` (most testers first
    unless sorted otherwise; server/dashboard_api.group_query reads the parameters)."""
    from server import dashboard_api  # it imports this module (parse_since)

    state = state_of(request)
    if not can_read(request, state):
        return _refuse(401, "admin bearer token required")
    params = request.query_params
    try:
        query = dashboard_api.group_query(params)
    except ValueError as exc:
        return _refuse(400, f"bad query parameter: {exc}")
    project_id, missing = await project_from_query(state, params)
    if missing is not None:
        return missing
    page = await run_in_threadpool(dashboard_queries.list_groups_page, state.ctx.engine, project_id=project_id,
                                   **query)
    rows = [{"id": g["group_id"], **g} for g in page["groups"]]
    return JSONResponse(dashboard_api.jsonable({"groups": rows, "total": page["total"], "limit": query["limit"],
                                                "offset": query["offset"]}))


async def detail_endpoint(request: Request) -> Response:
    """GET /api/groups/<id>?crashes=&days=: the group, its builds (with sessions and crash
    rate), platforms, testers, latest crashes, ticket with history, and a representative
    crash with its crashing thread's stack (trust and inlined frames)."""
    from server import dashboard_api  # it imports this module (parse_since)

    state = state_of(request)
    if not can_read(request, state):
        return _refuse(401, "admin bearer token required")
    try:
        query = dashboard_api.page_query(request.query_params)
    except ValueError as exc:
        return _refuse(400, f"bad query parameter: {exc}")
    group_id = request.path_params["group_id"]
    group = await run_in_threadpool(dashboard_queries.group_page, state.ctx.engine, group_id=group_id,
                                    **query) if queries.is_row_id(group_id) else None
    if group is None:
        return _refuse(404, "group not found")
    for build in group["builds"]:
        build["crash_count"] = build["crashes"]
    out = {"id": group["group_id"], **group}
    out["representative_crash"] = await run_in_threadpool(representative, state, group["representative_crash_id"])
    return JSONResponse(dashboard_api.jsonable(out))


def representative(state: ServerState, crash_id: str | None) -> dict[str, Any] | None:
    """The representative crash: id, build, tester, received_at, crash_reason, top_frames,
    and ``stack``: its crashing thread's frames from the processed report (frame, trust,
    module, module_offset, function, file, line, inlines, missing_symbols), None when the
    report is not in the blob store."""
    from server.api import load_report

    crash = queries.get_crash(state.ctx.engine, crash_id=crash_id) if crash_id else None
    if crash is None:
        return None
    report = load_report(state, crash) or {}
    frames = (report.get("crashing_thread") or {}).get("frames")
    return {
        "crash_id": crash.crash_id, "build": crash.build, "tester_id": crash.tester_id,
        "received_at": queries.as_utc(crash.received_at).isoformat(),  # type: ignore[union-attr]
        "top_frames": (crash.processed or {}).get("top_frames", []),
        "crash_reason": (crash.processed or {}).get("crash_reason"),
        "stack": None if frames is None else [{k: v for k, v in f.items() if k != "registers"} for f in frames],
    }
