"""``GET /api/triage?project=``: the triage board as JSON, the twin of the dashboard's triage
page (issue 6), for any signed-in reader. workers/triage_report.triage_board gathers it;
times become ISO 8601 UTC strings (``jsonable``). docs/dashboard.md has the shape.
"""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.access_rules import restricted_visible
from server.api.access import requires
from server.api.documents import jsonable
from server.api.params import project_scope
from server.auth import caller
from server.state import state_of
from workers.triage_report import triage_board


@requires("read")
async def triage_endpoint(request: Request) -> Response:
    """GET /api/triage?project=: the triage board (open P0/P1 by due time with seconds_left
    and overdue, spreading groups, regressions, resolved awaiting verification) and the
    daily report as Markdown."""
    state = state_of(request)
    found = await run_in_threadpool(triage_board, state.ctx, project_id=await project_scope(request),
                                    now=datetime.now(timezone.utc),
                                    show_restricted=restricted_visible(caller(request, state)))
    return JSONResponse(jsonable(found))
