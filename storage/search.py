"""Searching crashes by any field and counting a field's values (facets): docs/search.md.

Conditions (storage/search_query.py) on columns of ``crashes`` filter it directly; those on
indexed fields (annotations, signature, os_version, cpu, module, ...) are ``crash_id IN``
subqueries on ``crash_fields (project_id, field, value, received_at)``, so an equality or a
prefix reads one range of that index (bench/search.py measures it at 1,000,000 crashes).
Keyword-only functions taking an Engine first, like storage/queries.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import ColumnElement, Table, and_, func, not_, or_, select
from sqlalchemy.engine import Engine

from schemas.tables import Project
from storage.queries import as_utc
from storage.scope import ProjectScope, scoped
from storage.search_index import CRASHES, FIELDS
from storage.search_query import Condition, by_field, facetable, is_field, is_indexed

PROJECTS: Table = Project.__table__  # type: ignore[attr-defined]
LAST = "\U0010ffff"  # sorts after every character: [p, p + LAST) holds the values starting with p
COLUMNS = {"build": CRASHES.c.build, "tester_id": CRASHES.c.tester_id, "kind": CRASHES.c.kind,
           "status": CRASHES.c.status, "received": CRASHES.c.received_at, "hang_seconds": CRASHES.c.hang_seconds,
           "group": CRASHES.c.group_id}
SORTS = {"received": CRASHES.c.received_at, "build": CRASHES.c.build, "tester_id": CRASHES.c.tester_id,
         "kind": CRASHES.c.kind, "status": CRASHES.c.status, "signature": CRASHES.c.signature,
         "platform": CRASHES.c.platform, "component": CRASHES.c.component, "group": CRASHES.c.group_id,
         "hang_seconds": CRASHES.c.hang_seconds}
RESULT_COLUMNS = (CRASHES.c.crash_id, CRASHES.c.project_id, PROJECTS.c.name.label("project"), CRASHES.c.received_at,
                  CRASHES.c.status, CRASHES.c.kind, CRASHES.c.build, CRASHES.c.tester_id, CRASHES.c.platform,
                  CRASHES.c.signature, CRASHES.c.component, CRASHES.c.group_id, CRASHES.c.hang_seconds,
                  CRASHES.c.annotations)
MAX_FACET_VALUES = 100


def _text(column: Any, condition: Condition, byte_order: bool) -> ColumnElement[bool]:
    """column matches a text condition. A prefix is an index range where the column sorts by
    bytes (crash_fields.value); elsewhere substr, which is exact on every backend (SQLite's
    LIKE ignores ASCII case)."""
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


def _column(condition: Condition) -> ColumnElement[bool]:
    column = COLUMNS[condition.field]
    if condition.field in ("received", "hang_seconds", "group"):
        return _ordered(column, condition)
    return _text(column, condition, byte_order=False)


def _fields_scope(scope: ProjectScope) -> list[Any]:
    """crash_fields rows within scope; every project's as ``project_id IN (all)``, which lets
    PostgreSQL read the index project by project instead of scanning it whole."""
    if scope is None:
        return [FIELDS.c.project_id.in_(select(PROJECTS.c.id).scalar_subquery())]
    return scoped(FIELDS.c.project_id, scope)


def _indexed(field: str, conditions: Sequence[Condition], scope: ProjectScope) -> ColumnElement[bool]:
    """Crashes with a value of field matching any of conditions (one subquery)."""
    rows = select(FIELDS.c.crash_id).where(*_fields_scope(scope), FIELDS.c.field == field,
                                           or_(*(_text(FIELDS.c.value, c, byte_order=True) for c in conditions)))
    return CRASHES.c.crash_id.in_(rows)


def where(conditions: Sequence[Condition], scope: ProjectScope) -> list[ColumnElement[bool]]:
    """WHERE clauses on ``crashes`` for conditions within scope: a field's positive conditions
    OR-ed, each negation (which a crash without the field also passes) AND-ed."""
    clauses: list[ColumnElement[bool]] = list(scoped(CRASHES.c.project_id, scope))
    for field, group in by_field(conditions).items():
        positive = [c for c in group if not c.negate]
        negative = [c for c in group if c.negate]
        if is_indexed(field):
            if positive:
                clauses.append(_indexed(field, positive, scope))
            clauses.extend(not_(_indexed(field, [c], scope)) for c in negative)
            continue
        if positive:
            clauses.append(or_(*(_column(c) for c in positive)))
        clauses.extend(or_(COLUMNS[field].is_(None), not_(_column(c))) for c in negative)
    return clauses


def matching_groups(conditions: Sequence[Condition], scope: ProjectScope) -> Any:
    """A subquery of the ids of groups with crashes matching conditions (for /api/groups)."""
    return select(CRASHES.c.group_id).where(*where(conditions, scope), CRASHES.c.group_id.is_not(None))


def search_crashes(engine: Engine, *, scope: ProjectScope, conditions: Sequence[Condition],
                   sort: str = "received", descending: bool = True, limit: int = 50,
                   offset: int = 0) -> dict[str, Any]:
    """One page of crashes matching conditions: ``{"crashes": [...], "total": n}``. Each crash
    has the RESULT_COLUMNS (received_at an aware UTC datetime). Ties sort newest first, then by
    crash_id. Raises ValueError for an unknown sort."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}")
    clauses = where(conditions, scope)
    key = SORTS[sort]
    stmt = (select(*RESULT_COLUMNS).select_from(CRASHES.join(PROJECTS, PROJECTS.c.id == CRASHES.c.project_id))
            .where(*clauses).order_by(key.desc() if descending else key.asc(), CRASHES.c.received_at.desc(),
                                      CRASHES.c.crash_id.desc()).limit(limit).offset(offset))
    with engine.connect() as conn:
        crashes = [{**r._mapping, "received_at": as_utc(r.received_at)} for r in conn.execute(stmt)]
        total = conn.execute(select(func.count()).select_from(CRASHES).where(*clauses)).scalar_one()
    return {"crashes": crashes, "total": int(total)}


def facet(engine: Engine, *, scope: ProjectScope, field: str, conditions: Sequence[Condition] = (),
          limit: int = 10) -> dict[str, Any]:
    """The most frequent values of field among the crashes matching conditions: ``{"field",
    "values": [{"value", "count"}] (most first, at most limit), "other": crashes (module: crash
    and module pairs) with the remaining values, "distinct": how many values, "total": crashes
    matched, "missing": those without the field (None for module, which a crash has several of)}``.
    Raises ValueError for a field that cannot be counted (a range field)."""
    if not is_field(field):
        raise ValueError(f"unknown search field {field!r}")
    if not facetable(field):
        raise ValueError(f"field {field!r} cannot be counted by value")
    limit = max(1, min(limit, MAX_FACET_VALUES))
    clauses = where(conditions, scope)
    if is_indexed(field):
        value: Any = FIELDS.c.value
        source = select(value, func.count().label("n")).where(*_fields_scope(scope), FIELDS.c.field == field)
        if conditions:
            source = source.where(FIELDS.c.crash_id.in_(select(CRASHES.c.crash_id).where(*clauses)))
    else:
        value = COLUMNS[field]
        source = select(value, func.count().label("n")).where(*clauses, value.is_not(None))
    counted = source.group_by(value).subquery()
    stmt = (select(counted.c[0].label("value"), counted.c.n, func.sum(counted.c.n).over().label("all_n"),
                   func.count().over().label("distinct")).order_by(counted.c.n.desc(), counted.c[0]).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
        total = int(conn.execute(select(func.count()).select_from(CRASHES).where(*clauses)).scalar_one())
    counted_all = int(rows[0].all_n) if rows else 0
    values = [{"value": r.value, "count": int(r.n)} for r in rows]
    return {"field": field, "values": values, "other": counted_all - sum(v["count"] for v in values),
            "distinct": int(rows[0].distinct) if rows else 0, "total": total,
            "missing": None if field == "module" else max(total - counted_all, 0)}
