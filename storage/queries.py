"""Database queries. Every function takes keyword arguments only, and a Session or Engine."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence, TypeVar, overload

from sqlalchemy import Table, bindparam, delete, func, update
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from schemas.tables import (
    Attachment,
    Crash,
    CrashStatus,
    DiscardCount,
    Project,
    SymbolFile,
    UploadFingerprint,
    utcnow,
)
from storage.db import dialect_insert, insert_rows, polling_for_the_write_lock, rows_where_in, session, write_lock
from storage.group_commit import GroupCommitter, committer
from storage.search_index import reindex

T = TypeVar("T")
CRASHES: Table = Crash.__table__  # type: ignore[attr-defined]
ATTACHMENTS: Table = Attachment.__table__  # type: ignore[attr-defined]
FINGERPRINTS: Table = UploadFingerprint.__table__  # type: ignore[attr-defined]


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


# -- projects -------------------------------------------------------------------------------


def create_project(engine: Engine, *, name: str) -> Project:
    """Create a project with a fresh ingest key. Raises ValueError if the name is taken."""
    return insert_named(engine, Project(name=name, ingest_key=secrets.token_hex(16)), "project")


def insert_named(engine: Engine, row: T, what: str) -> T:
    """Insert row (a project, user or API token: its name is unique) and return it refreshed.
    Raises ValueError("<what> '<name>' already exists") when the name is taken."""
    with session(engine) as s:
        s.add(row)
        try:
            s.commit()
        except IntegrityError as exc:
            raise ValueError(f"{what} {row.name!r} already exists") from exc  # type: ignore[attr-defined]
        s.refresh(row)
        return row


def list_projects(engine: Engine) -> list[Project]:
    """All projects, oldest first."""
    with session(engine) as s:
        return list(s.exec(select(Project).order_by(col(Project.id))))


MAX_ID = 2**31 - 1  # ids are INTEGER columns: PostgreSQL's int4 ends here (SQLite's at 2**63 - 1)


def is_row_id(value: int) -> bool:
    """Whether value can be a row id. A larger one names no row, and asking for it is an
    error, not "nothing found": ``/api/groups/3000000000`` is PostgreSQL's "integer out of
    range", ``/api/groups/99999999999999999999`` SQLite's OverflowError."""
    return 0 <= value <= MAX_ID


def find_project(engine: Engine, *, ref: str) -> Project | None:
    """A project by numeric id (as Sentry DSNs name it) or by name."""
    with session(engine) as s:
        # isdigit() alone is true for "³" and other Unicode digits that int() refuses
        if ref.isascii() and ref.isdigit() and is_row_id(int(ref)):
            found = s.get(Project, int(ref))
            if found is not None:
                return found
        return s.exec(select(Project).where(Project.name == ref)).first()


def set_rate_limit(engine: Engine, *, ref: str, per_minute: int | None) -> Project | None:
    """Give project ref (id or name) its own reports-a-minute limit (0: none; None: the
    server's default). Returns the project, or None when there is no such project."""
    found = find_project(engine, ref=ref)
    if found is None:
        return None
    with session(engine) as s:
        project = s.get(Project, found.id)
        if project is None:  # deleted in between
            return None
        project.rate_limit_per_minute = per_minute
        s.add(project)
        s.commit()
        s.refresh(project)
        return project


def project_by_key(engine: Engine, *, ingest_key: str) -> Project | None:
    """The project owning ingest_key, or None."""
    with session(engine) as s:
        return s.exec(select(Project).where(Project.ingest_key == ingest_key)).first()


# -- crashes --------------------------------------------------------------------------------


def _values(table: Table, row: Any) -> dict[str, Any]:
    """The column values of a SQLModel object (a dict of crash_row: itself), without an
    autoincrement id it does not have yet."""
    if isinstance(row, dict):
        return row
    return {c.name: getattr(row, c.name) for c in table.columns
            if not (c.primary_key and getattr(row, c.name) is None)}


def _crash_defaults() -> tuple[dict[str, Any], dict[str, Callable[[], Any]], frozenset[str]]:
    """schemas/tables.Crash's column defaults: (constant ones, factories, required columns)."""
    constant: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    required = set()
    for column in CRASHES.columns:
        field = Crash.model_fields[column.name]
        if field.default_factory is not None:
            factories[column.name] = field.default_factory  # type: ignore[assignment]
        elif field.is_required() and not column.nullable:
            required.add(column.name)
        elif field.is_required():  # a nullable column without a default (processed_at ...)
            constant[column.name] = None
        else:
            constant[column.name] = field.default
    return constant, factories, frozenset(required)


_CRASH_DEFAULTS = _crash_defaults()


def crash_row(**values: Any) -> dict[str, Any]:
    """A new crash's column values for insert_crash: values over schemas/tables.Crash's
    defaults. Built without the ORM: a Crash(...) of SQLModel cost each upload about as much
    CPU as its SQL statements (bench/ingest.py). Raises TypeError for a column it does not
    know or a required one missing."""
    constant, factories, required = _CRASH_DEFAULTS
    unknown = values.keys() - constant.keys() - factories.keys() - required
    missing = required - values.keys()
    if unknown or missing:
        raise TypeError(f"crash_row: unknown columns {sorted(unknown)}, missing {sorted(missing)}")
    row = {**constant, **values}
    for name, factory in factories.items():
        if name not in row:
            row[name] = factory()
    return row


@dataclass(frozen=True)
class NewCrash:
    """What insert_crash stores: a crash's column values, its attachments and its dedupe
    fingerprint."""

    crash: dict[str, Any]
    attachments: Sequence[Attachment]
    fingerprint: str
    window: timedelta


def insert_crash(
    engine: Engine,
    *,
    crash: Crash | dict[str, Any],
    attachments: Sequence[Attachment],
    fingerprint: str,
    window: timedelta,
) -> tuple[str, bool]:
    """Insert a crash, its attachments and its dedupe fingerprint in one transaction.

    Returns (crash_id, True) when inserted, or (existing_crash_id, False) when another upload
    with the same fingerprint won within window (also when it won concurrently). Core
    statements, not an ORM session: this runs for every upload (bench/ingest.py). On SQLite
    the inserts of concurrent uploads share one transaction (storage/group_commit.py).
    """
    new = NewCrash(_values(CRASHES, crash), attachments, fingerprint, window)
    if engine.dialect.name != "sqlite":
        return _insert_alone(engine, new)
    batches: GroupCommitter[NewCrash, tuple[str, bool]] = committer(engine, "crashes", _insert_together)
    return batches.submit(new)


def _insert_together(conn: Connection, batch: Sequence[NewCrash]) -> list[tuple[str, bool]]:
    """Insert a batch in one transaction on conn (the group committer's) with a statement per
    table, not per crash; should that fail on a constraint (another process stored one of
    the fingerprints a moment ago), each one alone."""
    try:
        return polling_for_the_write_lock(conn, lambda: _insert_many(conn, batch))
    except IntegrityError:
        return [_insert_alone(conn.engine, new) for new in batch]


def _insert_many(conn: Connection, batch: Sequence[NewCrash]) -> list[tuple[str, bool]]:
    """What _insert does for one crash, for a batch: rows first (SQLite's write lock before
    any read), then one read of their fingerprints; a crash whose fingerprint is taken within
    its window (by an earlier crash or one earlier in the batch) is removed again."""
    insert_rows(conn, CRASHES, [new.crash for new in batch])
    attachments = [_values(ATTACHMENTS, a) for new in batch for a in new.attachments]
    if attachments:
        conn.execute(sa_insert(ATTACHMENTS), attachments)
    stored = {fingerprint: (str(crash_id), as_utc(created_at)) for fingerprint, crash_id, created_at in rows_where_in(
        conn, FINGERPRINTS, ("fingerprint", "crash_id", "created_at"), "fingerprint",
        list(dict.fromkeys(new.fingerprint for new in batch)))}
    answers: list[tuple[str, bool]] = []
    fresh: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []  # a fingerprint stored before the window: taken over
    taken: list[str] = []
    for new in batch:
        crash_id, now = new.crash["crash_id"], new.crash["received_at"]
        held = stored.get(new.fingerprint)
        if held is not None and held[1] >= now - new.window:
            answers.append((held[0], False))
            taken.append(crash_id)
            continue
        row = {"fingerprint": new.fingerprint, "crash_id": crash_id, "created_at": now}
        (stale if held is not None else fresh).append(row)  # held here: stored before this batch
        stored[new.fingerprint] = (crash_id, now)
        answers.append((crash_id, True))
    insert_rows(conn, FINGERPRINTS, fresh)
    for row in stale:  # an old retry window: take the fingerprint over
        conn.execute(update(FINGERPRINTS).where(FINGERPRINTS.c.fingerprint == row["fingerprint"])
                     .values(crash_id=row["crash_id"], created_at=row["created_at"]))
    if taken:
        conn.execute(delete(ATTACHMENTS).where(ATTACHMENTS.c.crash_id.in_(taken)))
        conn.execute(delete(CRASHES).where(CRASHES.c.crash_id.in_(taken)))
    return answers


def _insert_alone(engine: Engine, new: NewCrash) -> tuple[str, bool]:
    """One crash in its own transaction (PostgreSQL, and SQLite's fallback)."""
    try:
        with engine.begin() as conn:
            return _insert(conn, new)
    except IntegrityError:  # a concurrent upload with this fingerprint committed first
        return _winner(engine, new.fingerprint), False


def _insert(conn: Connection, new: NewCrash) -> tuple[str, bool]:
    """Insert new in conn's transaction: the crash row first (its first write, so SQLite takes
    the write lock before anything is read), then its attachments and fingerprint; when the
    fingerprint is another crash's within the window, remove them again and answer that one.
    Raises IntegrityError when a concurrent transaction took the fingerprint."""
    crash_id, now = new.crash["crash_id"], new.crash["received_at"]
    conn.execute(sa_insert(CRASHES), [new.crash])
    if new.attachments:  # the crash row first: attachments reference it
        conn.execute(sa_insert(ATTACHMENTS), [_values(ATTACHMENTS, a) for a in new.attachments])
    stale = conn.execute(sa_select(FINGERPRINTS.c.crash_id, FINGERPRINTS.c.created_at)
                         .where(FINGERPRINTS.c.fingerprint == new.fingerprint)).first()
    if stale is None:
        conn.execute(sa_insert(FINGERPRINTS).values(fingerprint=new.fingerprint, crash_id=crash_id,
                                                    created_at=now))
        return crash_id, True
    winner = str(stale.crash_id)
    if as_utc(stale.created_at) < now - new.window:  # an old retry window: take the fingerprint over,
        taken = conn.execute(update(FINGERPRINTS).where(  # but only if nobody else did
            FINGERPRINTS.c.fingerprint == new.fingerprint, FINGERPRINTS.c.crash_id == stale.crash_id)
            .values(crash_id=crash_id, created_at=now))
        if taken.rowcount == 1:
            return crash_id, True
        winner = conn.execute(sa_select(FINGERPRINTS.c.crash_id)
                              .where(FINGERPRINTS.c.fingerprint == new.fingerprint)).scalar_one()
    conn.execute(delete(ATTACHMENTS).where(ATTACHMENTS.c.crash_id == crash_id))
    conn.execute(delete(CRASHES).where(CRASHES.c.crash_id == crash_id))
    return winner, False


def _winner(engine: Engine, fingerprint: str) -> str:
    with engine.connect() as conn:
        winner = conn.execute(sa_select(FINGERPRINTS.c.crash_id).where(
            FINGERPRINTS.c.fingerprint == fingerprint)).scalar_one_or_none()
    if winner is None:  # pragma: no cover - the row we collided with cannot vanish
        raise RuntimeError(f"fingerprint {fingerprint} vanished")
    return str(winner)


def get_crash(engine: Engine, *, crash_id: str) -> Crash | None:
    """The crash, accepting Breakpad's ``bp-`` prefix."""
    crash_id = crash_id.removeprefix("bp-")
    with session(engine) as s:
        return s.get(Crash, crash_id)


_ATTACHMENTS_OF = sa_select(ATTACHMENTS).where(ATTACHMENTS.c.crash_id == bindparam("of_crash")).order_by(ATTACHMENTS.c.id)


def get_attachments(engine: Engine, *, crash_id: str) -> list[Attachment]:
    """Attachments of a crash, in upload order. A Core statement built once, not an ORM
    select: the worker asks for every crash, mostly to hear there is none, and the ORM's
    compile and load cost it about 1 ms a crash (a profile of workers/pipeline.py)."""
    with engine.connect() as conn:
        return [Attachment(**row._mapping) for row in conn.execute(_ATTACHMENTS_OF, {"of_crash": crash_id})]


def claim_crash(engine: Engine, *, crash_id: str) -> Crash | None:
    """Mark a crash `processing` and return it; None when it does not exist. Its
    ``updated_at`` starts the lease the sweeper waits out before calling the worker lost."""
    with session(engine) as s:
        crash = s.get(Crash, crash_id)
        if crash is None:
            return None
        crash.status = CrashStatus.processing.value
        crash.updated_at = utcnow()
        crash.retry_after = None
        s.add(crash)
        s.commit()
        return crash


def due_received_ids(engine: Engine, *, limit: int) -> list[str]:
    """Up to limit `received` crashes that are due (no retry waiting), oldest first: the
    database queue of the embedded default (workers/db_queue.py)."""
    now = utcnow()
    with engine.connect() as conn:
        return list(conn.execute(
            sa_select(CRASHES.c.crash_id)
            .where(CRASHES.c.status == CrashStatus.received.value,
                   (CRASHES.c.retry_after.is_(None)) | (CRASHES.c.retry_after <= now))
            .order_by(CRASHES.c.received_at).limit(limit)).scalars())


_TAKE = update(CRASHES).where(CRASHES.c.crash_id == bindparam("of_crash"),
                               CRASHES.c.status == CrashStatus.received.value).values(
    status=CrashStatus.processing.value, updated_at=bindparam("new_now", type_=CRASHES.c.updated_at.type),
    retry_after=None)  # built once: the database queue takes every crash with it


def take_received(engine: Engine, *, crash_id: str) -> bool:
    """Mark a `received` crash `processing`; False when it is not `received` (another worker
    took it). Starts its lease as claim_crash does."""
    with write_lock(engine), engine.begin() as conn:
        taken = conn.execute(_TAKE, {"of_crash": crash_id, "new_now": utcnow()})
        return bool(taken.rowcount == 1)


def requeue_crash(engine: Engine, *, crash_id: str) -> None:
    """Put a crash back to `received` for the database queue (processed or failed: processing
    again; one being processed is left alone; its failed attempts start again from 0)."""
    with write_lock(engine), engine.begin() as conn:
        conn.execute(update(CRASHES).where(CRASHES.c.crash_id == crash_id,
                                           CRASHES.c.status != CrashStatus.processing.value)
                     .values(status=CrashStatus.received.value, attempts=0, retry_after=None, updated_at=utcnow()))


_FINISH = update(CRASHES).where(CRASHES.c.crash_id == bindparam("of_crash")).values(
    status=bindparam("new_status"), processed=bindparam("new_processed", type_=CRASHES.c.processed.type),
    processing_error=bindparam("new_error"), processed_at=bindparam("new_now", type_=CRASHES.c.processed_at.type),
    updated_at=bindparam("new_now", type_=CRASHES.c.updated_at.type), attempts=0, retry_after=None)


def finish_crash(
    engine: Engine, *, crash_id: str, status: CrashStatus, processed: dict[str, Any], error: str | None
) -> None:
    """Store the processing result and final status of a crash (its failed attempts start
    again from 0), and its searchable fields."""
    now = utcnow()
    with engine.begin() as conn:  # Core and a statement built once: the ORM's bulk update cost each crash ~2 ms
        conn.execute(_FINISH, {"of_crash": crash_id, "new_status": status.value, "new_processed": processed,
                               "new_error": error, "new_now": now})
        reindex(conn, crash_id=crash_id)  # its searchable fields (docs/search.md)


def retry_or_fail(engine: Engine, *, crash_id: str, reason: str, max_attempts: int,
                  delay: Callable[[int], timedelta], updated_before: datetime | None = None) -> str | None:
    """Count a failed attempt of a `processing` crash (updated before updated_before, when
    given). Under max_attempts it goes back to `received` until now + delay(attempts); at
    max_attempts it is `failed`. reason (words) becomes its processing_error. Returns the new
    status, or None when the crash is not (or no longer) in that state."""
    now = utcnow()
    with session(engine) as s:
        stmt = select(Crash).where(Crash.crash_id == crash_id, Crash.status == CrashStatus.processing.value)
        if updated_before is not None:
            stmt = stmt.where(Crash.updated_at < updated_before)
        crash = s.exec(stmt.with_for_update()).first()
        if crash is None:
            return None
        crash.attempts += 1
        if crash.attempts >= max_attempts:
            crash.status, crash.retry_after, crash.processed_at = CrashStatus.failed.value, None, now
            crash.processing_error = f"{reason}; gave up after {crash.attempts} attempts"
        else:
            crash.status, crash.retry_after = CrashStatus.received.value, now + delay(crash.attempts)
            crash.processing_error = f"{reason}; attempt {crash.attempts} of {max_attempts}, retried later"
        crash.updated_at = now
        s.add(crash)
        s.commit()
        return crash.status


def stuck_crash_ids(engine: Engine, *, received_before: datetime, now: datetime, limit: int = 1000) -> list[str]:
    """Crashes to enqueue: `received` since before received_before (a lost enqueue), or
    waiting for a retry that is due at now."""
    with session(engine) as s:
        received = col(Crash.status) == CrashStatus.received.value
        stmt = (
            select(Crash.crash_id)
            .where(
                (received & col(Crash.retry_after).is_(None) & (col(Crash.updated_at) < received_before))
                | (received & (col(Crash.retry_after) <= now))
            )
            .order_by(col(Crash.received_at))
            .limit(limit)
        )
        return list(s.exec(stmt))


def lost_crash_ids(engine: Engine, *, processing_before: datetime, limit: int = 1000) -> list[str]:
    """Crashes `processing` since before processing_before: their worker is gone."""
    with session(engine) as s:
        stmt = (
            select(Crash.crash_id)
            .where(Crash.status == CrashStatus.processing.value, Crash.updated_at < processing_before)
            .order_by(col(Crash.received_at))
            .limit(limit)
        )
        return list(s.exec(stmt))


def requeue_failed(engine: Engine, *, limit: int | None = None) -> list[str]:
    """Put `failed` crashes back to `received` with no failed attempts (crashd reprocess
    --failed): the sweeper enqueues them should the caller's enqueue fail. Returns their ids."""
    now = utcnow()
    with session(engine) as s:
        stmt = select(Crash.crash_id).where(Crash.status == CrashStatus.failed.value).order_by(col(Crash.received_at))
        crash_ids = list(s.exec(stmt.limit(limit) if limit else stmt))
        for chunk in range(0, len(crash_ids), 500):
            s.execute(update(Crash).where(col(Crash.crash_id).in_(crash_ids[chunk:chunk + 500]))
                      .values(status=CrashStatus.received.value, attempts=0, retry_after=None, updated_at=now))
        s.commit()
        return crash_ids


def existing_crash_ids(engine: Engine, *, crash_ids: Sequence[str]) -> set[str]:
    """Those of crash_ids that have a crash row."""
    with session(engine) as s:
        stmt = select(Crash.crash_id).where(col(Crash.crash_id).in_(list(crash_ids)))
        return set(s.exec(stmt))


def count_by_status(engine: Engine) -> dict[str, int]:
    """How many crashes are in each status."""
    with session(engine) as s:
        rows = s.exec(select(Crash.status, func.count()).group_by(Crash.status))
        return {status: n for status, n in rows}


# -- discards -------------------------------------------------------------------------------


def count_discard(engine: Engine, *, reason: str) -> None:
    """Add one to today's counter for reason (an atomic upsert, safe across processes)."""
    table = DiscardCount.__table__  # type: ignore[attr-defined]
    stmt = dialect_insert(engine)(table).values(reason=reason, day=utcnow().strftime("%Y-%m-%d"), count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["reason", "day"], set_={"count": table.c["count"] + 1}
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def discard_counts(engine: Engine, *, day: str | None = None) -> dict[str, int]:
    """Rejections per reason, for one UTC day or (day=None) all time."""
    with session(engine) as s:
        stmt = select(DiscardCount.reason, func.sum(DiscardCount.count)).group_by(DiscardCount.reason)
        if day is not None:
            stmt = stmt.where(DiscardCount.day == day)
        return {reason: int(n) for reason, n in s.exec(stmt)}


# -- symbol files ---------------------------------------------------------------------------


def record_symbol_file(engine: Engine, *, row: SymbolFile) -> None:
    """Record a stored debug file. Rows of other content at the same path (the file it
    replaced) are deleted; the same content uploaded again keeps its first row."""
    table = SymbolFile.__table__  # type: ignore[attr-defined]
    values = row.model_dump(exclude={"id"})
    insert = dialect_insert(engine)(table).values(**values).on_conflict_do_nothing(
        index_elements=["path", "sha256"]
    )
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.path == row.path, table.c.sha256 != row.sha256))
        conn.execute(insert)


def symbol_files(engine: Engine, *, debug_file: str, debug_id: str, sha256: str | None = None) -> list[SymbolFile]:
    """Stored files of a module; debug_file ignores case, debug_id is compared upper case."""
    with session(engine) as s:
        stmt = select(SymbolFile).where(
            SymbolFile.debug_id == debug_id.upper(),
            func.lower(SymbolFile.debug_file) == debug_file.lower(),
        )
        if sha256 is not None:
            stmt = stmt.where(SymbolFile.sha256 == sha256.lower())
        return list(s.exec(stmt.order_by(col(SymbolFile.id))))
