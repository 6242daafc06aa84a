"""The triage board: ``GET /triage?project=``.

Open P0/P1 tickets by due time with a countdown (overdue in red), newly spreading groups,
regressions, tickets resolved and awaiting verification, and the daily report as Markdown
with a copy button. storage/dashboard_queries.triage_board gathers it all.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server import auth, pages
from server.dashboard.access import page, project_filter
from storage import dashboard_queries

if TYPE_CHECKING:
    from server.app import ServerState


@page
async def triage_page(request: Request, state: "ServerState", who: auth.Principal) -> Response:
    """GET /triage."""
    project, projects = await project_filter(state, request.query_params)
    now = datetime.now(timezone.utc)
    board = await run_in_threadpool(dashboard_queries.triage_board, state.ctx.engine,
                                    project_id=project.id if project else None, now=now, settings=state.settings)
    return pages.render(request, "triage.html", {
        "user": who, "board": board, "projects": projects, "project": project,
    })
