"""Deleting old crashes and sessions (``crashd prune``, ``CRASHD_RETENTION_DAYS``): rows here,
blobs by the caller (workers/retention.py) once the rows are gone.

A crash is deleted whole, in one transaction: its row, its attachments' rows, its missing
symbols rows and its upload fingerprints, and it is counted out of its group exactly as a
move between groups does (storage/groups._uncount), so crash, tester, build and platform
counts stay equal to what the crashes table says. Sessions started before the same cutoff go
too, so a build's crash rate keeps counting crashes and sessions over the same time. Groups
and tickets are kept: a group whose crashes are all gone keeps its signature and ticket with a
crash count of 0.

Raw dumps (``CRASHD_RAW_DUMP_DAYS``) have a shorter life than their crash: a crash done with
processing (``processed`` or ``failed``) gives its minidump up, the row keeping everything
else (``minidump_key`` becomes None; ``minidump_size`` and ``minidump_sha256`` stay as a
record, and ``processed["raw_dump"]`` says when and after how many days it went).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.engine import Connection, Engine

from schemas.tables import Attachment, CrashStatus, GameSession, UploadFingerprint, utcnow
from storage.blobs import day_key
from storage.groups import CRASHES, MISSING, MOVE_LOCK, _uncount, retrying
from storage.search_index import FIELDS
from storage.sessions import _utc

ATTACHMENTS: Table = Attachment.__table__  # type: ignore[attr-defined]
FINGERPRINTS: Table = UploadFingerprint.__table__  # type: ignore[attr-defined]
SESSIONS: Table = GameSession.__table__  # type: ignore[attr-defined]


def old_crashes(engine: Engine, *, before: datetime, project_id: int | None = None, limit: int = 500) -> list[str]:
    """Ids of crashes received before ``before``, oldest first (ix_crashes_received_at)."""
    stmt = select(CRASHES.c.crash_id).where(*_old(CRASHES, CRASHES.c.received_at, before, project_id))
    with engine.connect() as conn:
        return list(conn.execute(stmt.order_by(CRASHES.c.received_at, CRASHES.c.crash_id).limit(limit)).scalars())


def delete_crash(engine: Engine, *, crash_id: str) -> list[str]:
    """Delete the crash's rows and count it out of its group. Returns the blob keys it had
    (minidump, annotations, event, processed report, attachments), to delete after the
    commit; [] when the crash is gone already. Retries deadlocks and SQLite's busy errors."""
    return retrying(f"deleting crash {crash_id}", lambda conn: _delete(conn, crash_id), engine)


def _delete(conn: Connection, crash_id: str) -> list[str]:
    crash = conn.execute(select(CRASHES).where(CRASHES.c.crash_id == crash_id).with_for_update()).first()
    if crash is None:
        return []
    if crash.group_id is not None:
        if conn.dialect.name == "postgresql":  # take turns with moves (storage/groups._assign)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key, :project)"),
                         {"key": MOVE_LOCK, "project": crash.project_id})
        _uncount(conn, crash.group_id, crash.build, crash.tester_id, crash.platform)
    attachments = list(conn.execute(select(ATTACHMENTS.c.blob_key).where(ATTACHMENTS.c.crash_id == crash_id)).scalars())
    for table in (ATTACHMENTS, MISSING, FINGERPRINTS, FIELDS):
        conn.execute(delete(table).where(table.c.crash_id == crash_id))
    conn.execute(delete(CRASHES).where(CRASHES.c.crash_id == crash_id))
    processed = day_key("processed", crash.received_at, f"{crash_id}.json")
    return [k for k in (crash.minidump_key, crash.annotations_key, crash.event_key, processed, *attachments) if k]


def _old(table: Table, column: Any, before: datetime, project_id: int | None) -> list[Any]:
    """The conditions of a row dated (column) before ``before``, of the project when given."""
    where = [column < _utc(before)]
    if project_id is not None:
        where.append(table.c.project_id == project_id)
    return where


def count_old(engine: Engine, *, before: datetime, project_id: int | None = None) -> tuple[int, int]:
    """(crashes, sessions) that a prune with this cutoff would delete."""
    counts = []
    with engine.connect() as conn:
        for table, column in ((CRASHES, CRASHES.c.received_at), (SESSIONS, SESSIONS.c.started)):
            where = _old(table, column, before, project_id)
            counts.append(int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()))
    return counts[0], counts[1]


def delete_sessions(engine: Engine, *, before: datetime, project_id: int | None = None, limit: int = 5000) -> int:
    """Delete up to limit sessions started before ``before``; returns how many went."""
    with engine.begin() as conn:
        ids = list(conn.execute(select(SESSIONS.c.session_id).where(*_old(SESSIONS, SESSIONS.c.started, before,
                                                                         project_id)).limit(limit)).scalars())
        if ids:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.session_id.in_(ids)))
    return len(ids)


DONE = (CrashStatus.processed.value, CrashStatus.failed.value)  # never a dump still waiting to be processed


def _raw_dump_left(before: datetime, project_id: int | None) -> list[Any]:
    return [*_old(CRASHES, CRASHES.c.received_at, before, project_id), CRASHES.c.minidump_key.is_not(None),
            CRASHES.c.status.in_(DONE)]


def old_raw_dumps(engine: Engine, *, before: datetime, project_id: int | None = None, limit: int = 500) -> list[str]:
    """Ids of crashes received before ``before`` that still have their raw dump and are done
    with processing (``processed`` or ``failed``), oldest first."""
    stmt = select(CRASHES.c.crash_id).where(*_raw_dump_left(before, project_id))
    with engine.connect() as conn:
        return list(conn.execute(stmt.order_by(CRASHES.c.received_at, CRASHES.c.crash_id).limit(limit)).scalars())


def count_raw_dumps(engine: Engine, *, before: datetime, project_id: int | None = None) -> int:
    """How many raw dumps a raw dump prune with this cutoff would delete."""
    with engine.connect() as conn:
        stmt = select(func.count()).select_from(CRASHES).where(*_raw_dump_left(before, project_id))
        return int(conn.execute(stmt).scalar_one())


def forget_raw_dump(engine: Engine, *, crash_id: str, days: float) -> str | None:
    """Take the raw dump off a crash done with processing: ``minidump_key`` None and
    ``processed["raw_dump"] = {"deleted_at", "after_days"}``. Returns the blob key to delete
    after the commit; None when the crash is gone, has no dump any more, or is being
    processed again (it is done with it later)."""
    return retrying(f"forgetting the raw dump of {crash_id}", lambda conn: _forget(conn, crash_id, days), engine)


def _forget(conn: Connection, crash_id: str, days: float) -> str | None:
    crash = conn.execute(select(CRASHES.c.minidump_key, CRASHES.c.status, CRASHES.c.processed)
                         .where(CRASHES.c.crash_id == crash_id).with_for_update()).first()
    if crash is None or crash.minidump_key is None or crash.status not in DONE:
        return None
    deleted = {"deleted_at": utcnow().isoformat(), "after_days": days}
    conn.execute(update(CRASHES).where(CRASHES.c.crash_id == crash_id)
                 .values(minidump_key=None, processed={**(crash.processed or {}), "raw_dump": deleted}))
    return str(crash.minidump_key)
