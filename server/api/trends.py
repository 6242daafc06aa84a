"""``GET /api/trends?project=&days=30[&group=][&build=a,b]``: per build and UTC day, sessions,
session-hours, crashes, hangs and feedback with crashes per session, per 1,000 session-hours
and hangs per session (storage/trends.py; docs/rates.md, Trends). The group and builds pages
draw the same series (server/dashboard/trend_chart.py).
"""

from __future__ import annotations

from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.access import requires
from server.api.documents import jsonable
from server.api.params import int_param, query, required_project, split
from server.state import state_of
from storage import trends
from storage.queries import MAX_ID
from storage.scope import group_project

PARAMETERS = ("project", "days", "group", "build")
DEFAULT_DAYS = 30
MAX_PICKED = 20  # builds one request may name
MAX_BUILD = 200  # characters of a build (the column's size)


def trend_query(params: Mapping[str, str]) -> tuple[int, int | None, list[str] | None]:
    """(days 1..90 (default 30), group id or None, builds named or None) from the query.
    Raises ValueError naming the parameter: also for one the endpoint does not take."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} (takes {', '.join(PARAMETERS)})")
    days = int_param(params, "days", DEFAULT_DAYS, 1, trends.MAX_DAYS)
    group = int_param(params, "group", 0, 1, MAX_ID) if params.get("group") else None
    builds = split(params.get("build"))
    if "build" in params and not builds:
        raise ValueError("build must name builds, comma-separated")
    if builds is not None and (len(builds) > MAX_PICKED or any(len(b) > MAX_BUILD for b in builds)):
        raise ValueError(f"build: at most {MAX_PICKED} builds of at most {MAX_BUILD} characters")
    return days, group, builds


@requires("read")
async def trends_endpoint(request: Request) -> Response:
    """GET /api/trends: ``{"project", "project_id", "group_id", "days": [ISO dates], "builds":
    [{"build", "series": [{"day", "sessions", "session_hours", "crashes", "crashes_per_session",
    "crashes_per_1k_session_hours", "hangs", "hangs_per_session", "feedback"}]}]}``. 400 naming
    a bad or unknown parameter; 404 for a project the caller may not read and for a group
    that is not the project's."""
    state = state_of(request)
    days, group_id, builds = query(trend_query, request.query_params)
    project = await required_project(request)  # 404 for a project the caller may not read
    assert project.id is not None  # a stored project has its id
    if group_id is not None:
        owner = await run_in_threadpool(group_project, state.ctx.engine, group_id=group_id)
        if owner != project.id:
            raise HTTPException(404, "group not found")
    found = await run_in_threadpool(trends.trends, state.ctx.engine, project_id=project.id, days=days,
                                    group_id=group_id, builds=builds)
    document: dict[str, Any] = {"project": project.name, "project_id": project.id, "group_id": group_id, **found}
    return JSONResponse(jsonable(document))
