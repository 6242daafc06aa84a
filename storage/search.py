"""Searching crashes by any field and counting a field's values (facets): docs/search.md.

A search is one set of matching crashes (``matches``), read from ``crash_fields`` wherever a
condition is on an indexed field: each such field is one range of ix_crash_fields_search
(which holds every column: no table row is read), fields are AND-ed by INTERSECT and
negations taken away by EXCEPT; a substring finds its values in ``field_values`` first. A
group's crashes come from ix_crash_fields_group. Only status and hang_seconds are read from
``crashes``; a search with no indexed or group condition reads ``crashes`` alone. The page's
rows come from ``crashes`` by id afterwards. bench/search.py
measures it at 1,000,000 crashes. A facet counts the values of the matched crashes' rows of
one field; with ``latest`` it takes the newest N matched crashes from an index (the search
index, ix_crash_fields_group, ix_crashes_project_id_received_at) and each one's value by
primary key. Keyword-only functions taking an Engine first, like storage/queries.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import ColumnElement, Select, Table, and_, except_, exists, func, intersect, not_, or_, select, union
from sqlalchemy.engine import Engine

from schemas.tables import Project
from storage.queries import as_utc
from storage.scope import ProjectScope, scoped
from storage.search_index import CRASHES, FIELDS, VALUES
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


def _has(table: Any, field: str, conditions: Sequence[Condition], scope: ProjectScope) -> list[ColumnElement[bool]]:
    """table's row is a value of field matching any of conditions. A substring is looked up
    among the field's distinct values (field_values) first, so it reads no crash's rows."""
    def one(condition: Condition) -> ColumnElement[bool]:
        if condition.op != "contains":
            return _text(table.c.value, condition)
        values = select(VALUES.c.value).where(*_fields_scope(VALUES, scope), VALUES.c.field == field,
                                              _text(VALUES.c.value, condition))
        return table.c.value.in_(values)
    return [table.c.field == field, or_(*(one(c) for c in conditions))]


def _flat(query: Any) -> Select[Any]:
    """A compound (INTERSECT, EXCEPT, UNION) as a plain SELECT of its columns, so it can be a
    member of another compound: SQLite takes no parenthesized compound members."""
    inner = query.subquery()
    return select(inner.c.crash_id, inner.c.received_at, inner.c.group_id)


def _rows(table: Any) -> Select[Any]:
    return select(table.c.crash_id, table.c.received_at, table.c.group_id)


def _either(target: Any, group: Sequence[Condition],
            match: Callable[[Any, Condition], ColumnElement[bool]]) -> list[ColumnElement[bool]]:
    """A column field's conditions on target: its positive ones OR-ed, each negation AND-ed (a
    crash without a value, NULL, passes a negation)."""
    clauses = [or_(*(match(target, c) for c in group if not c.negate))] if any(not c.negate for c in group) else []
    return clauses + [or_(target.is_(None), not_(match(target, c))) for c in group if c.negate]


def _shared(table: Any, columns: Mapping[str, list[Condition]]) -> list[ColumnElement[bool]]:
    """The received and group conditions on table (crash_fields and crashes both have them)."""
    clauses: list[ColumnElement[bool]] = []
    for field, group in columns.items():
        if field in ("received", "group"):
            clauses += _either(table.c.received_at if field == "received" else table.c.group_id, group, _ordered)
    return clauses


def _on_crash(columns: Mapping[str, list[Condition]]) -> list[ColumnElement[bool]]:
    """The status and hang_seconds conditions: columns of crashes only."""
    clauses: list[ColumnElement[bool]] = []
    for field, group in columns.items():
        if field in CRASH_COLUMNS:
            clauses += _either(CRASH_COLUMNS[field], group, _column)
    return clauses


def _probed(driver: Select[Any], positive: Sequence[tuple[str, list[Condition]]], negative: Sequence[Condition],
            scope: ProjectScope, on_crash: list[ColumnElement[bool]]) -> Select[Any]:
    """driver's crashes that have each positive field's value (EXISTS) and none of negative's
    (NOT EXISTS), both by primary key (crash_id, field, value)."""
    found = driver.subquery()

    def has(field: str, alternatives: Sequence[Condition]) -> Any:
        other = FIELDS.alias()
        return exists().where(other.c.crash_id == found.c.crash_id, *_has(other, field, alternatives, scope))

    stmt = _rows(found).where(*(has(f, cs) for f, cs in positive), *(not_(has(c.field, [c])) for c in negative))
    if on_crash:
        stmt = stmt.where(exists().where(CRASHES.c.crash_id == found.c.crash_id, *on_crash))
    return stmt


def matches(conditions: Sequence[Condition], scope: ProjectScope, probe: bool = False) -> Select[Any]:
    """The crashes matching conditions within scope, one row each: (crash_id, received_at,
    group_id). Each indexed field's rows are one range of ix_crash_fields_search (its positive
    conditions OR-ed); fields are AND-ed by INTERSECT, negations taken away by EXCEPT (a crash
    without the field passes a negation); both hash the ranges instead of probing crash by
    crash (PostgreSQL); with probe (SQLite, whose INTERSECT sorts into a temporary b-tree: 2 s
    for two ranges of 60,000 and 75,000 at 1M crashes) the first range drives and the others
    are primary-key probes. Without a positive indexed condition a group's crashes
    (group=<id>) or else the crashes table are the start."""
    fields = by_field(c for c in conditions if is_indexed(c.field))
    positive = [(f, [c for c in cs if not c.negate]) for f, cs in fields.items() if any(not c.negate for c in cs)]
    negative = [c for cs in fields.values() for c in cs if c.negate]
    columns = by_field(c for c in conditions if not is_indexed(c.field))
    on_crash = _on_crash(columns)
    members = []
    for field, alternatives in positive:
        table = FIELDS.alias()
        members.append(_rows(table).where(*_fields_scope(table, scope), *_has(table, field, alternatives, scope),
                                          *_shared(table, columns)))
    if probe and members:  # SQLite: the first range drives, the others are primary-key probes
        return _probed(members[0], positive[1:], negative, scope, on_crash)
    group = _group_only([c for c in conditions if c.field == "group"])
    if not members and group is not None:  # a group's crashes, newest first, from ix_crash_fields_group
        table = FIELDS.alias()  # every grouped crash has crash_fields rows, one of them its kind
        members = [_rows(table).where(table.c.group_id == group, table.c.field == "kind",
                                      *_fields_scope(table, scope), *_shared(table, columns))]
    if not members:
        members = [_rows(CRASHES).where(*scoped(CRASHES.c.project_id, scope), *_shared(CRASHES, columns), *on_crash)]
        on_crash = []
    stmt = members[0] if len(members) == 1 else _flat(intersect(*members))
    if negative:
        excluded = []
        for condition in negative:
            table = FIELDS.alias()
            excluded.append(_rows(table).where(*_fields_scope(table, scope),
                                               *_has(table, condition.field, [condition], scope),
                                               *_shared(table, columns)))
        stmt = _flat(except_(stmt, excluded[0] if len(excluded) == 1 else _flat(union(*excluded))))
    if on_crash:
        found = stmt.subquery()
        stmt = _rows(found).where(exists().where(CRASHES.c.crash_id == found.c.crash_id, *on_crash))
    return stmt


def _column(column: Any, condition: Condition) -> ColumnElement[bool]:
    if condition.field in ("received", "hang_seconds", "group"):
        return _ordered(column, condition)
    return _text(column, condition, byte_order=False)


def probes(engine: Engine) -> bool:
    """Whether matches should probe rather than intersect on this engine's database (SQLite)."""
    return engine.dialect.name == "sqlite"


def matching_groups(conditions: Sequence[Condition], scope: ProjectScope, probe: bool = False) -> Any:
    """A subquery of the ids of groups with crashes matching conditions (for /api/groups)."""
    found = matches(conditions, scope, probe).subquery()
    return select(found.c.group_id).where(found.c.group_id.is_not(None))


def search_crashes(engine: Engine, *, scope: ProjectScope, conditions: Sequence[Condition],
                   sort: str = "received", descending: bool = True, limit: int = 50,
                   offset: int = 0) -> dict[str, Any]:
    """One page of crashes matching conditions: ``{"crashes": [...], "total": n}``. Each crash
    has the RESULT_COLUMNS (received_at an aware UTC datetime). Ties sort newest first, then by
    crash_id. Raises ValueError for an unknown sort."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}")
    found = matches(conditions, scope, probes(engine)).subquery()
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
           limit: int = 10, latest: int | None = None) -> dict[str, Any]:
    """The most frequent values of each of fields among the crashes matching conditions:
    ``{"total": crashes matched, "sample": crashes counted (None: all of them), "facets":
    [{"field", "values": [{"value", "count"}] (most first, at most limit), "other": crashes
    (module: crash and module pairs) with the remaining values, "distinct": how many values,
    "missing": crashes without the field (None for module, which a crash has several of)}]}``.
    With latest, the values are counted among the latest that many matched crashes only (a
    group page's Top values: exact for groups up to that size). The matched crashes are one
    query, counted once. Raises ValueError for an unknown field or one that cannot be counted."""
    for field in fields:
        if not is_field(field):
            raise ValueError(f"unknown search field {field!r}")
        if not facetable(field):
            raise ValueError(f"field {field!r} cannot be counted by value (only indexed fields can)")
    limit = max(1, min(limit, MAX_FACET_VALUES))
    found = matches(conditions, scope, probes(engine)).subquery()
    group = _group_only(conditions)
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(found)).scalar_one())
        sample = min(total, latest) if latest is not None and total > latest else None
        if sample is not None and group is not None:  # the group's crashes since its latest's Nth
            since, sample = _group_since(conn, group, scope, sample)
            source = _group_values(scope, group, since)
        elif sample is not None:  # the sample from an index, newest first, then each one's value by primary key
            source = _sample_values(found, sample)
        elif group is not None:  # ix_crash_fields_group
            source = _group_values(scope, group, None)
        else:
            source = _values_of(scope, found if conditions else None)
        out = [_count(conn, source(field), field, limit) for field in fields]
    for one in out:
        counted = one.pop("counted")
        one["missing"] = None if one["field"] == "module" else max((sample or total) - counted, 0)
    return {"total": total, "sample": sample, "facets": out}


def _group_since(conn: Any, group: int, scope: ProjectScope, latest: int) -> tuple[Any, int]:
    """When the group's latest-th newest crash came, and how many came since (latest, or more
    on a tie): a sample its facets read from ix_crash_fields_group alone."""
    kinds = select(FIELDS.c.received_at).where(FIELDS.c.group_id == group, FIELDS.c.field == "kind",
                                               *_fields_scope(FIELDS, scope))
    since = conn.execute(kinds.order_by(FIELDS.c.received_at.desc()).offset(latest - 1).limit(1)).scalar_one()
    count = conn.execute(select(func.count()).select_from(kinds.where(FIELDS.c.received_at >= since).subquery()))
    return since, int(count.scalar_one())


Source = Callable[[str], Select[Any]]  # a field -> (value, n) rows of the crashes counted, not yet grouped


def _values_of(scope: ProjectScope, found: Any) -> Source:
    """The field's rows of every crash in scope, or of those in found."""
    def source(field: str) -> Select[Any]:
        rows = select(FIELDS.c.value, func.count().label("n")).where(*_fields_scope(FIELDS, scope),
                                                                     FIELDS.c.field == field)
        return rows if found is None else rows.where(FIELDS.c.crash_id.in_(select(found.c.crash_id)))
    return source


def _group_values(scope: ProjectScope, group: int, since: Any) -> Source:
    """The field's rows of the group's crashes (since then, when given): ix_crash_fields_group."""
    def source(field: str) -> Select[Any]:
        return _values_of(scope, None)(field).where(
            FIELDS.c.group_id == group, *([FIELDS.c.received_at >= since] if since is not None else []))
    return source


def _sample_values(found: Any, latest: int) -> Source:
    """The field's rows of the newest latest crashes of found, each by primary key."""
    newest = select(found.c.crash_id).order_by(found.c.received_at.desc(), found.c.crash_id.desc()).limit(latest)
    sample = newest.subquery()

    def source(field: str) -> Select[Any]:
        return select(FIELDS.c.value, func.count().label("n")).select_from(sample.join(
            FIELDS, and_(FIELDS.c.crash_id == sample.c.crash_id, FIELDS.c.field == field)))
    return source


def _count(conn: Any, rows: Select[Any], field: str, limit: int) -> dict[str, Any]:
    """One facet of rows (``{"field", "values", "other", "distinct", "counted"}``, counted: the
    rows with a value, which facets turns into missing)."""
    counted = rows.group_by(FIELDS.c.value).subquery()
    stmt = (select(counted.c.value, counted.c.n, func.sum(counted.c.n).over().label("all_n"),
                   func.count().over().label("distinct")).order_by(counted.c.n.desc(), counted.c.value).limit(limit))
    found = conn.execute(stmt).all()
    counted_all = int(found[0].all_n) if found else 0
    values = [{"value": r.value, "count": int(r.n)} for r in found]
    return {"field": field, "values": values, "other": counted_all - sum(v["count"] for v in values),
            "distinct": int(found[0].distinct) if found else 0, "counted": counted_all}
