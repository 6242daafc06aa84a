"""The symbols page: ``GET /symbols?project=``.

Missing symbols first, ranked by how many crashes they would fix (each module's crashes
processed without its symbols: uploading them reprocesses those crashes by themselves),
then the debug files uploaded so far.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server import auth
from server.dashboard import pages
from server.dashboard.access import page, project_filter
from server.state import ServerState
from storage import dashboard_queries


@page
async def symbols_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /symbols."""
    project, projects, scope = await project_filter(state, request.query_params, who)
    found = await run_in_threadpool(dashboard_queries.symbols_page, state.ctx.engine,
                                    project_id=scope)
    return pages.render(request, "symbols.html", {
        "user": who, "files": found["files"], "missing": found["missing"], "projects": projects,
        "project": project,
        "max_missing": max((m["crashes"] for m in found["missing"]), default=0),
    })
