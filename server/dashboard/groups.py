"""The home page: crash groups with filters, sorting, pagination and 14-day sparklines.

``GET /?project=&component=&build=&platform=&kind=&status=&period=&sort=&order=&page=``. Unknown
filter values are a 400 page saying which; every link on the page keeps the filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server import auth
from server.api.params import MAX_OFFSET, parse_since
from server.dashboard import pages
from server.dashboard.access import page, problem, project_filter
from server.state import ServerState
from storage import dashboard_queries
from triage.components import default_rules
from triage.kinds import KINDS

PAGE_SIZE = 50
MAX_PAGE = MAX_OFFSET // PAGE_SIZE  # a later page would need an OFFSET past SQL's 64-bit integer
PERIODS = {"24h": "last 24 hours", "7d": "last 7 days", "14d": "last 14 days", "30d": "last 30 days"}
COLUMNS = (  # (sort key or None, heading)
    ("signature", "Signature"), (None, "Component"), ("tester_count", "Testers"), ("crash_count", "Crashes"),
    ("build_count", "Builds"), ("first_seen", "First seen"), ("last_seen", "Last seen"), (None, "14 days"),
    (None, "Ticket"),
)


@dataclass(frozen=True)
class GroupQuery:
    """The filters, sort and page of a request to the groups page."""

    component: str | None
    build: str | None
    platform: str | None
    status: str | None
    period: str | None
    sort: str
    descending: bool
    page: int
    kind: str | None = None  # the group's kind (triage/kinds.py)


def parse_query(params: Any) -> GroupQuery:
    """The page's query string, checked. Raises ValueError naming the bad parameter."""
    status, period = params.get("status") or None, params.get("period") or None
    sort = params.get("sort") or "last_seen"
    if status is not None and status not in dashboard_queries.STATUSES:
        raise ValueError(f"status must be one of {', '.join(dashboard_queries.STATUSES)}")
    kind = params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if period is not None and period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    if sort not in dashboard_queries.SORTS:
        raise ValueError(f"sort must be one of {', '.join(dashboard_queries.SORTS)}")
    try:
        number = int(params.get("page") or "1")
    except ValueError:
        raise ValueError("page must be a number") from None
    if number > MAX_PAGE:
        raise ValueError(f"page must be at most {MAX_PAGE}")
    return GroupQuery(params.get("component") or None, params.get("build") or None, params.get("platform") or None,
                      status, period, sort, params.get("order", "desc") != "asc", max(1, number), kind)


def component_names() -> list[str]:
    """Every component the shipped rules can name (for the filter's choices)."""
    rules = default_rules()
    return sorted({r.component for r in rules.rules} | {rules.default, rules.ggml_assert})


@page
async def groups_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /: the crash groups table."""
    try:
        query = parse_query(request.query_params)
    except ValueError as exc:
        return problem(request, who, 400, "Bad filter", str(exc))
    project, projects, scope = await project_filter(state, request.query_params, who)
    found = await run_in_threadpool(
        dashboard_queries.list_groups_page, state.ctx.engine, project_id=scope,
        component=query.component, build=query.build, platform=query.platform, status=query.status,
        since=parse_since(query.period), sort=query.sort, descending=query.descending, kind=query.kind,
        limit=PAGE_SIZE, offset=(query.page - 1) * PAGE_SIZE)
    pages_total = max(1, -(-found["total"] // PAGE_SIZE))
    return pages.render(request, "groups.html", {
        "user": who, "groups": found["groups"], "total": found["total"], "query": query,
        "params": dict(request.query_params), "projects": projects, "project": project,
        "components": component_names(), "statuses": dashboard_queries.STATUSES, "periods": PERIODS, "kinds": KINDS,
        "columns": COLUMNS, "page_count": pages_total,
    })
