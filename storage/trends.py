"""Trends (issue 17, docs/rates.md): per build and UTC day, the sessions played and the crashes,
hangs and feedback reports received, with the rates made of them. The series behind
``GET /api/trends`` and the trend charts of the group and builds pages. Keyword-only functions,
SQLAlchemy core over schemas/tables, the same SQL on SQLite and PostgreSQL.

- Sessions count on the day they started (``sessions.started``), crashes and hangs on the day
  they were received (``crashes.received_at``: kind ``crash`` and kind ``hang``), feedback on
  the day it was received. A session, crash or report without a build counts under ``""``.
- ``session_hours`` adds up the sessions' ``duration``. Where only some sessions of a day report
  one (those still running have none), the others are taken to have lasted the mean of those
  that did; with none reported, the hours are unknown (None), never 0.
- A rate without its denominator (no sessions, unknown hours) is None, never 0.

Scanned rows are only those of the window: ``crashes (project_id, build, received_at)`` and
``crashes (group_id, received_at)`` (migration 0006) and ``sessions (started)`` serve them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import ColumnElement, Table, func, or_, select
from sqlalchemy.engine import Connection, Engine

from schemas.tables import Crash, CrashGroup, Feedback, GameSession, utcnow
from triage.kinds import CRASH, HANG
from triage.rates import sort_builds

SESSIONS: Table = GameSession.__table__  # type: ignore[attr-defined]
CRASHES: Table = Crash.__table__  # type: ignore[attr-defined]
GROUPS: Table = CrashGroup.__table__  # type: ignore[attr-defined]
FEEDBACK_ROWS: Table = Feedback.__table__  # type: ignore[attr-defined]

MAX_DAYS = 90
MAX_BUILDS = 8  # lines on a chart: the newest builds with data in the window
MAX_ZERO_BUILDS = 10  # builds a group never crashed in, listed on its page (newest first)

Key = tuple[str, date]  # (build, day)


@dataclass
class Played:
    """One build's sessions on one day: how many, how many reported a duration, their seconds."""

    sessions: int = 0
    timed: int = 0
    seconds: float = 0.0

    @property
    def hours(self) -> float | None:
        """Session-hours of the day, the untimed sessions at the timed ones' mean; None when
        no session reported a duration."""
        if not self.timed:
            return None
        return self.seconds / self.timed * self.sessions / 3600


def window(days: int, now: datetime | None = None) -> list[date]:
    """The ``days`` UTC days ending today (the day of now), oldest first."""
    today = (now or utcnow()).astimezone(timezone.utc).date()
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _day(conn: Connection, column: Any) -> Any:
    """The UTC day of a timestamp column: PostgreSQL's date of the UTC wall clock; SQLite
    stores that wall clock as text (``2026-11-25 14:00:00.000000``), whose date() is a string."""
    if conn.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _in_builds(column: Any, builds: list[str] | None) -> list[ColumnElement[bool]]:
    """WHERE clauses keeping a nullable build column to builds (``""``: none); none for None."""
    if builds is None:
        return []
    keep: ColumnElement[bool] = column.in_([b for b in builds if b])
    return [or_(keep, column.is_(None)) if "" in builds else keep]


def _sessions(conn: Connection, project_id: int, days: list[date], builds: list[str] | None) -> dict[Key, Played]:
    build, day = func.coalesce(SESSIONS.c.build, ""), _day(conn, SESSIONS.c.started)
    stmt = (select(build, day, func.count(), func.count(SESSIONS.c.duration), func.sum(SESSIONS.c.duration))
            .where(SESSIONS.c.project_id == project_id, SESSIONS.c.started >= _midnight(days[0]),
                   SESSIONS.c.started < _midnight(days[-1] + timedelta(days=1)),
                   *_in_builds(SESSIONS.c.build, builds))
            .group_by(build, day))
    return {(b, _as_date(d)): Played(int(n), int(timed), float(seconds or 0))
            for b, d, n, timed, seconds in conn.execute(stmt)}


def _events(conn: Connection, project_id: int, days: list[date], builds: list[str] | None,
            group_id: int | None) -> dict[tuple[str, date, str], int]:
    """Crashes and hangs per (build, day, kind): the group's, or all of the project's."""
    build, day = func.coalesce(CRASHES.c.build, ""), _day(conn, CRASHES.c.received_at)
    scope = CRASHES.c.project_id == project_id if group_id is None else CRASHES.c.group_id == group_id
    stmt = (select(build, day, CRASHES.c.kind, func.count())
            .where(scope, CRASHES.c.kind.in_((CRASH, HANG)), CRASHES.c.received_at >= _midnight(days[0]),
                   CRASHES.c.received_at < _midnight(days[-1] + timedelta(days=1)),
                   *_in_builds(CRASHES.c.build, builds))
            .group_by(build, day, CRASHES.c.kind))
    return {(b, _as_date(d), kind): int(n) for b, d, kind, n in conn.execute(stmt)}


def _feedback(conn: Connection, project_id: int, days: list[date], builds: list[str] | None,
              group_id: int | None) -> dict[Key, int]:
    """Feedback reports per (build, day): the project's, or with group_id those about the
    group's crashes (by crash id) and those counted in it (a feedback group)."""
    f = FEEDBACK_ROWS
    where: list[Any] = [f.c.project_id == project_id, f.c.received_at >= _midnight(days[0]),
                        f.c.received_at < _midnight(days[-1] + timedelta(days=1)), *_in_builds(f.c.build, builds)]
    if group_id is not None:
        about = select(CRASHES.c.crash_id).where(CRASHES.c.group_id == group_id).scalar_subquery()
        where.append(or_(f.c.group_id == group_id, f.c.crash_id.in_(about)))
    build, day = func.coalesce(f.c.build, ""), _day(conn, f.c.received_at)
    stmt = select(build, day, func.count()).where(*where).group_by(build, day)
    return {(b, _as_date(d)): int(n) for b, d, n in conn.execute(stmt)}


def newest_builds(first_day: dict[str, date], limit: int = MAX_BUILDS) -> list[str]:
    """The ``limit`` most recent builds, in version order: the latest to first have data in
    the window (builds there from its first day: the later in version order)."""
    first_seen = first_day_times(first_day)
    order = {build: i for i, build in enumerate(sort_builds(first_day, first_seen))}
    recent = sorted(first_day, key=lambda build: (first_day[build], order[build]))[-limit:] if limit else []
    return sort_builds(recent, first_seen)


def _rate(count: int, per: float | None, scale: float = 1.0) -> float | None:
    return count / per * scale if per else None


def point(day: date, played: Played, crashes: int, hangs: int, feedback: int) -> dict[str, Any]:
    """One day of one build's series (the JSON API's shape, docs/rates.md)."""
    hours = played.hours
    return {"day": day, "sessions": played.sessions, "session_hours": round(hours, 4) if hours is not None else None,
            "crashes": crashes, "crashes_per_session": _rate(crashes, played.sessions),
            "crashes_per_1k_session_hours": _rate(crashes, hours, 1000.0),
            "hangs": hangs, "hangs_per_session": _rate(hangs, played.sessions), "feedback": feedback}


def trends(engine: Engine, *, project_id: int, days: int = 30, group_id: int | None = None,
           builds: list[str] | None = None, now: datetime | None = None) -> dict[str, Any]:
    """``{"days": [date, ...], "builds": [{"build", "series": [point, ...]}]}``: ``days`` UTC
    days ending today, one point a day for each of builds (as given, in version order) or, by
    default, the MAX_BUILDS newest builds with a session, crash, hang or report in the window.
    With group_id, the crashes, hangs and feedback are that group's (it must be the project's:
    the caller checks)."""
    span = window(days, now)
    with engine.connect() as conn:
        played = _sessions(conn, project_id, span, builds)
        events = _events(conn, project_id, span, builds, group_id)
        reports = _feedback(conn, project_id, span, builds, group_id)
    first_day: dict[str, date] = {}
    for build, day in [*played, *reports, *((b, d) for b, d, _ in events)]:
        first_day[build] = min(first_day.get(build, day), day)
    if builds is None:
        chosen = newest_builds(first_day)
    else:
        chosen = sort_builds(dict.fromkeys(builds), first_day_times(first_day))
    return {"days": span, "builds": [{"build": build, "series": [
        point(day, played.get((build, day), Played()), events.get((build, day, CRASH), 0),
              events.get((build, day, HANG), 0), reports.get((build, day), 0)) for day in span]}
        for build in chosen]}


def first_day_times(first_day: dict[str, date]) -> dict[str, datetime]:
    """first_day as sort_builds' first_seen (midnight UTC)."""
    return {build: _midnight(day) for build, day in first_day.items()}


# -- the per-build table of a group page ----------------------------------------------------


def sessions_per_build(conn: Connection, *, project_id: int, builds: Iterable[str]) -> dict[str, int]:
    """All sessions of each of builds (``""``: sessions without a build); absent: none."""
    wanted = sorted(set(builds))
    if not wanted:
        return {}
    build = func.coalesce(SESSIONS.c.build, "")
    stmt = (select(build, func.count()).where(SESSIONS.c.project_id == project_id,
                                              *_in_builds(SESSIONS.c.build, wanted)).group_by(build))
    return {b: int(n) for b, n in conn.execute(stmt)}


def played_since(conn: Connection, *, project_id: int, since: datetime, exclude: Iterable[str],
                 limit: int = MAX_ZERO_BUILDS) -> dict[str, datetime]:
    """Builds with a session started at or after since, other than exclude: the ``limit``
    newest in version order, each with its first such session (an aware UTC datetime)."""
    build = func.coalesce(SESSIONS.c.build, "")
    stmt = (select(build, func.min(SESSIONS.c.started))
            .where(SESSIONS.c.project_id == project_id, SESSIONS.c.started >= since.astimezone(timezone.utc))
            .group_by(build))
    skip = set(exclude)
    first = {b: _aware(started) for b, started in conn.execute(stmt) if b not in skip}
    return {b: first[b] for b in sort_builds(first, first)[-limit:]} if limit else {}


def _aware(value: datetime | str) -> datetime:
    """An aware UTC datetime from an aggregate: SQLite's min() gives text back."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
