"""The search page: crashes matching conditions on any field, with facet bars (docs/search.md).

``GET /search?project=&<field>=<value>...&f0=&o0=&v0=...&sort=&order=&limit=&offset=&facet=``.
Conditions come in two spellings, both storage/search_query.py's language in the end:

- API-style pairs, as ``GET /api/crashes`` takes them (``annotations.gpu=RTX%203060``): what
  every link builds (the crash page's "all crashes with this value", facet bars, paging);
- the query builder's rows ``f<i>`` (field), ``o<i>`` (operator: a key of OPERATORS) and
  ``v<i>`` (value), turned into the same pairs. A row without a value is left out.

The page shows every condition as a row, plus EMPTY_ROWS empty ones (adding a condition needs
no JavaScript), and writes its links as pairs. A query it cannot take is the page again with
the reason and status 400, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, urlencode

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from server import auth
from server.api.search import crash_page_query
from server.dashboard import pages
from server.dashboard.access import page, project_filter
from server.state import ServerState
from storage import search
from storage.scope import ProjectScope
from storage.search_index import text_value
from storage.search_query import (
    ANNOTATION_PREFIX,
    RANGES,
    Condition,
    SearchError,
    configured_facets,
    facetable,
    field_names,
    is_field,
    parse,
)

ROW = re.compile(r"^([fov])(\d{1,3})$")  # a builder row's field, operator, value: f0 o0 v0
PAGE_PARAMS = ("project", "sort", "order", "limit", "offset", "facet")  # the page's own; not conditions
EMPTY_ROWS = 2
PAGE_SIZE = 50
LIMITS = (25, 50, 100, 200)
FACET_VALUES = 10
MAX_FACETS = 6
MAX_CHIPS = 6  # annotations shown per result; the crash page has all
# (key, label, how the query language writes it before the value). "raw": the value is
# written in the query language itself (any condition, such as a negated range: !>30).
OPERATORS = (
    ("eq", "equals", "="), ("prefix", "starts with", "^"), ("contains", "contains", "~"),
    ("neq", "not equals", "!="), ("nprefix", "not starts with", "!^"), ("ncontains", "not contains", "!~"),
    ("gt", ">", ">"), ("ge", ">=", ">="), ("lt", "<", "<"), ("le", "<=", "<="),
    ("raw", "query syntax", ""),
)
SPELLING = {key: sign for key, _, sign in OPERATORS}
SIGNS = {"=": "eq", "^": "prefix", "~": "contains"}
NEGATED = {"eq": "neq", "prefix": "nprefix", "contains": "ncontains"}


@dataclass(frozen=True)
class Row:
    """One condition as the builder shows it: field, operator key, value as typed."""

    field: str
    op: str
    value: str

    def pair(self) -> tuple[str, str] | None:
        """The (field, value) pair of the query language; None for a row without a value.
        Raises SearchError for a value without a field or an unknown operator."""
        if not self.value.strip():
            return None
        if not self.field:
            raise SearchError(f"the condition {self.value!r} has no field")
        if self.op not in SPELLING:
            raise SearchError(f"{self.field}: unknown operator {self.op!r}")
        return self.field, SPELLING[self.op] + self.value


def as_row(field: str, value: str) -> Row:
    """An API-style pair as a builder row: the operator split off its value as
    storage/search_query._operator reads it (no operator: equals; signature: contains)."""
    negate = value.startswith("!")
    text = value[1:] if negate else value
    for sign, op in RANGES.items():  # ">=" before ">"
        if text.startswith(sign):
            return Row(field, "raw", value) if negate else Row(field, op, text[len(sign):])
    signed = SIGNS.get(text[:1])
    op = signed or ("contains" if field == "signature" else "eq")
    return Row(field, NEGATED[op] if negate else op, text[1:] if signed else text)


def read_rows(params: QueryParams) -> list[Row]:
    """The request's conditions as rows: API-style pairs first, in order, then the builder's
    rows by number; rows with neither field nor value are dropped."""
    rows = [as_row(name, value) for name, value in params.multi_items()
            if name not in PAGE_PARAMS and not ROW.match(name)]
    numbered: dict[int, dict[str, str]] = {}
    for name, value in params.multi_items():
        if match := ROW.match(name):
            numbered.setdefault(int(match.group(2)), {})[match.group(1)] = value
    for index in sorted(numbered):
        given = numbered[index]
        row = Row(given.get("f", "").strip(), given.get("o") or "eq", given.get("v", ""))
        if row.field or row.value.strip():
            rows.append(row)
    return rows


@dataclass(frozen=True)
class SearchQuery:
    """A checked request: its condition pairs and conditions, sort, page and facet fields."""

    pairs: list[tuple[str, str]]
    conditions: list[Condition]
    sort: str
    descending: bool
    limit: int
    offset: int
    facets: list[str]


def facet_fields(configured: str, chosen: str | None) -> list[str]:
    """The fields to draw facets of: the chosen one first, then CRASHD_FACET_FIELDS (entries
    that cannot be counted are skipped). Raises SearchError for a chosen field that cannot."""
    fields = configured_facets(configured)
    if chosen:
        if not is_field(chosen):
            raise SearchError(f"facet: unknown search field {chosen!r}")
        if not facetable(chosen):
            uncountable = ", ".join(f for f in field_names() if not facetable(f))
            raise SearchError(f"facet: {chosen} cannot be counted by value (nor can {uncountable})")
        fields.insert(0, chosen)
    return list(dict.fromkeys(fields))[:MAX_FACETS]


def read_query(params: QueryParams, rows: Sequence[Row], configured_facets: str) -> SearchQuery:
    """The request checked. Raises ValueError (SearchError too) naming what is wrong."""
    paging = crash_page_query(params, PAGE_SIZE)
    pairs = [p for row in rows if (p := row.pair()) is not None]
    conditions = parse(pairs)
    return SearchQuery(pairs, conditions, paging["sort"], paging["descending"], paging["limit"], paging["offset"],
                       facet_fields(configured_facets, (params.get("facet") or "").strip() or None))


def search_href(pairs: Iterable[tuple[str, Any]], path: str = "/search") -> str:
    """path with pairs as its query string (``%20`` for spaces; repeated names kept)."""
    query = urlencode([(name, str(value)) for name, value in pairs], quote_via=quote)
    return f"{path}?{query}" if query else path


def value_link(base: str, field: str, value: str) -> str:
    """base (a URL ending in ? or &) plus ``field==value``: equals, the value taken literally."""
    return base + urlencode([(field, "=" + value)], quote_via=quote)


FACET_SAMPLE = 10_000  # facet bars count the latest this many matched crashes (docs/search.md)


def run_search(engine: Engine, scope: ProjectScope, query: SearchQuery) -> dict[str, Any]:
    """One page of matching crashes (``crashes``, ``total``) and each facet field's counts."""
    found = search.search_crashes(engine, scope=scope, conditions=query.conditions, sort=query.sort,
                                  descending=query.descending, limit=query.limit, offset=query.offset)
    counted = search.facets(engine, scope=scope, fields=query.facets, conditions=query.conditions,
                            limit=FACET_VALUES, latest=FACET_SAMPLE) if query.facets else {"facets": [], "sample": None}
    return {**found, "facets": counted["facets"], "facet_sample": counted["sample"]}


def chips(annotations: Any, drill: Callable[[str], str], first: Sequence[str]) -> dict[str, Any]:
    """A result's annotations to show: ``{"shown": [{"key", "value", "href"}], "more": n}``,
    the keys of first (searched or counted) first; href narrows the search to
    ``annotations.<key>==<value>`` (drill(field): the query to add it to), None for a value the
    search cannot find (a list, an object, a key it cannot name)."""
    if not isinstance(annotations, dict):
        return {"shown": [], "more": 0}
    keys = sorted(annotations, key=lambda k: (k not in first, k))
    shown = []
    for key in keys[:MAX_CHIPS]:
        text = text_value(annotations[key])
        field = ANNOTATION_PREFIX + str(key)
        href = value_link(drill(field), field, text) if text is not None and is_field(field) else None
        shown.append({"key": key, "value": json.dumps(annotations[key]) if text is None else text, "href": href})
    return {"shown": shown, "more": max(0, len(keys) - MAX_CHIPS)}


def field_choices(results: Sequence[dict[str, Any]], query: SearchQuery | None) -> list[str]:
    """The field input's suggestions: the built-ins, the annotation keys of this page's
    results and of the searched and counted fields."""
    keys = {ANNOTATION_PREFIX + str(k) for c in results if isinstance(c.get("annotations"), dict)
            for k in c["annotations"]}
    used = {f for f, _ in query.pairs} | set(query.facets) if query else set()
    return [*field_names(), *sorted(f for f in keys | used if is_field(f) and f.startswith(ANNOTATION_PREFIX))]


def links(params: QueryParams, query: SearchQuery) -> dict[str, Any]:
    """The page's links, all keeping the query: ``drill(field)`` (the query to add
    ``field==value`` to), ``facets`` (drill of each facet field), ``prev``/``next`` pages,
    ``remove`` (the query without each condition), ``json`` (the GET /api/crashes twin)."""
    project = [("project", params["project"])] if params.get("project") else []
    tail = [(k, params[k]) for k in ("sort", "order", "limit", "facet") if params.get(k)]

    def drill(field: str) -> str:
        """The query without field's positive conditions (negations stay), ending in ? or &:
        adding field==value to it narrows the results to that value, where adding to the
        query as it is would widen them (the same field twice is OR: ^RTX or ==RTX 3060)."""
        kept = [(f, v) for f, v in query.pairs if f != field or v.startswith("!")]
        href = search_href([*project, *kept, *tail])
        return href + ("&" if "?" in href else "?")

    step, offset = query.limit, query.offset
    return {
        "drill": drill, "facets": {field: drill(field) for field in query.facets},
        "prev": search_href([*project, *query.pairs, *tail, ("offset", max(0, offset - step))]) if offset else None,
        "next": search_href([*project, *query.pairs, *tail, ("offset", offset + step)]),
        "remove": [search_href([*project, *query.pairs[:i], *query.pairs[i + 1:], *tail])
                   for i in range(len(query.pairs))],
        "json": search_href([*project, *query.pairs, *(p for p in tail if p[0] != "facet"), ("offset", offset)],
                            "/api/crashes"),
    }


def form_context(params: QueryParams, rows: Sequence[Row]) -> dict[str, Any]:
    """What the form shows, also for a query that was refused: the rows as typed plus
    EMPTY_ROWS empty ones, the sort, order, limit and facet asked for."""
    shown = [r for r in rows if r.value.strip()] + [Row("", "eq", "")] * EMPTY_ROWS
    return {"rows": shown, "operators": OPERATORS, "sorts": list(search.SORTS), "limits": LIMITS,
            "sort": params.get("sort") or "received", "order": params.get("order") or "desc",
            "limit": params.get("limit") or str(PAGE_SIZE), "facet": params.get("facet") or "",
            "params": params, "facetable": [f for f in field_names() if facetable(f)]}


@page
async def search_page(request: Request, state: ServerState, who: auth.Principal) -> Response:
    """GET /search."""
    params = request.query_params
    project, projects, scope = await project_filter(state, params, who)
    rows = read_rows(params)
    context = {"user": who, "projects": projects, "project": project, **form_context(params, rows)}
    try:
        query = read_query(params, rows, state.ctx.settings.facet_fields)
    except ValueError as exc:
        return pages.render(request, "search.html", {**context, "error": str(exc),
                                                     "fields": field_choices([], None)}, 400)
    found = await run_in_threadpool(run_search, state.ctx.engine, scope, query)
    hrefs = links(params, query)
    first = [f[len(ANNOTATION_PREFIX):] for f in [*(p[0] for p in query.pairs), *query.facets]
             if f.startswith(ANNOTATION_PREFIX)]
    return pages.render(request, "search.html", {
        **context, "query": query, "crashes": found["crashes"], "total": found["total"], "facets": found["facets"],
        "links": hrefs, "chips": [chips(c["annotations"], hrefs["drill"], first) for c in found["crashes"]],
        "fields": field_choices(found["crashes"], query),
    })
