"""The Feedback page (docs/feedback.md): ``GET /feedback?project=&category=&build=&tester=&page=``.

Two parts: the feedback groups (one per category; nar_output one per normalized line) with
their tester counts and ticket badges, most testers first; then the reports the filters keep,
newest first, each with its text (escaped by autoescaping, never marked safe), its screenshots
inline (``<img>`` on the JSON API's attachment route, served as a checked image type) and its
tied crash linked. An unknown category is a 400 page.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server import auth
from server.api.feedback import feedback_query
from server.dashboard import pages
from server.dashboard.access import page, problem, project_filter
from server.ingest.feedback import IMAGE_TYPES
from server.state import ServerState
from storage import dashboard_queries
from storage import feedback as stored
from storage.scope import ProjectScope
from triage.feedback import CATEGORIES
from triage.kinds import FEEDBACK

PAGE_SIZE = 50
GROUPS_SHOWN = 50


def feedback_view(state: ServerState, project_id: ProjectScope, filters: dict[str, Any]) -> dict[str, Any]:
    """The reports the filters keep (one page) and the project's feedback groups (of the
    category and build asked for; a group's component is its category)."""
    found = stored.list_feedback(state.ctx.engine, project_id=project_id, **filters)
    _with_screenshots(found["feedback"])
    groups = dashboard_queries.list_groups_page(state.ctx.engine, project_id=project_id, kind=FEEDBACK,
                                                component=filters["category"], build=filters["build"],
                                                sort="tester_count", limit=GROUPS_SHOWN)
    return {"items": found["feedback"], "total": found["total"], "groups": groups["groups"],
            "group_total": groups["total"]}


@page
async def feedback_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /feedback: feedback groups and reports."""
    params = request.query_params
    number = params.get("page") or "1"
    try:
        if not (number.isascii() and number.isdigit() and len(number) < 10):
            raise ValueError("page must be a number")
        filters = feedback_query({**params, "limit": str(PAGE_SIZE), "offset": str((int(number) - 1) * PAGE_SIZE)})
    except ValueError as exc:
        return problem(request, who, 400, "Bad filter", str(exc))
    project, projects, scope = await project_filter(state, params, who)
    view = await run_in_threadpool(feedback_view, state, scope, filters)
    return pages.render(request, "feedback.html", {
        "user": who, **view, "filters": filters, "params": dict(params), "projects": projects, "project": project,
        "categories": CATEGORIES, "page": max(1, int(number)), "page_count": max(1, -(-view["total"] // PAGE_SIZE)),
    })


def _with_screenshots(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """items, each with ``screenshots``: the names of its checked images (shown inline)."""
    for item in items:
        item["screenshots"] = [a["name"] for a in item["attachments"] if a.get("content_type") in IMAGE_TYPES]
    return items


def group_feedback(state: ServerState, group: dict[str, Any]) -> dict[str, Any]:
    """What the group page shows of feedback: a feedback group's own reports, or the reports
    about a crash group's crashes; ``{"feedback": [...], "testers": n}``."""
    if group.get("kind") == FEEDBACK:
        found = stored.list_feedback(state.ctx.engine, group_id=group["group_id"], limit=PAGE_SIZE)
        return {"feedback": _with_screenshots(found["feedback"]), "testers": group["tester_count"]}
    found = stored.feedback_for_group(state.ctx.engine, group_id=group["group_id"], limit=PAGE_SIZE)
    return {"feedback": _with_screenshots(found["feedback"]), "testers": found["testers"]}


def crash_feedback(state: ServerState, crash_id: str) -> dict[str, Any]:
    """The reports about one crash for its page: ``{"feedback": [...], "testers": n}``."""
    items = _with_screenshots(stored.feedback_for_crash(state.ctx.engine, crash_id=crash_id, limit=PAGE_SIZE))
    return {"feedback": items, "testers": len({f["tester_id"] for f in items})}
