"""``GET /api/turnaround?project=&since=``: how long each P0/P1 ticket took from opened to its
fix deployed to staging, against its due time, and a summary per priority (docs/triage.md,
Turnaround). storage/turnaround.py reads the times, triage/turnaround.py makes the figures.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.access_rules import restricted_visible
from server.api.access import requires
from server.api.params import parse_since, project_scope, query
from server.auth import caller
from server.state import state_of
from storage import turnaround


@requires("read")
async def turnaround_endpoint(request: Request) -> Response:
    """GET /api/turnaround?project=&since=: ``{"tickets": [...], "summary": {"P0", "P1"},
    "summary_text": [...]}`` of the tickets opened since (``24h``, ``7d``, ISO; all without).
    Restricted tickets are counted; their titles only for those who may see them."""
    state = state_of(request)
    since = query(parse_since, request.query_params.get("since"))
    scope, show = await project_scope(request), restricted_visible(caller(request, state))
    found = await run_in_threadpool(turnaround.turnaround, state.ctx.engine, project_id=scope, since=since,
                                    show_restricted=show, p1_due_hours=state.settings.p1_due_hours)
    return JSONResponse(found)
