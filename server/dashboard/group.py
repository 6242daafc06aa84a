"""A crash group's page and the ticket actions on it.

- ``GET /groups/<id>``: signature, reason text, the representative crash's crashing stack,
  the trend chart (the group's crashes, hangs and feedback per session, per build and day:
  server/dashboard/trend_chart.py), crashes and crash rate per build (also the builds played
  since in which it never crashed, rates on a fixed axis), testers, crashes, the ticket and its
  history.
- ``GET /tickets/<id>``: 303 to its group's page (links to a ticket, e.g. "duplicate of"); a
  security report's restricted ticket has a page of its own, for those who may see it.
- ``POST /tickets/<id>/<action>`` (the project's triagers and admins, CSRF): resolve
  (``fixed_in``), verify, reject, reopen, wontfix, duplicate (``of``: picked from the project's other tickets) through
  server/api/tickets.change, then back to the group page (303).
- ``POST /groups/<id>/merge`` (``into``: a group id) and ``POST /groups/<id>/unmerge``
  (``signature``) (the project's triagers and admins, CSRF): workers/regroup.py, then to the
  group the crashes are in (303).
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server import auth
from server.access_rules import may, restricted_visible
from server.api import tickets
from server.api.crashes import load_report
from server.dashboard import pages, stack
from server.dashboard.access import action, page, problem, refused
from server.dashboard.feedback import group_feedback
from server.dashboard.trend_chart import AXIS_TICKS, rate_position, trend_chart
from server.state import ServerState
from storage import dashboard_queries, queries, search, security, trends
from storage.regroup import GroupNotFound, RegroupError
from storage.scope import group_project
from storage.search_query import Condition, configured_facets
from storage.triage_queries import get_ticket, list_tickets
from triage.tickets.transitions import TicketNotFound, TransitionError
from workers import regroup

# The buttons, in this order.
ACTION_LABELS = {"resolve": "Resolve", "verify": "Verify", "reject": "Reject", "reopen": "Reopen",
                 "wontfix": "Won't fix", "duplicate": "Duplicate of"}
SHOWN_ACTIONS = tuple(ACTION_LABELS)
NOTE_MAX = 2000
# The duplicate picker offers the project's other tickets that are not duplicates themselves.
PICKER_STATES = ("open", "regressed", "resolved", "verified", "wontfix")
FACET_VALUES = 5  # values shown per field in the group page's "Top values"
MAX_FACET_FIELDS = 10  # ... of at most this many fields
FACET_SAMPLE = 10_000  # ... counted among the group's latest this many crashes (docs/search.md)
TREND_DAYS = 30  # the trend chart's days (GET /api/trends?group= has the same series)


def representative(state: ServerState, crash_id: str | None) -> dict[str, Any] | None:
    """The representative crash: id, build, crash reason and address, and its crashing stack
    (a hang's: the hung thread's, with ``hang``, how long it was stuck and on which thread)."""
    crash = queries.get_crash(state.ctx.engine, crash_id=crash_id) if crash_id else None
    if crash is None:
        return None
    report = load_report(state, crash)
    info = (report or {}).get("crash_info") or {}
    return {"crash_id": crash.crash_id, "build": crash.build, "tester_id": crash.tester_id,
            "received_at": crash.received_at, "reason": info.get("type"), "address": info.get("address"),
            "rows": stack.crashing_rows(report, hung=stack.hung_index(report, crash.kind, crash.hang_thread)),
            "hang": stack.hang_text(crash.kind, crash.hang_seconds, crash.hang_thread),
            "processed": report is not None}


def group_facets(state: ServerState, group: dict[str, Any]) -> dict[str, Any]:
    """The top values of CRASHD_FACET_FIELDS among the group's crashes (storage/search.facets:
    ix_crash_fields_group)."""
    fields = configured_facets(state.ctx.settings.facet_fields)[:MAX_FACET_FIELDS]
    if not fields:
        return {"total": 0, "sample": None, "facets": []}
    return search.facets(state.ctx.engine, scope=group["project_id"], fields=fields,
                         conditions=[Condition("group", "eq", group["group_id"])], limit=FACET_VALUES,
                         latest=FACET_SAMPLE)


def group_trend(state: ServerState, group: dict[str, Any]) -> Markup:
    """The trend chart of the group's crashes, hangs and feedback per session, per build and
    day (storage/trends.py)."""
    found = trends.trends(state.ctx.engine, project_id=group["project_id"], group_id=group["group_id"],
                          days=TREND_DAYS)
    return trend_chart(found, label="Crashes of this group per session")


@page
async def group_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /groups/<id>."""
    group_id = request.path_params["group_id"]
    group = await run_in_threadpool(dashboard_queries.group_page, state.ctx.engine,
                                    group_id=group_id) if queries.is_row_id(group_id) else None
    if group is None:
        return problem(request, who, 404, "Not found", f"There is no crash group {group_id}.")
    if (refusal := refused(request, who, group["project_id"], "read", f"crash group {group_id}")) is not None:
        return refusal
    crash = await run_in_threadpool(representative, state, group["representative_crash_id"])
    ticket = group["ticket"]
    may_triage = may(who, group["project_id"], "triage")
    actions = [a for a in SHOWN_ACTIONS if ticket and a in ticket["actions"]] if may_triage else []
    others = []
    if "duplicate" in actions:
        others = [t for t in await run_in_threadpool(list_tickets, state.ctx.engine, project_id=group["project_id"],
                                                     states=PICKER_STATES) if t["id"] != ticket["ticket_id"]]
        if not others:
            actions.remove("duplicate")
    builds = group["builds"]
    feedback = await run_in_threadpool(group_feedback, state, group)
    return pages.render(request, "group.html", {
        "user": who, "group": group, "crash": crash, "ticket": ticket, "actions": actions, "labels": ACTION_LABELS,
        "may_triage": may_triage,
        "other_tickets": others, "feedback": feedback,
        "trend_chart": await run_in_threadpool(group_trend, state, group), "trend_days": TREND_DAYS,
        "facets": await run_in_threadpool(group_facets, state, group),
        "rate_position": rate_position, "rate_ticks": AXIS_TICKS,  # the per-build table's fixed rate axis
        "max_crashes": max((b["crashes"] for b in builds), default=0),
        "has_sessions": any(b["sessions"] for b in builds),
        "max_tester": max((t["crashes"] for t in group["testers"]), default=0),
    })


def ticket_body(who: auth.Principal, form: FormData) -> dict[str, Any]:
    """The server/api/tickets action body from the form: fixed_in and note (trimmed, cut to what
    tickets keep), and ``by``: who is signed in."""
    body: dict[str, Any] = {"by": who.name}
    for key in ("fixed_in", "note"):
        value = form.get(key)
        if isinstance(value, str) and value.strip():
            body[key] = value.strip()[:NOTE_MAX if key == "note" else 200]
    of = form.get("of")
    of = of.strip().lstrip("#") if isinstance(of, str) else ""
    if of.isascii() and of.isdigit() and queries.is_row_id(int(of)):
        body["of"] = int(of)
    return body


@page
async def ticket_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /tickets/<id>: a ticket lives on its group's page; go there (303)."""
    ticket_id = request.path_params["ticket_id"]
    ticket = await run_in_threadpool(get_ticket, state.ctx.engine, ticket_id=ticket_id,
                                     show_restricted=restricted_visible(who)) if queries.is_row_id(ticket_id) else None
    if ticket is None:  # none, or a security report this user may not see: 404 alike
        return problem(request, who, 404, "Not found", f"There is no ticket {ticket_id}.")
    if (refusal := refused(request, who, ticket["project_id"], "read", f"ticket {ticket_id}")) is not None:
        return refusal
    if ticket["restricted"]:  # a security report: its own page (docs/security-reports.md)
        report = await run_in_threadpool(security.report_of, state.ctx.engine, ticket_id=ticket_id)
        return pages.render(request, "security_report.html", {"user": who, "ticket": ticket, "report": report})
    if ticket["group_id"] is None:  # merged into another ticket: that one is the bug now
        return RedirectResponse(f"/tickets/{ticket['merged_into']}", status_code=303)
    return RedirectResponse(f"/groups/{ticket['group_id']}#ticket", status_code=303)


@action
async def ticket_action(request: Request, state: ServerState, who: auth.Principal, form: FormData) -> Response:
    """POST /tickets/<id>/<action>: change the ticket, then show its group (303)."""
    ticket_id, name = request.path_params["ticket_id"], request.path_params["action"]
    if name not in SHOWN_ACTIONS:
        return problem(request, who, 404, "Not found", f"Unknown ticket action {name!r}.")
    ticket = await run_in_threadpool(get_ticket, state.ctx.engine,
                                     ticket_id=ticket_id) if queries.is_row_id(ticket_id) else None
    if ticket is None:
        return problem(request, who, 404, "Not found", f"There is no ticket {ticket_id}.")
    if (refusal := refused(request, who, ticket["project_id"], "triage", f"ticket {ticket_id}")) is not None:
        return refusal
    back = f"/groups/{ticket['group_id']}"
    try:
        # who.name fits server/api/tickets' actor rule: storage/users.py only takes such names
        await run_in_threadpool(tickets.change, state, ticket_id, name, ticket_body(who, form))
    except TicketNotFound:
        return problem(request, who, 404, "Not found", f"There is no ticket {ticket_id}.")
    except TransitionError as exc:
        return problem(request, who, 400, f"Cannot {name} this ticket", str(exc), back=back)
    return RedirectResponse(f"{back}#ticket", status_code=303)


@action
async def group_merge(request: Request, state: ServerState, who: auth.Principal, form: FormData) -> Response:
    """POST /groups/<id>/merge: merge this group into the group ``into``, then show that one (303)."""
    group_id = request.path_params["group_id"]
    into = form.get("into")
    into = into.strip().lstrip("#") if isinstance(into, str) else ""
    if not (into.isascii() and into.isdigit() and queries.is_row_id(int(into))):
        return problem(request, who, 400, "Cannot merge", "Give the id of the group to merge into.",
                       back=f"/groups/{group_id}")
    project = await run_in_threadpool(group_project, state.ctx.engine, group_id=group_id)
    if (refusal := refused(request, who, project, "triage", f"crash group {group_id}")) is not None:
        return refusal
    return await _regroup(request, who, f"/groups/{into}", "merge", regroup.merge, state.ctx, state.queue,
                          group_id=group_id, into=int(into), actor=f"user:{who.name}", project_id=project)


@action
async def group_unmerge(request: Request, state: ServerState, who: auth.Principal, form: FormData) -> Response:
    """POST /groups/<id>/unmerge: give the merged ``signature`` its own group again (303 back)."""
    group_id = request.path_params["group_id"]
    signature = form.get("signature")
    if not isinstance(signature, str) or not signature:
        return problem(request, who, 400, "Cannot unmerge", "Pick a merged signature.", back=f"/groups/{group_id}")
    project = await run_in_threadpool(group_project, state.ctx.engine, group_id=group_id)
    if (refusal := refused(request, who, project, "triage", f"crash group {group_id}")) is not None:
        return refusal
    return await _regroup(request, who, f"/groups/{group_id}", "unmerge", regroup.unmerge, state.ctx, state.queue,
                          group_id=group_id, signatures=[signature], actor=f"user:{who.name}", project_id=project)


async def _regroup(request: Request, who: auth.Principal, then: str, what: str, work: Any, *args: Any,
                   **kwargs: Any) -> Response:
    back = f"/groups/{kwargs['group_id']}"
    try:
        await run_in_threadpool(work, *args, **kwargs)
    except GroupNotFound as exc:
        return problem(request, who, 404, "Not found", str(exc).capitalize() + ".", back=back)
    except RegroupError as exc:
        return problem(request, who, 400, f"Cannot {what}", str(exc).capitalize() + ".", back=back)
    return RedirectResponse(then, status_code=303)
