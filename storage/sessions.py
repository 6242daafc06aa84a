"""Play sessions in the database (the ``sessions`` table) and the per-build counts that crash
rates are made of. Keyword-only functions taking an Engine, like storage/queries.py.

Build keys: a session or crash without a build is counted under ``""``, as in group_builds.
Every ``since`` is compared with a session's ``started`` (a crash's ``received_at``).
Crash counts count crashes only (``kind`` in triage/kinds.RATE_KINDS): a handled error, a hang
or a log message reported by a Sentry SDK is not a crash of the build. Hangs have their own
count (``crashes_per_build(..., kinds=(HANG,))``, docs/hangs.md).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Table, and_, case, func, select, union
from sqlalchemy.engine import Engine

from schemas.tables import Crash, CrashGroup, GameSession, GroupBuild, utcnow
from storage.db import dialect_insert
from triage.kinds import RATE_KINDS

SESSIONS: Table = GameSession.__table__  # type: ignore[attr-defined]
CRASHES: Table = Crash.__table__  # type: ignore[attr-defined]
GROUPS: Table = CrashGroup.__table__  # type: ignore[attr-defined]
BUILDS: Table = GroupBuild.__table__  # type: ignore[attr-defined]

STATUSES = ("ok", "exited", "crashed", "abnormal")
FINAL = ("exited", "crashed", "abnormal")  # how a session ended; `ok` is still running
BATCH = 500  # rows per INSERT (8 bound values each: far below SQLite's variable limit)


def _utc(value: datetime) -> datetime:
    """Aware UTC: SQLite stores a datetime's wall clock and drops its zone, so every time we
    bind must already be UTC (a naive one is taken as UTC)."""
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def upsert_sessions(engine: Engine, *, project_id: int, sessions: list[dict[str, Any]]) -> int:
    """Insert or update sessions, idempotent on session_id; returns how many were written.

    Each dict has ``session_id``, ``started`` (datetime), ``status`` (one of STATUSES) and
    optionally ``tester_id``, ``build``, ``duration``. A session already stored keeps its
    tester, build and start; a later report updates status, duration and updated_at. Two
    exceptions keep a retried old report from undoing a newer one: ``ok`` never replaces a
    final status (exited, crashed, abnormal), and a missing duration keeps the stored one.
    The same session_id twice in one call counts once (the last report wins). A session_id
    that belongs to another project is left alone and not counted.
    """
    latest = {s["session_id"]: s for s in sessions}
    now = utcnow()
    rows = [{
        "session_id": s["session_id"], "project_id": project_id, "tester_id": s.get("tester_id"),
        "build": s.get("build"), "started": _utc(s["started"]), "duration": s.get("duration"),
        "status": s["status"], "updated_at": now,
    } for _, s in sorted(latest.items())]  # sorted: concurrent batches lock rows in one order
    insert = dialect_insert(engine)
    written = 0
    with engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            stmt = insert(SESSIONS).values(rows[start:start + BATCH])
            new = stmt.excluded
            stale = and_(new.status == "ok", SESSIONS.c.status.in_(FINAL))
            upsert = stmt.on_conflict_do_update(
                index_elements=["session_id"],
                set_={
                    "status": case((stale, SESSIONS.c.status), else_=new.status),
                    "duration": case((stale, SESSIONS.c.duration),
                                     else_=func.coalesce(new.duration, SESSIONS.c.duration)),
                    "updated_at": new.updated_at,
                },
                where=SESSIONS.c.project_id == new.project_id,
            ).returning(SESSIONS.c.session_id)
            written += len(conn.execute(upsert).all())
    return written


def _build_counts(engine: Engine, project_id: int, since: datetime | None, *where: Any) -> dict[str, int]:
    build = func.coalesce(SESSIONS.c.build, "")
    stmt = select(build, func.count()).where(SESSIONS.c.project_id == project_id, *where).group_by(build)
    if since is not None:
        stmt = stmt.where(SESSIONS.c.started >= _utc(since))
    with engine.connect() as conn:
        return {b: int(n) for b, n in conn.execute(stmt)}


def sessions_per_build(engine: Engine, *, project_id: int, since: datetime | None = None) -> dict[str, int]:
    """Sessions per build (started at or after since), every status."""
    return _build_counts(engine, project_id, since)


def crashed_sessions_per_build(engine: Engine, *, project_id: int, since: datetime | None = None) -> dict[str, int]:
    """Sessions per build whose status is ``crashed`` (``abnormal`` ones are not counted:
    a killed or hung game is not a crash report). Builds without one are absent."""
    return _build_counts(engine, project_id, since, SESSIONS.c.status == "crashed")


def active_testers(engine: Engine, *, project_id: int, build: str | None = None,
                   since: datetime | None = None) -> int:
    """Distinct testers with a session, or a crash, in the window (and build, when given;
    ``""`` is the build of sessions and crashes without one)."""
    played = select(SESSIONS.c.tester_id.label("tester_id")).where(
        SESSIONS.c.project_id == project_id, SESSIONS.c.tester_id.is_not(None))
    crashed = select(CRASHES.c.tester_id.label("tester_id")).where(
        CRASHES.c.project_id == project_id, CRASHES.c.tester_id.is_not(None))
    if build is not None:
        played = played.where(func.coalesce(SESSIONS.c.build, "") == build)
        crashed = crashed.where(func.coalesce(CRASHES.c.build, "") == build)
    if since is not None:
        played = played.where(SESSIONS.c.started >= _utc(since))
        crashed = crashed.where(CRASHES.c.received_at >= _utc(since))
    testers = union(played, crashed).subquery()
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(testers)).scalar_one())


def group_crashes_per_build(engine: Engine, *, group_id: int) -> dict[str, int]:
    """The group's crashes per build (from group_builds)."""
    with engine.connect() as conn:
        rows = conn.execute(select(BUILDS.c.build, BUILDS.c.crash_count).where(BUILDS.c.group_id == group_id))
        return {r.build: int(r.crash_count) for r in rows}


def group_crashes_in_builds(engine: Engine, *, project_id: int, builds: list[str]) -> list[dict[str, Any]]:
    """Per crash group (kind in RATE_KINDS) of the project seen in any of builds:
    ``{"group_id", "signature", "component", "crashes": {build: count}}`` (builds it was not
    seen in are absent)."""
    stmt = (select(GROUPS.c.id, GROUPS.c.signature, GROUPS.c.component, BUILDS.c.build, BUILDS.c.crash_count)
            .join(BUILDS, BUILDS.c.group_id == GROUPS.c.id)
            .where(GROUPS.c.project_id == project_id, BUILDS.c.build.in_(builds), BUILDS.c.crash_count > 0,
                   GROUPS.c.kind.in_(RATE_KINDS))
            .order_by(GROUPS.c.id))
    out: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for r in conn.execute(stmt):
            group = out.setdefault(r.id, {"group_id": r.id, "signature": r.signature,
                                          "component": r.component, "crashes": {}})
            group["crashes"][r.build] = int(r.crash_count)
    return list(out.values())


def crashes_per_build(engine: Engine, *, project_id: int, since: datetime | None = None,
                      kinds: tuple[str, ...] = RATE_KINDS) -> dict[str, int]:
    """Reports of these kinds (crashes: RATE_KINDS; hangs: (HANG,)) per build (received at or
    after since), processed or not."""
    build = func.coalesce(CRASHES.c.build, "")
    stmt = (select(build, func.count()).where(CRASHES.c.project_id == project_id, CRASHES.c.kind.in_(kinds))
            .group_by(build))
    if since is not None:
        stmt = stmt.where(CRASHES.c.received_at >= _utc(since))
    with engine.connect() as conn:
        return {b: int(n) for b, n in conn.execute(stmt)}


def build_first_seen(engine: Engine, *, project_id: int) -> dict[str, datetime]:
    """When each build was first seen: its earliest session start or crash, in UTC."""
    seen: dict[str, datetime] = {}
    session_build, crash_build = func.coalesce(SESSIONS.c.build, ""), func.coalesce(CRASHES.c.build, "")
    queries = (
        select(session_build, func.min(SESSIONS.c.started)).where(SESSIONS.c.project_id == project_id)
        .group_by(session_build),
        select(crash_build, func.min(CRASHES.c.received_at)).where(CRASHES.c.project_id == project_id)
        .group_by(crash_build),
    )
    with engine.connect() as conn:
        for stmt in queries:
            for build, first in conn.execute(stmt):
                first = _utc(first)  # SQLite: naive
                seen[build] = min(seen.get(build, first), first)
    return seen
