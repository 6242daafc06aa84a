"""The query parameters the JSON API's endpoints share, parsed once: ``since``, ``project``,
``limit``/``offset`` and other bounded integers, comma lists, and the group list's filters
and sort. The dashboard and the CLI read ``since`` with parse_since too.

The parsers raise ValueError naming the parameter; an endpoint calls them through ``query``,
which turns that into ``HTTPException(400, "bad query parameter: <why>")``. A leaf of
server/api: it imports nothing of its package.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Collection, Mapping, TypedDict, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

from schemas.tables import Project
from server.access_rules import may, projects_visible
from server.auth import caller
from server.state import state_of
from storage import dashboard_queries, queries
from storage.scope import ProjectScope
from triage.kinds import KINDS

T = TypeVar("T")

RELATIVE = re.compile(r"^(\d+)([hdw])$")
UNITS = {"h": "hours", "d": "days", "w": "weeks"}
MAX_LIMIT = 1000
MAX_DAYS = 90
MAX_OFFSET = 2**63 - 1  # SQL's OFFSET is a 64-bit integer; a larger one is an OverflowError, not no rows
ORDERS = ("asc", "desc")


def query(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """parse(*args, **kwargs); its ValueError becomes ``400 {"detail": "bad query parameter: <why>"}``.
    Raises HTTPException."""
    try:
        return parse(*args, **kwargs)
    except ValueError as exc:
        raise HTTPException(400, f"bad query parameter: {exc}") from None


def parse_since(value: str | None) -> datetime | None:
    """`24h`, `7d`, `2w` ago, or an ISO date/time (UTC when no zone), as an aware UTC
    datetime. Raises ValueError with one wording for every caller (the JSON API, the
    dashboard, the CLI), also for a time out of datetime's range."""
    if not value:
        return None
    match = RELATIVE.match(value.strip())
    try:
        if match:
            return datetime.now(timezone.utc) - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        parsed = datetime.fromisoformat(value.strip())
        # in UTC here: 0001-01-01T00:00+01:00 has no UTC time, and 99999999d no date at all
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except OverflowError:
        raise ValueError(f"since {value!r} is out of range (years 1..9999)") from None
    except ValueError:
        raise ValueError(f"since must be like 24h, 7d, 2w or an ISO date, not {value!r}") from None


async def project_param(request: Request) -> Project | None:
    """The ``?project=`` filter (id or name) as a project; None without one. Raises
    HTTPException(404, "project not found") for an unknown project and for one the caller may
    not read (the same answer: it does not confirm the project exists)."""
    ref = request.query_params.get("project")
    if not ref:
        return None
    state = state_of(request)
    project = await run_in_threadpool(queries.find_project, state.ctx.engine, ref=ref)
    if project is None or not may(caller(request, state), project.id, "read"):
        raise HTTPException(404, "project not found")
    return project


async def required_project(request: Request) -> Project:
    """project_param where ``?project=`` is required. Raises HTTPException: 400 without
    one, 404 for an unknown or invisible project."""
    project = await project_param(request)
    if project is None:
        raise HTTPException(400, "bad query parameter: project is required")
    return project


async def project_id(request: Request) -> int | None:
    """The id of the ``?project=`` filter (project_param); None without one."""
    project = await project_param(request)
    return project.id if project is not None else None


async def project_scope(request: Request) -> ProjectScope:
    """The projects a list may show: the ``?project=`` filter's (project_param: 404 for an
    invisible one), else the caller's (server/access_rules.projects_visible; None: all)."""
    chosen = await project_id(request)
    if chosen is not None:
        return chosen
    return projects_visible(caller(request, state_of(request)))


def split(value: str | None) -> list[str] | None:
    """A comma list (``open,regressed``) without blanks; None when absent or empty."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None,
              clip: bool = False) -> int:
    """An integer query parameter in [low, high] (clip: larger values become high).
    Raises ValueError naming the parameter."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if high is not None and value > high and clip:
        return high
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be >= {low}")
    return value


def group_query(params: Mapping[str, str], *, default_sort: str = "tester_count",
                default_limit: int = 100) -> dict[str, Any]:
    """list_groups_page's arguments (all but project_id) from ``component``, ``build``,
    ``platform``, ``status``, ``kind`` (crash hang error message), ``since`` (``24h``, ``7d``, ``2w`` or ISO), ``sort``, ``order``
    (``asc``/``desc``; default desc, asc for signature), ``limit`` (1..1000; larger is cut to
    1000), ``offset`` (0..2**63-1), ``days`` (sparkline length, 1..90). Raises ValueError with
    the reason."""
    page = sorted_page(params, dashboard_queries.SORTS, default_sort, default_limit, ascending=("signature",))
    status = params.get("status") or None
    if status is not None and status not in dashboard_queries.STATUSES:
        raise ValueError(f"status must be one of {', '.join(dashboard_queries.STATUSES)}")
    kind = params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    since = parse_since(params.get("since"))
    return {"component": params.get("component") or None, "build": params.get("build"), "kind": kind,
            "platform": params.get("platform") or None, "status": status, "since": since, **page,
            "days": int_param(params, "days", 14, 1, MAX_DAYS)}


def sorted_page(params: Mapping[str, str], sorts: Collection[str], default_sort: str, default_limit: int,
                ascending: Collection[str] = ()) -> dict[str, Any]:
    """A list's ``sort`` (one of sorts), ``order`` (``asc``/``desc``; default desc, asc for the
    sorts in ascending), ``limit`` (1..1000; larger is cut to 1000) and ``offset``
    (0..2**63-1) as ``{"sort", "descending", "limit", "offset"}``. Raises ValueError naming
    the parameter."""
    sort = params.get("sort") or default_sort
    if sort not in sorts:
        raise ValueError(f"sort must be one of {', '.join(sorts)}")
    order = params.get("order") or ("asc" if sort in ascending else "desc")
    if order not in ORDERS:
        raise ValueError("order must be asc or desc")
    return {"sort": sort, "descending": order == "desc",
            "limit": int_param(params, "limit", default_limit, 1, MAX_LIMIT, clip=True),
            "offset": int_param(params, "offset", 0, 0, MAX_OFFSET)}


class PageQuery(TypedDict):
    """group_page's paging arguments."""

    crash_limit: int
    days: int


def page_query(params: Mapping[str, str]) -> PageQuery:
    """group_page's ``crash_limit`` (``crashes=``, 0..1000, default 50) and ``days``."""
    return {"crash_limit": int_param(params, "crashes", 50, 0, MAX_LIMIT),
            "days": int_param(params, "days", 14, 1, MAX_DAYS)}
