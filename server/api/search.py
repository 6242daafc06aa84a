"""Searching crashes by any field (docs/search.md): GET /api/crashes (crashes matching the
query, paged and sorted) and GET /api/facets (a field's most frequent values among them). The
query language is storage/search_query.py's; /api/groups takes the same conditions
(``search_conditions``). An unknown parameter or a malformed value is a 400 naming it."""

from __future__ import annotations

from typing import Any, Iterable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.access import requires
from server.api.documents import jsonable
from server.api.params import int_param, project_scope, query, sorted_page
from server.state import state_of
from storage import search
from storage.search_query import Condition, SearchError, parse

PAGING = ("project", "sort", "order", "limit", "offset")
FACET_PARAMS = ("project", "field", "limit", "latest")
MAX_LATEST = 1_000_000
MAX_FACET_FIELDS = 10


def search_conditions(params: Iterable[tuple[str, str]], reserved: Iterable[str]) -> list[Condition]:
    """The search conditions of query parameters other than reserved. Raises HTTPException(400,
    "bad query parameter: ...") naming an unknown parameter or a malformed value."""
    try:
        return parse(params, reserved=reserved)
    except SearchError as exc:
        raise HTTPException(400, f"bad query parameter: {exc}") from None


def crash_page_query(params: QueryParams, default_limit: int = 50) -> dict[str, Any]:
    """search_crashes' paging arguments (params.sorted_page: ``sort`` one of storage/search.SORTS,
    default received, newest first). Raises ValueError naming the parameter. The search page
    reads its paging with it too."""
    return sorted_page(params, search.SORTS, "received", default_limit)


@requires("read")
async def search_endpoint(request: Request) -> Response:
    """GET /api/crashes?project=&<field>=<value>...&sort=&order=&limit=&offset=: ``{"crashes":
    [...], "total", "limit", "offset"}``, newest first unless sorted otherwise."""
    params = request.query_params
    page = query(crash_page_query, params)
    conditions = search_conditions(params.multi_items(), PAGING)
    found = await run_in_threadpool(search.search_crashes, state_of(request).ctx.engine,
                                    scope=await project_scope(request), conditions=conditions, **page)
    return JSONResponse(jsonable({**found, "limit": page["limit"], "offset": page["offset"]}))


@requires("read")
async def facets_endpoint(request: Request) -> Response:
    """GET /api/facets?project=&field=<field>[&field=...]&limit=&latest=&<field>=<value>...: for
    each field its most frequent values among the matching crashes, or among the latest
    ``latest`` of them (``{"total", "sample", "facets": [{"field", "values": [{"value",
    "count"}], "other", "distinct", "missing"}]}``)."""
    params = request.query_params
    fields = params.getlist("field")
    if not fields:
        raise HTTPException(400, "bad query parameter: field is required (annotations.gpu, build, ...)")
    if len(fields) > MAX_FACET_FIELDS:
        raise HTTPException(400, f"bad query parameter: field: at most {MAX_FACET_FIELDS}")
    limit = query(int_param, params, "limit", 10, 1, search.MAX_FACET_VALUES)
    latest = query(int_param, params, "latest", 0, 1, MAX_LATEST) if params.get("latest") else None
    conditions = search_conditions(params.multi_items(), FACET_PARAMS)
    found = await run_in_threadpool(count_fields, request, fields, conditions, limit, latest,
                                    await project_scope(request))
    return JSONResponse(jsonable(found))


def count_fields(request: Request, fields: list[str], conditions: list[Condition], limit: int,
                 latest: int | None, scope: Any) -> dict[str, Any]:
    """storage/search.facets of fields. Raises HTTPException(400) for a field that cannot be
    counted."""
    engine = state_of(request).ctx.engine
    try:
        return search.facets(engine, scope=scope, fields=fields, conditions=conditions, limit=limit, latest=latest)
    except ValueError as exc:
        raise HTTPException(400, f"bad query parameter: field: {exc}") from None
