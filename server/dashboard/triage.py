"""The triage board: ``GET /triage?project=``.

Open P0/P1 tickets by due time with a countdown (overdue in red), newly spreading groups,
regressions, tickets resolved and awaiting verification, and the daily report as Markdown
with a copy button. workers.triage_report.triage_board gathers it all (also for ``GET /api/triage``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server import auth
from server.access_rules import restricted_visible
from server.dashboard import pages
from server.dashboard.access import page, project_filter
from server.state import ServerState
from workers.triage_report import triage_board


@page
async def triage_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /triage."""
    project, projects, scope = await project_filter(state, request.query_params, who)
    now = datetime.now(timezone.utc)
    found = await run_in_threadpool(triage_board, state.ctx, project_id=scope, now=now,
                                    show_restricted=restricted_visible(who))
    return pages.render(request, "triage.html", {
        "user": who, "board": found, "projects": projects, "project": project,
    })
