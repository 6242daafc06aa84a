"""JSON twins of the dashboard pages (issue 6), for any signed-in reader (server.auth.can_read):

- ``GET /api/triage?project=`` -> workers.triage_report.triage_board
- ``GET /api/symbols?project=&limit=`` -> storage.dashboard_queries.symbols_page

``GET /api/groups`` and ``GET /api/groups/<id>`` (server/groups_api.py) parse their query
with ``group_query`` / ``page_query`` here. Times become ISO 8601 UTC strings (``jsonable``).
A bad query parameter is ``400 {"detail": "bad query parameter: <why>"}``; without
credentials ``401 {"detail": "admin bearer token required"}``. docs/dashboard.md has the shapes.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api import project_from_query
from server.auth import can_read
from server.groups_api import parse_since
from workers.triage_report import triage_board
from storage import dashboard_queries
from server.state import state_of


MAX_LIMIT = 1000
MAX_DAYS = 90
MAX_OFFSET = 2**63 - 1  # SQL's OFFSET is a 64-bit integer; a larger one is an OverflowError, not no rows
ORDERS = ("asc", "desc")


def jsonable(value: Any) -> Any:
    """value with every datetime (aware UTC) and date as an ISO 8601 string, recursively."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def refuse(status: int, detail: str) -> Response:
    """``{"detail": detail}`` with status (401 also names the scheme)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def unauthorized(request: Request) -> Response | None:
    """The 401 answer when the caller may not read, else None."""
    return None if can_read(request, state_of(request)) else refuse(401, "admin bearer token required")


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None,
              clip: bool = False) -> int:
    """An integer query parameter in [low, high] (clip: larger values become high).
    Raises ValueError naming the parameter."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if high is not None and value > high and clip:
        return high
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be >= {low}")
    return value


def group_query(params: Mapping[str, str], *, default_sort: str = "tester_count",
                default_limit: int = 100) -> dict[str, Any]:
    """list_groups_page's arguments (all but project_id) from ``component``, ``build``,
    ``platform``, ``status``, ``since`` (``24h``, ``7d``, ``2w`` or ISO), ``sort``, ``order``
    (``asc``/``desc``; default desc, asc for signature), ``limit`` (1..1000; larger is cut to
    1000), ``offset`` (0..2**63-1), ``days`` (sparkline length, 1..90). Raises ValueError with
    the reason."""
    sort = params.get("sort") or default_sort
    if sort not in dashboard_queries.SORTS:
        raise ValueError(f"sort must be one of {', '.join(dashboard_queries.SORTS)}")
    order = params.get("order") or ("asc" if sort == "signature" else "desc")
    if order not in ORDERS:
        raise ValueError("order must be asc or desc")
    status = params.get("status") or None
    if status is not None and status not in dashboard_queries.STATUSES:
        raise ValueError(f"status must be one of {', '.join(dashboard_queries.STATUSES)}")
    since = parse_since(params.get("since"))
    return {"component": params.get("component") or None, "build": params.get("build"),
            "platform": params.get("platform") or None, "status": status, "since": since, "sort": sort,
            "descending": order == "desc", "limit": int_param(params, "limit", default_limit, 1, MAX_LIMIT, clip=True),
            "offset": int_param(params, "offset", 0, 0, MAX_OFFSET), "days": int_param(params, "days", 14, 1, MAX_DAYS)}


def page_query(params: Mapping[str, str]) -> dict[str, int]:
    """group_page's ``crash_limit`` (``crashes=``, 0..1000, default 50) and ``days``."""
    return {"crash_limit": int_param(params, "crashes", 50, 0, MAX_LIMIT),
            "days": int_param(params, "days", 14, 1, MAX_DAYS)}


async def triage_endpoint(request: Request) -> Response:
    """GET /api/triage?project=: the triage board (open P0/P1 by due time with seconds_left
    and overdue, spreading groups, regressions, resolved awaiting verification) and the
    daily report as Markdown."""
    state = state_of(request)
    if (denied := unauthorized(request)) is not None:
        return denied
    project_id, missing = await project_from_query(state, request.query_params)
    if missing is not None:
        return missing
    found = await run_in_threadpool(triage_board, state.ctx, project_id=project_id, now=datetime.now(timezone.utc))
    return JSONResponse(jsonable(found))


async def symbols_endpoint(request: Request) -> Response:
    """GET /api/symbols?project=&limit=: uploaded debug files (newest first) and missing
    symbols ranked by the crashes they would fix."""
    state = state_of(request)
    if (denied := unauthorized(request)) is not None:
        return denied
    try:
        limit = int_param(request.query_params, "limit", 200, 1, MAX_LIMIT)
    except ValueError as exc:
        return refuse(400, f"bad query parameter: {exc}")
    project_id, missing = await project_from_query(state, request.query_params)
    if missing is not None:
        return missing
    page = await run_in_threadpool(dashboard_queries.symbols_page, state.ctx.engine, project_id=project_id,
                                   limit=limit)
    return JSONResponse(jsonable(page))


ROUTES = [
    Route("/api/triage", triage_endpoint, methods=["GET"]),
    Route("/api/symbols", symbols_endpoint, methods=["GET"]),
]
