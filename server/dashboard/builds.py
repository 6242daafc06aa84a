"""The builds page for QA: ``GET /builds?project=&base=&target=``.

The project's trend chart (crashes and hangs per session and feedback, per build and day, the
newest builds: server/dashboard/trend_chart.py); every build of the project with its sessions,
crashes, crash rate, hangs and hang rate (rates on the fixed axis of trend_chart.rate_position); with
two builds picked (or, without a pick, the newest staging deploy with enough sessions against
the one before it: server/api/builds.auto_pair), per crash group their crashes and rates, the change and whether it is
significant, and the same for the builds' hangs (server/api/builds.compare_builds: the exact
test of two Poisson rates, docs/rates.md).
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server import auth
from server.api.builds import auto_json, auto_pair, build_rows, compare_builds
from server.dashboard import pages
from server.dashboard.access import page, problem, project_filter
from server.dashboard.trend_chart import AXIS_TICKS, rate_position, trend_chart
from server.state import ServerState
from storage import trends

MIN_SESSIONS = 200
ALPHA = 0.05
PAGE_SIZE = 100  # rows of the comparison per page: all 2,000 groups took ~150 ms to render
TREND_DAYS = 30  # the trend chart's days (GET /api/trends has the same series)


def page_number(value: str | None) -> int:
    """``?page=`` as a number from 1 (bad or missing values read as 1)."""
    try:
        return max(1, int(value or "1"))
    except ValueError:
        return 1


def paged(comparison: dict[str, Any] | None, number: int) -> tuple[dict[str, Any] | None, int, int]:
    """(comparison with only page ``number``'s groups, the page shown, the page count)."""
    if not comparison:
        return comparison, 1, 1
    rows = comparison["groups"]
    count = max(1, -(-len(rows) // PAGE_SIZE))
    number = min(number, count)
    start = (number - 1) * PAGE_SIZE
    return {**comparison, "groups": rows[start:start + PAGE_SIZE], "group_total": len(rows)}, number, count


def chart_top(comparison: dict[str, Any] | None) -> float:
    """The largest crash rate among the compared groups (the bar chart's full width)."""
    if not comparison:
        return 0.0
    rates = [r[k] or 0.0 for r in comparison["groups"] for k in ("base_rate", "target_rate")]
    return max(rates, default=0.0)


def project_trend(state: ServerState, project_id: int) -> Markup:
    """The trend chart of the project's newest builds (storage/trends.py)."""
    found = trends.trends(state.ctx.engine, project_id=project_id, days=TREND_DAYS)
    return trend_chart(found, label="Crashes per session")


@page
async def builds_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /builds."""
    params = request.query_params
    project, projects, _ = await project_filter(state, params, who)
    if project is None and params.get("project"):
        return problem(request, who, 404, "Not found", "There is no such project.")
    project = project or (projects[0] if projects else None)
    project_id = project.id if project else None
    rows = await run_in_threadpool(build_rows, state, project_id, None) if project_id is not None else []
    names = [r["build"] for r in rows]
    base, target = params.get("base") or "", params.get("target") or ""
    if (base and base not in names) or (target and target not in names):
        return problem(request, who, 400, "Unknown build", "Pick builds from the lists.")
    comparison, pair = None, None
    if project_id is not None and not base and not target:  # nothing picked: the latest staging deploy
        pair = await run_in_threadpool(auto_pair, state, project_id, MIN_SESSIONS)
        base, target = (pair.base, pair.target) if pair else ("", "")
    if project_id is not None and base and target:
        comparison = await run_in_threadpool(compare_builds, state, project_id, base, target, MIN_SESSIONS, ALPHA)
        comparison["auto"] = auto_json(pair)
    top = chart_top(comparison)  # one scale for every page
    chart = await run_in_threadpool(project_trend, state, project_id) if project_id is not None else None
    comparison, number, page_count = paged(comparison, page_number(params.get("page")))
    return pages.render(request, "builds.html", {
        "user": who, "projects": projects, "project": project, "builds": rows, "base": base, "target": target,
        "comparison": comparison, "chart_top": top, "page": number, "page_count": page_count, "params": params,
        "max_build_crashes": max((r["crashes"] for r in rows), default=0),
        "trend_chart": chart, "trend_days": TREND_DAYS, "rate_position": rate_position, "rate_ticks": AXIS_TICKS,
    })
