"""Tester feedback in the database (docs/feedback.md). A report is a ``feedback`` row, never a
crash, counted in its feedback group: a crash_groups row of kind ``feedback`` whose signature
triage/feedback.feedback_signature gives (one group per category; nar_output one per
normalized line). The group counts reports in crash_count, distinct testers in tester_count
(group_testers) and reports per build (group_builds), so threshold rules, tickets and
notifications work on it as on a crash group. The row and its counts are one transaction.

A report names the crash it is about by crash_id, or by the Sentry event id of that crash
(``sentry.event_id`` among the crash's annotations), which may arrive after the report: the
tie by event id is made when reading (feedback_for_crash, feedback_for_group).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.engine import Connection, Engine

from schemas.tables import Feedback, utcnow
from storage.groups import CRASHES, REDIRECTS, Grouping, _count, _count_in, lock_moves, retrying
from storage.queries import as_utc
from storage.scope import ProjectScope, scoped
from triage.feedback import TEXT_KEYED, feedback_signature, text_key
from triage.kinds import FEEDBACK

FEEDBACK_ROWS: Table = Feedback.__table__  # type: ignore[attr-defined]
REASON_CHARS = 200  # of the latest message kept as the group's reason_text
EVENT_ID = CRASHES.c.annotations["sentry.event_id"].as_string()
FIELDS = ("id", "project_id", "group_id", "category", "message", "text_key", "tester_id", "build", "platform",
          "crash_id", "event_id", "url", "source", "received_at", "attachments")


def normal_event_id(value: str | None) -> str | None:
    """A Sentry event id as 32 lower-case hex digits (SDKs send it with or without dashes);
    other text as sent, cut to 64 characters; None for nothing."""
    if not value or not value.strip():
        return None
    try:
        return uuid.UUID(value.strip()).hex
    except ValueError:
        return value.strip()[:64]


def _event_id_matches(event_id: Any) -> Any:
    """SQL: the crash's Sentry event id (annotation ``sentry.event_id``) is event_id."""
    return func.replace(func.lower(EVENT_ID), "-", "") == event_id


def find_crash(engine: Engine, *, project_id: int, crash_id: str | None = None,
               event_id: str | None = None) -> dict[str, Any] | None:
    """The project's crash with crash_id (``bp-`` prefix accepted), else the one whose Sentry
    event id is event_id (normal_event_id form): ``{crash_id, build, tester_id, platform}``;
    None when the project has no such crash."""
    c = CRASHES
    if crash_id is not None:
        which = c.c.crash_id == crash_id.strip().removeprefix("bp-")[:36]
    elif event_id is not None:
        which = _event_id_matches(event_id)
    else:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(c.c.crash_id, c.c.build, c.c.tester_id, c.c.platform)
                           .where(c.c.project_id == project_id, which).order_by(c.c.received_at).limit(1)).first()
    return dict(row._mapping) if row is not None else None


def store_feedback(engine: Engine, *, project_id: int, category: str, message: str, source: str,
                   tester_id: str | None = None, build: str | None = None, platform: str | None = None,
                   crash_id: str | None = None, event_id: str | None = None, url: str | None = None,
                   attachments: list[dict[str, Any]] | None = None, feedback_id: str | None = None,
                   received_at: datetime | None = None) -> Feedback:
    """Insert the report and count it in its feedback group, in one transaction (retried on
    deadlocks and SQLite's busy errors). Returns the stored row (group_id set)."""
    row = Feedback(id=feedback_id or str(uuid.uuid4()), project_id=project_id, category=category,
                   message=message, text_key=text_key(message) if category == TEXT_KEYED else None,
                   tester_id=tester_id or None, build=build or None, platform=platform or None,
                   crash_id=crash_id, event_id=normal_event_id(event_id), url=url or None, source=source,
                   received_at=received_at or utcnow(), attachments=attachments or [])
    grouping = Grouping(crash_id=row.id, project_id=project_id, signature=feedback_signature(category, message),
                        signature_version=FEEDBACK, component=category, reason_text=message[:REASON_CHARS],
                        platform=row.platform, seen_at=row.received_at, kind=FEEDBACK)

    def work(conn: Connection) -> int:
        lock_moves(conn, project_id, shared=True)  # a merge recounting the group waits for us
        stored = conn.execute(select(FEEDBACK_ROWS.c.group_id).where(FEEDBACK_ROWS.c.id == row.id)).first()
        if stored is not None:  # a retry of a report with its own id (a Sentry feedback event): once
            return int(stored.group_id)
        redirected = conn.execute(select(REDIRECTS.c.group_id).where(
            REDIRECTS.c.project_id == project_id, REDIRECTS.c.signature == grouping.signature)).scalar_one_or_none()
        if redirected is None:
            group_id = _count(conn, grouping, row.build, row.tester_id)
        else:  # a person merged this feedback group into another
            group_id = _count_in(conn, redirected, grouping, row.build, row.tester_id)
        conn.execute(FEEDBACK_ROWS.insert().values(**row.model_dump(exclude={"group_id"}), group_id=group_id))
        return group_id

    row.group_id = retrying(f"feedback {row.id}", work, engine)
    return row


def _document(mapping: Any) -> dict[str, Any]:
    """A feedback row as the JSON API shows it (received_at in UTC, ISO 8601)."""
    document = {name: mapping[name] for name in FIELDS}
    document["received_at"] = as_utc(document["received_at"]).isoformat()
    document["attachments"] = [{k: a.get(k) for k in ("name", "filename", "content_type", "size")}
                               for a in document["attachments"] or []]
    return document


def list_feedback(engine: Engine, *, project_id: ProjectScope = None, category: str | None = None,
                  build: str | None = None, tester_id: str | None = None, group_id: int | None = None,
                  crash_id: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Reports, newest first, that every given filter keeps: ``{"feedback": [...], "total": n}``.
    crash_id keeps the reports about that crash (by crash id or by its Sentry event id)."""
    f = FEEDBACK_ROWS
    where: list[Any] = scoped(f.c.project_id, project_id)  # one project, the caller's, or all
    for column, value in ((f.c.category, category), (f.c.build, build),
                          (f.c.tester_id, tester_id), (f.c.group_id, group_id)):
        if value is not None:
            where.append(column == value)
    with engine.connect() as conn:
        if crash_id is not None:
            where.append(_about_crash(conn, crash_id))
        rows = conn.execute(select(f).where(*where).order_by(f.c.received_at.desc(), f.c.id)
                            .limit(limit).offset(offset))
        documents = [_document(r._mapping) for r in rows]
        total = conn.execute(select(func.count()).select_from(f).where(*where)).scalar_one()
    return {"feedback": documents, "total": int(total)}


def _about_crash(conn: Connection, crash_id: str) -> Any:
    """SQL: the report is about crash_id, by crash id or by the crash's Sentry event id."""
    f = FEEDBACK_ROWS
    crash_id = crash_id.removeprefix("bp-")
    found = conn.execute(select(CRASHES.c.project_id, EVENT_ID.label("event_id"))
                         .where(CRASHES.c.crash_id == crash_id)).first()
    event_id = normal_event_id(found.event_id) if found is not None else None
    if found is None or event_id is None:
        return f.c.crash_id == crash_id
    return or_(f.c.crash_id == crash_id,
               and_(f.c.crash_id.is_(None), f.c.project_id == found.project_id, f.c.event_id == event_id))


def feedback_for_crash(engine: Engine, *, crash_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The reports about the crash, newest first."""
    return list_feedback(engine, crash_id=crash_id, limit=limit)["feedback"]


def feedback_for_group(engine: Engine, *, group_id: int, limit: int = 100) -> dict[str, Any]:
    """The reports about the crash group's crashes (by crash id, or by event id for reports that
    arrived before their crash), newest first: ``{"feedback": [...], "testers": n}`` (testers:
    distinct testers among every such report, not only the listed ones)."""
    f, c = FEEDBACK_ROWS, CRASHES
    by_id = select(f.c.id).join(c, c.c.crash_id == f.c.crash_id).where(c.c.group_id == group_id)
    by_event = (select(f.c.id).join(c, and_(c.c.project_id == f.c.project_id, _event_id_matches(f.c.event_id)))
                .where(c.c.group_id == group_id, f.c.crash_id.is_(None), f.c.event_id.is_not(None)))
    mine = f.c.id.in_(by_id.union(by_event).scalar_subquery())
    with engine.connect() as conn:
        rows = conn.execute(select(f).where(mine).order_by(f.c.received_at.desc(), f.c.id).limit(limit))
        documents = [_document(r._mapping) for r in rows]
        testers = conn.execute(select(func.count(func.distinct(f.c.tester_id))).where(mine)).scalar_one()
    return {"feedback": documents, "testers": int(testers)}


def get_feedback(engine: Engine, *, feedback_id: str) -> Feedback | None:
    """One report with its attachments' blob keys, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(FEEDBACK_ROWS).where(FEEDBACK_ROWS.c.id == feedback_id)).first()
    return Feedback.model_validate(dict(row._mapping)) if row is not None else None
