"""JSON API over triage tickets (reads: readers of the ticket's project, another project's
ticket is 404; actions: the project's triagers and admins, docs/auth.md):

- ``GET /api/tickets?project=&state=&priority=&fixed_in=`` -> ``{"tickets": [...]}``
- ``GET /api/tickets/<id>`` -> the ticket with its ``history``
- ``POST /api/tickets/<id>/<action>`` with a JSON body, action one of resolve
  (``{"fixed_in"}``), verify, reject, reopen, wontfix, duplicate (``{"of": <ticket id>}``);
  every body may carry ``note`` and ``by`` (who: ``user:<by>``, else ``user:admin``).
  A change that does not apply to the ticket's state is ``400 {"detail": <why>}``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable, Mapping

from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.access_rules import restricted_visible
from server.api.access import check, requires
from server.api.params import project_scope, query, split
from server.auth import caller, ingest_key, principal
from server.state import ServerState, state_of
from storage import security, triage_queries
from storage.queries import is_row_id
from storage.tickets import Restricted, apply_action, hidden_count
from triage.tickets.transitions import ACTIONS, TicketNotFound, TransitionError
from workers import triage_jobs
from workers.queue import RQJobQueue

STATES = ("open", "resolved", "verified", "regressed", "wontfix", "duplicate")
_ACTOR = re.compile(r"^[\w.@+-]{1,100}$")


def ticket_filters(params: Mapping[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """``state`` and ``priority`` as lists (comma separated), checked. Raises ValueError."""
    states, priorities = split(params.get("state")), split(params.get("priority"))
    if states and set(states) - set(STATES):
        raise ValueError(f"state must be among {', '.join(STATES)}")
    if priorities and set(priorities) - {"P0", "P1"}:
        raise ValueError("priority must be P0 or P1")
    return states, priorities


@requires("read")
async def list_endpoint(request: Request) -> Response:
    """GET /api/tickets?project=&state=open,regressed&priority=P0&fixed_in=."""
    state = state_of(request)
    params = request.query_params
    states, priorities = query(ticket_filters, params)
    scope, show = await project_scope(request), restricted_visible(caller(request, state))
    tickets = await run_in_threadpool(triage_queries.list_tickets, state.ctx.engine, project_id=scope, states=states,
                                      priorities=priorities, fixed_in=params.get("fixed_in"), show_restricted=show)
    hidden = await run_in_threadpool(hidden_count, state.ctx.engine, project_id=scope, show=show)
    return JSONResponse({"tickets": tickets, "restricted_hidden": hidden})


@requires("read")
async def detail_endpoint(request: Request) -> Response:
    """GET /api/tickets/<id>: the ticket and its history, oldest event first."""
    state = state_of(request)
    ticket_id = request.path_params["ticket_id"]
    ticket = await run_in_threadpool(with_report, state.ctx.engine, ticket_id,
                                     restricted_visible(caller(request, state))) if is_row_id(ticket_id) else None
    if ticket is None:  # none, or a security report the caller may not see: 404 alike
        raise HTTPException(404, "ticket not found")
    check(request, ticket["project_id"], "read", "ticket")  # another project's ticket: 404 too
    return JSONResponse(ticket)


def with_report(engine: Engine, ticket_id: int, show_restricted: Restricted) -> dict[str, Any] | None:
    """The ticket as GET /api/tickets/<id> shows it (None as get_ticket), a security report's
    with its ``report`` (text and timeline)."""
    ticket = triage_queries.get_ticket(engine, ticket_id=ticket_id, show_restricted=show_restricted)
    if ticket is not None and ticket["restricted"]:
        ticket["report"] = security.report_of(engine, ticket_id=ticket_id)
    return ticket


@requires("triage")  # viewers: 403 admin role required; triagers: their projects' tickets
async def action_endpoint(request: Request) -> Response:
    """POST /api/tickets/<id>/<action>: change the ticket by hand; 200 with the ticket."""
    state = state_of(request)
    action, ticket_id = request.path_params["action"], request.path_params["ticket_id"]
    if action not in ACTIONS:
        raise HTTPException(404, f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    show = restricted_visible(caller(request, state))
    found = await run_in_threadpool(triage_queries.get_ticket, state.ctx.engine, ticket_id=ticket_id,
                                    show_restricted=show) if is_row_id(ticket_id) else None
    if found is None:
        raise HTTPException(404, "ticket not found")
    check(request, found["project_id"], "triage", "ticket")  # 404 elsewhere, 403 where only a viewer
    try:
        body = parse_body(await request.body())
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    who = principal(request, state)
    if who is not None and who.via != "admin-token":  # a person or a named token: the history names them
        body["by"] = who.name
    try:
        await run_in_threadpool(change, state, ticket_id, action, body)
    except TicketNotFound:
        raise HTTPException(404, "ticket not found") from None
    except TransitionError as exc:
        raise HTTPException(400, str(exc)) from None
    ticket = await run_in_threadpool(triage_queries.get_ticket, state.ctx.engine, ticket_id=ticket_id,
                                     show_restricted=show)
    return JSONResponse(ticket)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request's JSON object (empty body: {}). Raises ValueError with a reason."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def parse_body(raw: bytes) -> dict[str, Any]:
    """The action's JSON object (empty body: {}), checked. Raises ValueError with a reason."""
    body = parse_json_object(raw)
    for key in ("fixed_in", "note", "by"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ValueError(f"{key} must be a string")
    if body.get("by") is not None and not _ACTOR.match(body["by"]):
        raise ValueError("by must be a user name (letters, digits, . _ @ + -, at most 100)")
    duplicate_of = body.get("of")
    if duplicate_of is not None and (isinstance(duplicate_of, bool) or not isinstance(duplicate_of, int)
                                     or not is_row_id(duplicate_of)):
        raise ValueError("of must be a ticket id")
    if body.get("note") is not None:
        body["note"] = body["note"][:2000]
    return body


def change(state: ServerState, ticket_id: int, action: str, body: dict[str, Any]) -> None:
    """Apply the action; after a resolve, verify by numbers at once (the sessions may be in
    already); then enqueue delivery of the notifications."""
    ctx = state.ctx
    changes = [apply_action(ctx.engine, settings=ctx.settings, ticket_id=ticket_id, action=action,
                            actor=f"user:{body.get('by') or 'admin'}", fixed_in=body.get("fixed_in"),
                            note=body.get("note"), duplicate_of=body.get("of"))]
    if action == "resolve":
        changes += triage_jobs.verify_resolved(ctx, ticket_id=ticket_id)
    triage_jobs.notify(state.queue, changes)


def verify_after(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap the sessions endpoint: once sessions are stored (200), the project's resolved
    tickets are verified again (workers/triage_jobs.sessions_arrived: a job on RQ, else the
    work itself once the response went out). Never fails the upload."""
    async def endpoint_then_verify(request: Request) -> Response:
        response = await endpoint(request)
        if response.status_code == 200:
            state = state_of(request)
            key = ingest_key(request)
            project = await run_in_threadpool(state.projects.get, key) if key else None
            if project is None:
                return response
            assert project.id is not None  # a stored project has its id
            if isinstance(state.queue, RQJobQueue):  # enqueued before the answer: a client (or a
                # test) that starts workers next finds the job waiting
                await run_in_threadpool(triage_jobs.sessions_arrived, state.ctx, state.queue, project.id)
            else:  # the work itself: after the answer went out
                response.background = BackgroundTask(triage_jobs.sessions_arrived, state.ctx, state.queue, project.id)
        return response
    return endpoint_then_verify
