"""Searching crashes by any field and counting a field's values (facets): docs/search.md.

A search is one set of matching crashes (``matches``), read from ``crash_fields`` wherever a
condition is on an indexed field: the first such field drives (one range of
ix_crash_fields_search, which holds every column: no table row is read), each other one is an
EXISTS on the primary key (crash_id, field, value), each negation a NOT EXISTS. Only status
and hang_seconds are read from ``crashes``; a search with no indexed condition reads
``crashes`` alone. The page's rows come from ``crashes`` by id afterwards. bench/search.py
measures it at 1,000,000 crashes. Keyword-only functions taking an Engine first, like
storage/queries.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import ColumnElement, Select, Table, and_, exists, func, not_, or_, select
from sqlalchemy.engine import Engine

from schemas.tables import Project
from storage.queries import as_utc
from storage.scope import ProjectScope, scoped
from storage.search_index import CRASHES, FIELDS
from storage.search_query import Condition, by_field, facetable, is_field, is_indexed

PROJECTS: Table = Project.__table__  # type: ignore[attr-defined]
LAST = "\U0010ffff"  # sorts after every character: [p, p + LAST) holds the values starting with p
CRASH_COLUMNS = {"status": CRASHES.c.status, "hang_seconds": CRASHES.c.hang_seconds}
SORTS = {"received": CRASHES.c.received_at, "build": CRASHES.c.build, "tester_id": CRASHES.c.tester_id,
         "kind": CRASHES.c.kind, "status": CRASHES.c.status, "signature": CRASHES.c.signature,
         "platform": CRASHES.c.platform, "component": CRASHES.c.component, "group": CRASHES.c.group_id,
         "hang_seconds": CRASHES.c.hang_seconds}
RESULT_COLUMNS = (CRASHES.c.crash_id, CRASHES.c.project_id, PROJECTS.c.name.label("project"), CRASHES.c.received_at,
                  CRASHES.c.status, CRASHES.c.kind, CRASHES.c.build, CRASHES.c.tester_id, CRASHES.c.platform,
                  CRASHES.c.signature, CRASHES.c.component, CRASHES.c.group_id, CRASHES.c.hang_seconds,
                  CRASHES.c.annotations)
MAX_FACET_VALUES = 100


def _text(column: Any, condition: Condition, byte_order: bool = True) -> ColumnElement[bool]:
    """column matches a text condition; a prefix is an index range where the column sorts by
    bytes (crash_fields.value), elsewhere a substr, exact on every backend (SQLite's LIKE
    ignores ASCII case)."""
    value = str(condition.value)
    if condition.op == "prefix":
        if byte_order:
            return and_(column >= value, column < value + LAST)
        return func.substr(column, 1, len(value)) == value
    if condition.op == "contains":
        return column.icontains(value, autoescape=True)
    return column == value


def _ordered(column: Any, condition: Condition) -> ColumnElement[bool]:
    value = as_utc(condition.value) if isinstance(condition.value, datetime) else condition.value
    if condition.op == "eq" and isinstance(value, datetime):  # a date: that UTC day
        return and_(column >= value, column < value + timedelta(days=1))
    return {"gt": column > value, "ge": column >= value, "lt": column < value, "le": column <= value,
            "eq": column == value}[condition.op]


def _fields_scope(table: Any, scope: ProjectScope) -> list[Any]:
    """crash_fields rows within scope; every project's as ``project_id IN (all)``, which lets
    PostgreSQL read the index project by project instead of scanning it whole."""
    if scope is None:
        return [table.c.project_id.in_(select(PROJECTS.c.id).scalar_subquery())]
    return scoped(table.c.project_id, scope)


def _has(table: Any, field: str, conditions: Sequence[Condition]) -> list[ColumnElement[bool]]:
    """table's row is a value of field matching any of conditions."""
    return [table.c.field == field, or_(*(_text(table.c.value, c) for c in conditions))]


def _probe(crash_id: Any, field: str, conditions: Sequence[Condition]) -> ColumnElement[bool]:
    """The crash has a value of field matching any of conditions (a primary-key lookup)."""
    other = FIELDS.alias()
    return exists().where(other.c.crash_id == crash_id, *_has(other, field, conditions))


def matches(conditions: Sequence[Condition], scope: ProjectScope) -> Select[Any]:
    """The crashes matching conditions within scope, one row each: (crash_id, received_at,
    group_id). A field's positive conditions are OR-ed, fields AND-ed, and each negation is a
    NOT EXISTS (a crash without the field passes it)."""
    fields = by_field(c for c in conditions if is_indexed(c.field))
    positive = [(f, [c for c in cs if not c.negate]) for f, cs in fields.items() if any(not c.negate for c in cs)]
    negative = [c for cs in fields.values() for c in cs if c.negate]
    columns = by_field(c for c in conditions if not is_indexed(c.field))
    if positive:
        driver = FIELDS.alias("d")
        (field, first), rest = positive[0], positive[1:]
        stmt = select(driver.c.crash_id, driver.c.received_at, driver.c.group_id).where(
            *_fields_scope(driver, scope), *_has(driver, field, first))
    else:
        driver = CRASHES
        stmt = select(CRASHES.c.crash_id, CRASHES.c.received_at, CRASHES.c.group_id).where(
            *scoped(CRASHES.c.project_id, scope))
        rest = []
    for field, group in rest:
        stmt = stmt.where(_probe(driver.c.crash_id, field, group))
    stmt = stmt.where(*(not_(_probe(driver.c.crash_id, c.field, [c])) for c in negative))
    on_crash: list[ColumnElement[bool]] = []  # status, hang_seconds: only crashes has them
    for field, group in columns.items():
        column = CRASH_COLUMNS.get(field)
        target = column if column is not None else driver.c.group_id if field == "group" else driver.c.received_at
        where = [or_(*(_column(target, c) for c in group if not c.negate))] if any(not c.negate for c in group) else []
        where += [or_(target.is_(None), not_(_column(target, c))) for c in group if c.negate]
        if column is not None and driver is not CRASHES:
            on_crash.extend(where)
        else:
            stmt = stmt.where(*where)
    if on_crash:
        stmt = stmt.where(exists().where(CRASHES.c.crash_id == driver.c.crash_id, *on_crash))
    return stmt


def _column(column: Any, condition: Condition) -> ColumnElement[bool]:
    if condition.field in ("received", "hang_seconds", "group"):
        return _ordered(column, condition)
    return _text(column, condition, byte_order=False)


def matching_groups(conditions: Sequence[Condition], scope: ProjectScope) -> Any:
    """A subquery of the ids of groups with crashes matching conditions (for /api/groups)."""
    found = matches(conditions, scope).subquery()
    return select(found.c.group_id).where(found.c.group_id.is_not(None))


def search_crashes(engine: Engine, *, scope: ProjectScope, conditions: Sequence[Condition],
                   sort: str = "received", descending: bool = True, limit: int = 50,
                   offset: int = 0) -> dict[str, Any]:
    """One page of crashes matching conditions: ``{"crashes": [...], "total": n}``. Each crash
    has the RESULT_COLUMNS (received_at an aware UTC datetime). Ties sort newest first, then by
    crash_id. Raises ValueError for an unknown sort."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}")
    found = matches(conditions, scope).subquery()
    rows = select(*RESULT_COLUMNS).select_from(CRASHES.join(PROJECTS, PROJECTS.c.id == CRASHES.c.project_id))
    with engine.connect() as conn:
        if sort == "received":  # the page from the index alone, then its rows
            order = (found.c.received_at, found.c.crash_id)
            ids = list(conn.execute(select(found.c.crash_id).order_by(*(o.desc() if descending else o.asc() for o in order))
                                    .limit(limit).offset(offset)).scalars())
            got = {r.crash_id: r for r in conn.execute(rows.where(CRASHES.c.crash_id.in_(ids)))}
            page = [got[i] for i in ids if i in got]
        else:
            key = SORTS[sort]
            page = list(conn.execute(rows.join(found, found.c.crash_id == CRASHES.c.crash_id).order_by(
                key.desc() if descending else key.asc(), CRASHES.c.received_at.desc(), CRASHES.c.crash_id.desc())
                .limit(limit).offset(offset)))
        total = conn.execute(select(func.count()).select_from(found)).scalar_one()
    return {"crashes": [{**r._mapping, "received_at": as_utc(r.received_at)} for r in page], "total": int(total)}


def _group_only(conditions: Sequence[Condition]) -> int | None:
    """The group of conditions that are just ``group=<id>`` (a group page's facets)."""
    only = conditions[0] if len(conditions) == 1 else None
    if only is not None and only.field == "group" and only.op == "eq" and not only.negate \
            and isinstance(only.value, int):
        return only.value
    return None


def facets(engine: Engine, *, scope: ProjectScope, fields: Sequence[str], conditions: Sequence[Condition] = (),
           limit: int = 10) -> dict[str, Any]:
    """``{"total": crashes matched, "facets": [facet of each field, without its total]}``.
    Raises ValueError as facet does."""
    found = [facet(engine, scope=scope, field=f, conditions=conditions, limit=limit, total=i == 0)
             for i, f in enumerate(fields)]
    total = found[0].pop("total") if found else 0
    for one in found:
        counted = one.pop("counted")
        if one["field"] != "module":
            one["missing"] = max(total - counted, 0)
    return {"total": total, "facets": found}


def facet(engine: Engine, *, scope: ProjectScope, field: str, conditions: Sequence[Condition] = (),
          limit: int = 10, total: bool = True) -> dict[str, Any]:
    """The most frequent values of field among the crashes matching conditions: ``{"field",
    "values": [{"value", "count"}] (most first, at most limit), "other": crashes (module: crash
    and module pairs) with the remaining values, "distinct": how many values, "total": crashes
    matched, "missing": those without the field (None for module, which a crash has several
    of), "counted": crashes (module: pairs) with a value}``; without total, no total and
    missing None (facets counts the total once). Raises ValueError for an unknown field or one that cannot be counted."""
    if not is_field(field):
        raise ValueError(f"unknown search field {field!r}")
    if not facetable(field):
        raise ValueError(f"field {field!r} cannot be counted by value (only indexed fields can)")
    limit = max(1, min(limit, MAX_FACET_VALUES))
    found = matches(conditions, scope).subquery()
    source = select(FIELDS.c.value, func.count().label("n")).where(*_fields_scope(FIELDS, scope),
                                                                   FIELDS.c.field == field)
    group = _group_only(conditions)
    if group is not None:  # ix_crash_fields_group
        source = source.where(FIELDS.c.group_id == group)
    elif conditions:
        source = source.where(FIELDS.c.crash_id.in_(select(found.c.crash_id)))
    counted = source.group_by(FIELDS.c.value).subquery()
    stmt = (select(counted.c.value, counted.c.n, func.sum(counted.c.n).over().label("all_n"),
                   func.count().over().label("distinct")).order_by(counted.c.n.desc(), counted.c.value).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
        matched = int(conn.execute(select(func.count()).select_from(found)).scalar_one()) if total else None
    counted_all = int(rows[0].all_n) if rows else 0
    values = [{"value": r.value, "count": int(r.n)} for r in rows]
    out = {"field": field, "values": values, "other": counted_all - sum(v["count"] for v in values),
           "distinct": int(rows[0].distinct) if rows else 0,
           "missing": None if field == "module" or matched is None else max(matched - counted_all, 0)}
    return {**out, "total": matched, "counted": counted_all} if total else {**out, "counted": counted_all}
