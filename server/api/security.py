"""A security report's disclosure timeline by hand (docs/security-reports.md):

- ``POST /api/tickets/<id>/timeline`` ``{"step", "build", "note"}``, step one of acknowledged,
  confirmed, rejected, fixed (``build`` required: the hotfix), tester_told, disclosed. Needs the
  project's ``security`` grant and the triager role (or a global admin); anyone else gets 404
  (the report's existence is not confirmed). 200 with the ticket, its report and timeline.

GET /api/tickets/<id> shows the same ``report`` to those who may see it.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.access_rules import may, restricted_visible
from server.api.access import actor, check, requires
from server.api.tickets import parse_json_object, with_report
from server.auth import caller
from server.state import state_of
from storage import security, triage_queries
from storage.queries import is_row_id
from triage.tickets.transitions import TicketNotFound, TransitionError
from workers import triage_jobs


@requires("triage")
async def timeline_endpoint(request: Request) -> Response:
    """POST /api/tickets/<id>/timeline: record a disclosure step; 200 with the ticket."""
    state = state_of(request)
    who = caller(request, state)
    ticket_id = request.path_params["ticket_id"]
    ticket = await run_in_threadpool(triage_queries.get_ticket, state.ctx.engine, ticket_id=ticket_id,
                                     show_restricted=restricted_visible(who)) if is_row_id(ticket_id) else None
    if ticket is None or not ticket["restricted"] or not may(who, ticket["project_id"], "security"):
        raise HTTPException(404, "ticket not found")
    check(request, ticket["project_id"], "triage", "ticket")  # 403 for a grantee who only reads
    try:
        body = parse_json_object(await request.body())
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    fields = {key: body.get(key) for key in ("step", "build", "note")}
    if any(value is not None and not isinstance(value, str) for value in fields.values()):
        raise HTTPException(400, "step, build and note must be strings")
    try:
        change = await run_in_threadpool(security.record_step, state.ctx.engine, state.settings, ticket_id=ticket_id,
                                         step=fields["step"] or "", actor=actor(request), build=fields["build"],
                                         note=fields["note"])
    except TicketNotFound:
        raise HTTPException(404, "ticket not found") from None
    except TransitionError as exc:
        raise HTTPException(400, str(exc)) from None
    triage_jobs.notify(state.queue, [change])
    return JSONResponse(await run_in_threadpool(with_report, state.ctx.engine, ticket_id, True))
