"""JSON API over crash groups: GET /api/groups and GET /api/groups/<id>."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api import project_from_query
from server.auth import is_admin
from storage import groups, queries

if TYPE_CHECKING:
    from server.app import ServerState

RELATIVE = re.compile(r"^(\d+)([hdw])$")
UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None) -> datetime | None:
    """`24h`, `7d`, `2w` ago, or an ISO date/time (UTC when no zone). Raises ValueError."""
    if not value:
        return None
    match = RELATIVE.match(value.strip())
    if match:
        return datetime.now(timezone.utc) - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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
    """GET /api/groups?project=&component=&build=&since=&limit=&offset=."""
    state: ServerState = request.app.state.crashd
    if not is_admin(request, state.admin_token):
        return _refuse(401, "admin bearer token required")
    params = request.query_params
    try:
        since = parse_since(params.get("since"))
        limit = min(int(params.get("limit", "100")), 1000)
        offset = int(params.get("offset", "0"))
    except ValueError as exc:
        return _refuse(400, f"bad query parameter: {exc}")
    project_id, missing = await project_from_query(state, params)
    if missing is not None:
        return missing
    rows = await run_in_threadpool(
        groups.list_groups, state.ctx.engine, project_id=project_id, component=params.get("component"),
        build=params.get("build"), since=since, limit=limit, offset=offset,
    )
    return JSONResponse({"groups": [group_json(r) for r in rows]})


async def detail_endpoint(request: Request) -> Response:
    """GET /api/groups/<id>: the group, its per-build counts and a representative crash."""
    state: ServerState = request.app.state.crashd
    if not is_admin(request, state.admin_token):
        return _refuse(401, "admin bearer token required")
    group = await run_in_threadpool(groups.get_group, state.ctx.engine, group_id=request.path_params["group_id"])
    if group is None:
        return _refuse(404, "group not found")
    representative = None
    if group["representative_crash_id"]:
        crash = await run_in_threadpool(queries.get_crash, state.ctx.engine, crash_id=group["representative_crash_id"])
        if crash is not None:
            representative = {
                "crash_id": crash.crash_id, "build": crash.build, "tester_id": crash.tester_id,
                "received_at": queries.as_utc(crash.received_at).isoformat(),  # type: ignore[union-attr]
                "top_frames": (crash.processed or {}).get("top_frames", []),
                "crash_reason": (crash.processed or {}).get("crash_reason"),
            }
    out = group_json(group)
    out["representative_crash"] = representative
    return JSONResponse(out)
