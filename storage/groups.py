"""Crash groups in the database: assign a crash to the group of its signature, with counts
kept exact under concurrent workers by atomic upserts (never read-modify-write in Python).

A crash counts in exactly one group. Reprocessing moves it: its old group's counts go down
and the new group's go up in the same transaction. A signature a person merged into another
group (group_redirects, storage/regroup.py) is counted in that group.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, TypeVar

from sqlalchemy import Table, and_, bindparam, case, delete, func, literal, or_, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.expression import Executable

from schemas.tables import (
    Crash,
    CrashGroup,
    CrashMissingSymbols,
    GroupBuild,
    GroupMove,
    GroupPlatform,
    GroupRedirect,
    GroupTester,
    SymbolFile,
)
from storage.db import insert_of
from storage.search_index import crash_regrouped
from triage.kinds import CRASH, KINDS

log = logging.getLogger(__name__)

GROUPS: Table = CrashGroup.__table__  # type: ignore[attr-defined]
TESTERS: Table = GroupTester.__table__  # type: ignore[attr-defined]
BUILDS: Table = GroupBuild.__table__  # type: ignore[attr-defined]
PLATFORMS: Table = GroupPlatform.__table__  # type: ignore[attr-defined]
CRASHES: Table = Crash.__table__  # type: ignore[attr-defined]
MISSING: Table = CrashMissingSymbols.__table__  # type: ignore[attr-defined]
REDIRECTS: Table = GroupRedirect.__table__  # type: ignore[attr-defined]
MOVES: Table = GroupMove.__table__  # type: ignore[attr-defined]
SYMBOL_FILES: Table = SymbolFile.__table__  # type: ignore[attr-defined]
RETRIES = 8
T = TypeVar("T")
MOVE_LOCK = 0x67727073  # advisory lock class for moving crashes between groups


@dataclass(frozen=True)
class Grouping:
    """What processing decided about a crash, to be counted in its group."""

    crash_id: str
    project_id: int
    signature: str
    signature_version: str
    component: str | None
    reason_text: str | None
    platform: str | None
    seen_at: datetime  # the crash's received_at
    kind: str = CRASH  # the crash's kind (triage/kinds.py); the group keeps the most severe


@dataclass(frozen=True)
class Placement:
    """Where a crash was counted: its group, and the group it left when processing it again
    moved it (None: a first count, or the same group again)."""

    group_id: int
    moved_from: int | None = None


def assign_group(engine: Engine, *, grouping: Grouping) -> int:
    """Put the crash in the group of its signature (creating it) and return the group id.

    Idempotent: processing a crash again with the same signature changes no count.
    Retries on deadlocks and SQLite's busy errors (two crashes moving between two groups in
    opposite directions can deadlock on PostgreSQL). storage/regroup.py ``place_crash`` does
    the same and lets the group's ticket follow the crashes that moved.
    """
    return retrying(f"group assignment of {grouping.crash_id}", lambda conn: place(conn, grouping).group_id, engine)


def retrying(what: str, work: Callable[[Connection], T], engine: Engine) -> T:
    """Run work in a write transaction, again on deadlocks and SQLite's busy errors."""
    for attempt in range(RETRIES):
        try:
            with _write_transaction(engine) as conn:
                return work(conn)
        except OperationalError as exc:
            if attempt == RETRIES - 1:
                raise
            log.info("%s retried: %s", what, exc.orig)
            time.sleep(0.01 * (2**attempt))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes. On SQLite it starts with BEGIN IMMEDIATE: a deferred one
    that reads first and writes later can fail at once with "database is locked" when
    another writer got there in between (the busy handler cannot help a lock upgrade)."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


def _greatest(conn: Connection, a: Any, b: Any) -> Any:
    return _greatest_of(conn.dialect.name, a, b)


def _least(conn: Connection, a: Any, b: Any) -> Any:
    return _least_of(conn.dialect.name, a, b)


def _greatest_of(dialect: str, a: Any, b: Any) -> Any:
    return func.greatest(a, b) if dialect == "postgresql" else func.max(a, b)


def _least_of(dialect: str, a: Any, b: Any) -> Any:
    return func.least(a, b) if dialect == "postgresql" else func.min(a, b)


# -- statements built once ----------------------------------------------------------------
# place() runs once per processed crash. When it built its dozen statements anew on every
# call, the worker spent about 28% of its CPU per crash there, mostly in SQLAlchemy walking
# each new statement tree for its compiled-cache key (py-spy: Insert.excluded, case,
# _populate_column_collection, _generate_cache_key), not in SQL. A statement built once
# memoizes its cache key, so executing it with a parameters dict goes straight to the
# engine's compiled cache: in a micro bench of place_crash (3,000 crashes of 20 signatures,
# 50 testers, 4 builds) a new crash went from 3,500-4,300 to 1,100-1,700 us of CPU on SQLite
# and from 5,200-5,800 to 1,600-1,700 us on PostgreSQL; the SQL sent is the same. Statements
# whose SQL differs between PostgreSQL and SQLite (upserts, least/greatest) are built once
# per dialect name.
#
# An UPDATE's parameters must not be named after a column of its table unless they are
# that column's new value: SQLAlchemy reserves those names for the SET clause (and would add
# the column to it). Its WHERE parameters are named "where_<column>".


def _param(column: Any, name: str | None = None) -> Any:
    """A parameter of column's type, named after it unless name says otherwise. Typed, so
    SQLite gets a datetime in the text form the column stores and PostgreSQL the column's
    cast (an untyped parameter in least() or CASE would get neither)."""
    return bindparam(name or column.name, type_=column.type)


def _where(table: Table, *names: str) -> Any:
    """SQL: each of table's columns names equals the parameter "where_<name>"."""
    return and_(*(table.c[name] == _param(table.c[name], f"where_{name}") for name in names))


_COUNTED_IN = select(CRASHES.c.group_id).where(_where(CRASHES, "crash_id"))
_CRASH_FOR_UPDATE = (select(CRASHES.c.group_id, CRASHES.c.build, CRASHES.c.tester_id, CRASHES.c.platform)
                     .where(_where(CRASHES, "crash_id")).with_for_update())
_REDIRECTED = select(REDIRECTS.c.group_id).where(_where(REDIRECTS, "project_id", "signature"))
_GROUP_OF_SIGNATURE = select(GROUPS.c.id).where(_where(GROUPS, "project_id", "signature"))
_REFRESH_GROUP = update(GROUPS).where(_where(GROUPS, "id")).values(  # a crash counted in its group again
    component=_param(GROUPS.c.component),
    reason_text=func.coalesce(_param(GROUPS.c.reason_text, "new_reason_text"), GROUPS.c.reason_text))
_ONE_CRASH_LESS = update(GROUPS).where(_where(GROUPS, "id")).values(crash_count=GROUPS.c.crash_count - 1)
_ONE_TESTER_MORE = update(GROUPS).where(_where(GROUPS, "id")).values(tester_count=GROUPS.c.tester_count + 1)
_ONE_TESTER_LESS = update(GROUPS).where(_where(GROUPS, "id")).values(tester_count=GROUPS.c.tester_count - 1)
_CRASH_PLACED = update(CRASHES).where(_where(CRASHES, "crash_id")).values(
    {name: _param(CRASHES.c[name]) for name in
     ("group_id", "signature", "signature_version", "component", "reason_text", "platform")})
_LOCKS = {shared: text(f"SELECT {function}(:key, :project)") for shared, function in
          ((True, "pg_advisory_xact_lock_shared"), (False, "pg_advisory_xact_lock"))}


@functools.lru_cache(maxsize=8)
def _group_upsert(dialect: str) -> Executable:
    """Count a crash in the group of (project_id, signature), creating it; returns its id."""
    values = {name: _param(GROUPS.c[name]) for name in
              ("project_id", "signature", "signature_version", "component", "reason_text", "kind")}
    seen_at = _param(GROUPS.c.first_seen, "seen_at")
    stmt = insert_of(dialect)(GROUPS).values(**values, first_seen=seen_at, last_seen=seen_at,
                                              crash_count=1, tester_count=0)
    return stmt.on_conflict_do_update(index_elements=["project_id", "signature"], set_={
        "crash_count": GROUPS.c.crash_count + 1,
        "kind": more_severe_kind(GROUPS.c.kind, stmt.excluded.kind),
        "first_seen": _least_of(dialect, GROUPS.c.first_seen, stmt.excluded.first_seen),
        "last_seen": _greatest_of(dialect, GROUPS.c.last_seen, stmt.excluded.last_seen),
        "component": stmt.excluded.component,
        "signature_version": stmt.excluded.signature_version,
        "reason_text": func.coalesce(stmt.excluded.reason_text, GROUPS.c.reason_text),
    }).returning(GROUPS.c.id)


@functools.lru_cache(maxsize=8)
def _group_count_in(dialect: str) -> Executable:
    """Count a crash in the group "where_id" (a merge's target), not by its signature."""
    seen_at = _param(GROUPS.c.first_seen, "seen_at")
    return update(GROUPS).where(_where(GROUPS, "id")).values(
        crash_count=GROUPS.c.crash_count + 1, first_seen=_least_of(dialect, GROUPS.c.first_seen, seen_at),
        last_seen=_greatest_of(dialect, GROUPS.c.last_seen, seen_at),
        kind=more_severe_kind(GROUPS.c.kind, _param(GROUPS.c.kind, "new_kind")))


@functools.lru_cache(maxsize=32)
def _bump_upsert(dialect: str, table: Table, key: tuple[str, ...], seen: bool) -> Executable:
    """Upsert the counter row of table with the key columns (parameters named after them);
    seen: it keeps the first and last time seen too (parameter "seen_at")."""
    values = {name: _param(table.c[name]) for name in key}
    if seen:
        values["first_seen"] = values["last_seen"] = _param(table.c.first_seen, "seen_at")
    stmt = insert_of(dialect)(table).values(**values, crash_count=1)
    changes: dict[str, Any] = {"crash_count": table.c.crash_count + 1}
    if seen:
        changes["first_seen"] = _least_of(dialect, table.c.first_seen, stmt.excluded.first_seen)
        changes["last_seen"] = _greatest_of(dialect, table.c.last_seen, stmt.excluded.last_seen)
    return stmt.on_conflict_do_update(index_elements=list(key), set_=changes).returning(table.c.crash_count)


@functools.lru_cache(maxsize=32)
def _drop_statements(table: Table, key: tuple[str, ...]) -> tuple[Executable, Executable]:
    """The statements of _drop: count one less in the row of table where the key columns
    equal the parameters "where_<column>" (returning the count), and delete that row."""
    where = _where(table, *key)
    return (update(table).where(where).values(crash_count=table.c.crash_count - 1).returning(table.c.crash_count),
            delete(table).where(where))


def lock_moves(conn: Connection, project_id: int, *, shared: bool = False) -> None:
    """Take turns with other moves of crashes between groups of the project (PostgreSQL; on
    SQLite the write transaction is already exclusive). New crashes take the lock shared, so
    they never wait for each other; a move, a merge or an unmerge takes it alone. Two crashes
    moving between two groups in opposite directions would otherwise lock the group rows in
    opposite orders, and a merge would count a crash that arrives while it recounts twice."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCKS[shared], {"key": MOVE_LOCK, "project": project_id})


def place(conn: Connection, g: Grouping) -> Placement:
    """Count the crash in the group its signature belongs to: the group a person merged the
    signature into (group_redirects), else the group of that signature. A crash counted
    before in another group moves: its old group counts one crash less, and the move is
    noted in group_moves (the ticket follows the group that took most of a group's crashes)."""
    crash = {"where_crash_id": g.crash_id}
    counted_in = conn.execute(_COUNTED_IN, crash).scalar_one()
    lock_moves(conn, g.project_id, shared=counted_in is None)
    row = conn.execute(_CRASH_FOR_UPDATE, crash).one()
    signature = {"where_project_id": g.project_id, "where_signature": g.signature}
    redirected = conn.execute(_REDIRECTED, signature).scalar_one_or_none()
    if row.group_id is not None:
        belongs = redirected if redirected is not None else conn.execute(
            _GROUP_OF_SIGNATURE, signature).scalar_one_or_none()
        if belongs == row.group_id:
            _update_crash(conn, g, row.group_id)
            if redirected is None:  # a merged group keeps the component and reason of its own signature
                conn.execute(_REFRESH_GROUP, {"where_id": row.group_id, "component": g.component,
                                             "new_reason_text": g.reason_text})
            return Placement(row.group_id)
        _uncount(conn, row.group_id, row.build, row.tester_id, row.platform)
    if redirected is None:
        group_id = _count(conn, g, row.build, row.tester_id)
    else:
        group_id = _count_in(conn, redirected, g, row.build, row.tester_id)
    _update_crash(conn, g, group_id)
    if row.group_id is None:
        return Placement(group_id)
    _bump(conn, MOVES, {"from_group_id": row.group_id, "to_group_id": group_id}, None)
    return Placement(group_id, moved_from=row.group_id)


def more_severe_kind(current: Any, new: Any) -> Any:
    """SQL: the more severe of two kind columns or values (KINDS order: crash > hang > error
    > message), for a group's kind as its crashes are counted."""
    def rank(kind: Any) -> Any:
        return case({name: index for index, name in enumerate(KINDS)}, value=kind, else_=len(KINDS))
    return case((rank(new) < rank(current), new), else_=current)


def _count(conn: Connection, g: Grouping, build: str | None, tester_id: str | None) -> int:
    group_id: int = conn.execute(_group_upsert(conn.dialect.name), {
        "project_id": g.project_id, "signature": g.signature, "signature_version": g.signature_version,
        "component": g.component, "reason_text": g.reason_text, "kind": g.kind, "seen_at": g.seen_at,
    }).scalar_one()
    _count_rows(conn, group_id, g, build, tester_id)
    return group_id


def _count_in(conn: Connection, group_id: int, g: Grouping, build: str | None, tester_id: str | None) -> int:
    """Count the crash in a group chosen by id (a merge's target), not by its signature."""
    conn.execute(_group_count_in(conn.dialect.name), {"where_id": group_id, "seen_at": g.seen_at, "new_kind": g.kind})
    _count_rows(conn, group_id, g, build, tester_id)
    return group_id


def _count_rows(conn: Connection, group_id: int, g: Grouping, build: str | None, tester_id: str | None) -> None:
    """Count the crash in its group's tester, build and platform rows (and tester_count)."""
    if tester_id:
        if _bump(conn, TESTERS, {"group_id": group_id, "tester_id": tester_id}, g.seen_at) == 1:
            conn.execute(_ONE_TESTER_MORE, {"where_id": group_id})
    _bump(conn, BUILDS, {"group_id": group_id, "build": build or ""}, g.seen_at)
    _bump(conn, PLATFORMS, {"group_id": group_id, "platform": g.platform or ""}, None)


def _bump(conn: Connection, table: Table, key: dict[str, Any], seen_at: datetime | None) -> int:
    """Upsert a counter row (with its first and last time seen unless seen_at is None);
    returns its new crash_count (1: it was just created)."""
    upsert = _bump_upsert(conn.dialect.name, table, tuple(key), seen_at is not None)
    params = key if seen_at is None else {**key, "seen_at": seen_at}
    count: int = conn.execute(upsert, params).scalar_one()
    return count


def _uncount(conn: Connection, group_id: int, build: str | None, tester_id: str | None, platform: str | None) -> None:
    group = {"where_id": group_id}
    conn.execute(_ONE_CRASH_LESS, group)
    if tester_id and _drop(conn, TESTERS, {"group_id": group_id, "tester_id": tester_id}) == 0:
        conn.execute(_ONE_TESTER_LESS, group)
    _drop(conn, BUILDS, {"group_id": group_id, "build": build or ""})
    _drop(conn, PLATFORMS, {"group_id": group_id, "platform": platform or ""})


def recount(conn: Connection, group_id: int) -> None:
    """Count the group again from its crashes: crash, tester, build and platform rows and the
    seen times. A merge or unmerge moves many crashes with one UPDATE and then recounts both
    groups (under lock_moves, so no crash is counted in between)."""
    c = CRASHES
    mine = c.c.group_id == group_id
    for table in (TESTERS, BUILDS, PLATFORMS):
        conn.execute(delete(table).where(table.c.group_id == group_id))
    seen = (func.count(), func.min(c.c.received_at), func.max(c.c.received_at))
    conn.execute(TESTERS.insert().from_select(
        ["group_id", "tester_id", "crash_count", "first_seen", "last_seen"],
        select(literal(group_id), c.c.tester_id, *seen).where(mine, c.c.tester_id.is_not(None), c.c.tester_id != "")
        .group_by(c.c.tester_id)))
    build = func.coalesce(c.c.build, "")
    conn.execute(BUILDS.insert().from_select(["group_id", "build", "crash_count", "first_seen", "last_seen"],
                                             select(literal(group_id), build, *seen).where(mine).group_by(build)))
    platform = func.coalesce(c.c.platform, "")
    conn.execute(PLATFORMS.insert().from_select(["group_id", "platform", "crash_count"],
                                                select(literal(group_id), platform, func.count()).where(mine)
                                                .group_by(platform)))
    crashes, first, last = conn.execute(select(*seen).where(mine)).one()
    testers = conn.execute(select(func.count()).select_from(TESTERS).where(TESTERS.c.group_id == group_id)).scalar_one()
    values: dict[str, Any] = {"crash_count": crashes, "tester_count": testers}
    if crashes:  # an emptied group keeps the times it was seen
        values.update(first_seen=first, last_seen=last)
    conn.execute(update(GROUPS).where(GROUPS.c.id == group_id).values(**values))


def _drop(conn: Connection, table: Table, key: dict[str, Any]) -> int | None:
    """Count one crash less in a counter row, deleting it at zero; returns the new count."""
    one_less, delete_row = _drop_statements(table, tuple(key))
    where = {f"where_{name}": value for name, value in key.items()}
    left: int | None = conn.execute(one_less, where).scalar_one_or_none()
    if left is not None and left <= 0:
        conn.execute(delete_row, where)
    return left


def _update_crash(conn: Connection, g: Grouping, group_id: int) -> None:
    # its search rows follow it (until finish_crash rewrites them)
    crash_regrouped(conn, group_id=group_id, crash_id=g.crash_id)
    conn.execute(_CRASH_PLACED, {
        "where_crash_id": g.crash_id, "group_id": group_id, "signature": g.signature,
        "signature_version": g.signature_version, "component": g.component, "reason_text": g.reason_text,
        "platform": g.platform,
    })


_MISSING_FORGOTTEN = delete(MISSING).where(MISSING.c.crash_id == bindparam("where_crash_id"))  # for every crash


def record_missing_symbols(engine: Engine, *, crash_id: str, modules: set[tuple[str, str]]) -> None:
    """Replace the crash's list of (debug_file, debug_id) whose symbols were missing."""
    with engine.begin() as conn:
        conn.execute(_MISSING_FORGOTTEN, {"where_crash_id": crash_id})
        if modules:
            conn.execute(MISSING.insert(), [
                {"crash_id": crash_id, "debug_file": f, "debug_id": i} for f, i in sorted(modules)])


def crashes_missing(engine: Engine, *, debug_file: str, debug_id: str) -> list[str]:
    """Crashes processed without the symbols of this module (debug id case-insensitive)."""
    with engine.connect() as conn:
        rows = conn.execute(select(MISSING.c.crash_id).where(
            func.lower(MISSING.c.debug_file) == debug_file.lower(),
            func.upper(MISSING.c.debug_id) == debug_id.upper(),
        ).order_by(MISSING.c.crash_id))
        return [r.crash_id for r in rows]


def stores_missing(project_id: Any) -> Any:
    """The join condition of a stored symbol file (SYMBOL_FILES) holding a module a crash was
    missing (MISSING): the same debug file and id (case-insensitive), in the store of
    project_id (a value or a column) or the shared one."""
    m, f = MISSING, SYMBOL_FILES
    return and_(func.lower(f.c.debug_file) == func.lower(m.c.debug_file),
                func.upper(f.c.debug_id) == func.upper(m.c.debug_id),
                or_(f.c.project_id == project_id, f.c.project_id.is_(None)))


def missing_stored_since(engine: Engine, *, crash_id: str, project_id: int, since: datetime) -> list[str]:
    """The modules the crash was recorded as missing whose symbols were stored (in its
    project's store or the shared one) at or after since: they arrived while the crash was
    being processed, after the symbol upload looked for crashes that lacked them."""
    m, f = MISSING, SYMBOL_FILES
    with engine.connect() as conn:
        rows = conn.execute(select(m.c.debug_file, m.c.debug_id).distinct().join(f, stores_missing(project_id))
                            .where(m.c.crash_id == crash_id, f.c.uploaded_at >= since))
        return [f"{r.debug_file}/{r.debug_id}" for r in rows]


# -- reading groups -------------------------------------------------------------------------

GROUP_FIELDS = ("id", "project_id", "signature", "signature_version", "component", "reason_text",
                "first_seen", "last_seen", "crash_count", "tester_count", "kind")


def list_groups(engine: Engine, *, project_id: int | None = None, component: str | None = None,
                build: str | None = None, since: datetime | None = None, limit: int = 100,
                offset: int = 0) -> list[dict[str, Any]]:
    """Groups with at least one crash, most testers first, then most crashes.

    build: only groups seen in that build (their crash_count is then that build's);
    since: only groups seen at or after it.
    """
    columns = [GROUPS.c[name] for name in GROUP_FIELDS]
    stmt = select(*columns).where(GROUPS.c.crash_count > 0)
    if build is not None:
        stmt = select(*columns, BUILDS.c.crash_count.label("build_crash_count")).join(
            BUILDS, and_(BUILDS.c.group_id == GROUPS.c.id, BUILDS.c.build == build)
        ).where(GROUPS.c.crash_count > 0)
    if project_id is not None:
        stmt = stmt.where(GROUPS.c.project_id == project_id)
    if component is not None:
        stmt = stmt.where(GROUPS.c.component == component)
    if since is not None:
        stmt = stmt.where(GROUPS.c.last_seen >= since)
    stmt = stmt.order_by(GROUPS.c.tester_count.desc(), GROUPS.c.crash_count.desc(), GROUPS.c.id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt.limit(limit).offset(offset))]


def get_group(engine: Engine, *, group_id: int) -> dict[str, Any] | None:
    """One group with its per-build and per-platform counts and its latest crash id."""
    with engine.connect() as conn:
        row = conn.execute(select(*(GROUPS.c[n] for n in GROUP_FIELDS)).where(GROUPS.c.id == group_id)).first()
        if row is None:
            return None
        group = dict(row._mapping)
        group["builds"] = [dict(r._mapping) for r in conn.execute(
            select(BUILDS.c.build, BUILDS.c.crash_count, BUILDS.c.first_seen, BUILDS.c.last_seen)
            .where(BUILDS.c.group_id == group_id).order_by(BUILDS.c.first_seen))]
        group["platforms"] = {r.platform: r.crash_count for r in conn.execute(
            select(PLATFORMS.c.platform, PLATFORMS.c.crash_count).where(PLATFORMS.c.group_id == group_id))}
        group["representative_crash_id"] = conn.execute(
            select(CRASHES.c.crash_id).where(CRASHES.c.group_id == group_id)
            .order_by(CRASHES.c.received_at.desc()).limit(1)).scalar_one_or_none()
        return group


def group_crash_ids(engine: Engine, *, group_id: int) -> list[str]:
    """Every crash currently in the group."""
    with engine.connect() as conn:
        return list(conn.execute(select(CRASHES.c.crash_id).where(CRASHES.c.group_id == group_id)
                                 .order_by(CRASHES.c.received_at)).scalars())
