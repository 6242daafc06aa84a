"""Reads for triage: a group's numbers per rule window, tickets with their history, and what
the triage report, patch notes and progress log list. Keyword-only functions taking an
Engine, like storage/queries.py; storage/tickets.py does the writing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import Table, bindparam, distinct, func, select
from sqlalchemy.engine import Connection, Engine

from schemas.tables import Crash, Feedback, GroupTester, utcnow
from storage import sessions
from storage.groups import MISSING, MOVES, SYMBOL_FILES, stores_missing
from storage.queries import as_utc
from storage.scope import ProjectScope, scoped
from storage.tickets import EVENTS, GROUPS, TICKETS, Restricted, ticket_json, visible
from triage.kinds import FEEDBACK
from triage.thresholds import GroupStats, WindowStats

CRASHES: Table = Crash.__table__  # type: ignore[attr-defined]
FEEDBACK_ROWS: Table = Feedback.__table__  # type: ignore[attr-defined]
TESTERS: Table = GroupTester.__table__  # type: ignore[attr-defined]
CHUNK = 500  # group ids per IN list


def group_stats(engine: Engine, *, group_id: int, windows: dict[timedelta, bool],
                hang_windows: Iterable[tuple[timedelta, float]] = (), now: datetime | None = None) -> GroupStats | None:
    """The group's numbers over each window (window -> whether the testers' share is needed)
    and over each (window, min_hang_seconds) of hang_windows; None when the group does not exist."""
    return group_stats_many(engine, group_ids=[group_id], windows=windows, hang_windows=hang_windows,
                            now=now).get(group_id)


def group_stats_many(engine: Engine, *, group_ids: Sequence[int], windows: dict[timedelta, bool],
                     hang_windows: Iterable[tuple[timedelta, float]] = (),
                     now: datetime | None = None) -> dict[int, GroupStats]:
    """group_stats of many groups (the periodic evaluation) in a few queries per CHUNK groups:
    counts by GROUP BY group_id, and the share's session numbers, which belong to the project
    and build rather than the group, read once. Groups that do not exist are left out. A
    feedback group counts its feedback reports (docs/feedback.md) where others count crashes."""
    now = now or utcnow()
    numbers = _SessionNumbers(engine)
    long_hangs = sorted(set(hang_windows))
    out: dict[int, GroupStats] = {}
    for start in range(0, len(group_ids), CHUNK):
        chunk = list(group_ids[start:start + CHUNK])
        with engine.connect() as conn:
            groups = {r.id: r for r in conn.execute(
                select(GROUPS.c.id, GROUPS.c.project_id, GROUPS.c.component, GROUPS.c.kind)
                .where(GROUPS.c.id.in_(chunk)))}
            reports = [g for g, r in groups.items() if r.kind == FEEDBACK]
            counted = {window: {**_window_counts(conn, CRASHES, chunk, now - window),
                                **_window_counts(conn, FEEDBACK_ROWS, reports, now - window)} for window in windows}
            hangs = {(window, least): _window_counts(conn, CRASHES, chunk, now - window,
                                                     CRASHES.c.hang_seconds >= least)
                     for window, least in long_hangs}
        for group_id, group in groups.items():
            def stats(found: dict[int, tuple[int, int, dict[str, int]]], since: datetime, share: bool,
                      group_id: int = group_id, project_id: int = group.project_id) -> WindowStats:
                return _window_stats(numbers, project_id, since, share, *found.get(group_id, (0, 0, {})))
            out[group_id] = GroupStats(
                group.component, {window: stats(counted[window], now - window, share)
                                  for window, share in windows.items()}, group.kind,
                {key: stats(hangs[key], now - key[0], windows.get(key[0], False)) for key in long_hangs})
    return out


def _window_counts(conn: Connection, table: Table, group_ids: list[int], since: datetime,
                   *extra: Any) -> dict[int, tuple[int, int, dict[str, int]]]:
    """group id -> (distinct testers, rows, distinct testers per build) of its rows of table
    (crashes, or feedback reports) received since (and matching extra); groups without such
    a row are absent."""
    if not group_ids:
        return {}
    build = func.coalesce(table.c.build, "")
    where = (table.c.group_id.in_(group_ids), table.c.received_at >= since, *extra)
    out: dict[int, tuple[int, int, dict[str, int]]] = {g: (int(t), int(n), {}) for g, t, n in conn.execute(
        select(table.c.group_id, func.count(distinct(table.c.tester_id)), func.count())
        .where(*where).group_by(table.c.group_id))}
    for g, b, t in conn.execute(select(table.c.group_id, build, func.count(distinct(table.c.tester_id)))
                                .where(*where).group_by(table.c.group_id, build)):
        out[g][2][b] = int(t)
    return out


class _SessionNumbers:
    """Sessions per build and active testers per build of a project since a time, each read
    once (they are the same for every group of the project)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._played: dict[tuple[int, datetime], dict[str, int]] = {}
        self._active: dict[tuple[int, str, datetime], int] = {}

    def played(self, project_id: int, since: datetime) -> dict[str, int]:
        if (project_id, since) not in self._played:
            self._played[project_id, since] = sessions.sessions_per_build(self.engine, project_id=project_id,
                                                                          since=since)
        return self._played[project_id, since]

    def active(self, project_id: int, build: str, since: datetime) -> int:
        if (project_id, build, since) not in self._active:
            self._active[project_id, build, since] = sessions.active_testers(
                self.engine, project_id=project_id, build=build, since=since)
        return self._active[project_id, build, since]


def _window_stats(numbers: _SessionNumbers, project_id: int, since: datetime, share: bool, testers: int,
                  crashes: int, per_build: dict[str, int]) -> WindowStats:
    """Distinct testers, crashes and builds of the group's crashes received since; with share,
    the highest share of a build's active testers (storage/sessions.active_testers) that the
    group's testers on that build make, over builds that had sessions since then."""
    best, best_build = None, None
    if share and per_build:
        played = numbers.played(project_id, since)
        for name, hit in sorted(per_build.items()):
            if not played.get(name):
                continue  # no sessions: the share is unknown, not 100 %
            active = numbers.active(project_id, name, since)
            value = hit / active if active else None
            if value is not None and (best is None or value > best):
                best, best_build = value, name
    return WindowStats(testers, crashes, tuple(sorted(b for b in per_build if b)), best, best_build)


def active_group_ids(engine: Engine, *, since: datetime) -> list[int]:
    """Groups with a crash seen at or after since (what the periodic evaluation looks at)."""
    with engine.connect() as conn:
        return list(conn.execute(select(GROUPS.c.id).where(GROUPS.c.last_seen >= since, GROUPS.c.crash_count > 0)
                                 .order_by(GROUPS.c.id)).scalars())


def crash_builds_since(engine: Engine, *, group_id: int, since: datetime) -> dict[str, str]:
    """Builds of the group's crashes received after since -> the latest such crash id."""
    with engine.connect() as conn:
        rows = conn.execute(select(CRASHES.c.build, CRASHES.c.crash_id).where(
            CRASHES.c.group_id == group_id, CRASHES.c.received_at > since, CRASHES.c.build.is_not(None),
        ).order_by(CRASHES.c.received_at))
        return {r.build: r.crash_id for r in rows if r.build}


def group_testers(engine: Engine, *, group_id: int) -> list[dict[str, Any]]:
    """Testers who hit the group, most crashes first: tester_id, crash_count, last_seen."""
    with engine.connect() as conn:
        rows = conn.execute(select(TESTERS.c.tester_id, TESTERS.c.crash_count, TESTERS.c.last_seen)
                            .where(TESTERS.c.group_id == group_id)
                            .order_by(TESTERS.c.crash_count.desc(), TESTERS.c.tester_id))
        return [{**r._mapping, "last_seen": as_utc(r.last_seen)} for r in rows]


# -- tickets --------------------------------------------------------------------------------


def list_tickets(engine: Engine, *, project_id: ProjectScope = None, states: Iterable[str] | None = None,
                 priorities: Iterable[str] | None = None, fixed_in: str | None = None,
                 show_restricted: Restricted = False) -> list[dict[str, Any]]:
    """Tickets (JSON-ready, with the group's signature and component), most urgent first:
    P0 before P1, then by due time. Restricted tickets (security reports) only as
    show_restricted allows (storage/tickets.visible): none by default."""
    stmt = select(TICKETS, GROUPS.c.signature, GROUPS.c.component, GROUPS.c.crash_count,
                  GROUPS.c.tester_count, GROUPS.c.kind).join(GROUPS, GROUPS.c.id == TICKETS.c.group_id, isouter=True
                                                             ).where(visible(show_restricted))
    stmt = stmt.where(*scoped(TICKETS.c.project_id, project_id))  # one project, the caller's, or all
    if states is not None:
        stmt = stmt.where(TICKETS.c.state.in_(list(states)))
    if priorities is not None:
        stmt = stmt.where(TICKETS.c.priority.in_(list(priorities)))
    if fixed_in is not None:
        stmt = stmt.where(TICKETS.c.fixed_in == fixed_in)
    stmt = stmt.order_by(TICKETS.c.priority, TICKETS.c.due_at, TICKETS.c.id)
    with engine.connect() as conn:
        return [_ticket_row(r._mapping) for r in conn.execute(stmt)]


def _ticket_row(row: Any) -> dict[str, Any]:
    out = ticket_json(row)
    out.update(signature=row["signature"], component=row["component"], crash_count=row["crash_count"],
               tester_count=row["tester_count"], kind=row["kind"], notice=ticket_notice(row))
    return out


def ticket_notice(row: Any) -> str | None:
    """What the triage meeting must know about a ticket that no longer counts crashes: merged
    into another ticket, or its group has no crashes left (retention deleted them, or a
    regrouping moved most but not yet all of them). None for a ticket with crashes."""
    if row["merged_into"] is not None:
        return f"merged into ticket {row['merged_into']}: that ticket is this bug now"
    if row["group_id"] is not None and not row["crash_count"]:
        return "its group has no crashes left: nothing counts towards this ticket until one arrives"
    return None


def get_ticket(engine: Engine, *, ticket_id: int, show_restricted: Restricted = False) -> dict[str, Any] | None:
    """One ticket (as list_tickets) with ``history``: its events, oldest first. None when there
    is none, or it is restricted and show_restricted does not allow it."""
    stmt = select(TICKETS, GROUPS.c.signature, GROUPS.c.component, GROUPS.c.crash_count,
                  GROUPS.c.tester_count, GROUPS.c.kind).join(GROUPS, GROUPS.c.id == TICKETS.c.group_id, isouter=True
                                              ).where(TICKETS.c.id == ticket_id, visible(show_restricted))
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
        if row is None:
            return None
        ticket = _ticket_row(row._mapping)
        ticket["history"] = [_event_json(e._mapping) for e in conn.execute(
            select(EVENTS).where(EVENTS.c.ticket_id == ticket_id).order_by(EVENTS.c.at, EVENTS.c.id))]
    return ticket


def _event_json(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "at": as_utc(row["at"]).isoformat(), "actor": row["actor"],
            "action": row["action"], "details": row["details"] or {}}


_TICKET_OF_GROUP = select(TICKETS).where(TICKETS.c.group_id == bindparam("of_group"))  # asked twice a crash


def ticket_for_group(engine: Engine, *, group_id: int) -> dict[str, Any] | None:
    """The group's ticket row (JSON-ready), or None."""
    with engine.connect() as conn:
        row = conn.execute(_TICKET_OF_GROUP, {"of_group": group_id}).first()
        return None if row is None else ticket_json(row._mapping)


def opening_deferred(engine: Engine, *, group_id: int) -> str | None:
    """Why a ticketless group must not open a ticket now, or None (it may; a group with a
    ticket may always escalate). Two cases, both one bug on its way to one ticket:

    - reprocessing moved crashes of this group into a group with a live ticket: this group's
      crashes are that bug's (a crash processed without symbols that arrived a moment later
      moves on by itself, workers/pipeline.process_again);
    - a ticketed group of the project has crashes processed before symbols they lacked were
      stored: they are being reprocessed and may be on their way here. Waits seconds; the
      next crash or the periodic triage job opens the ticket once they have moved.
    """
    c, m, f, t = CRASHES, MISSING, SYMBOL_FILES, TICKETS
    with engine.connect() as conn:
        if conn.execute(select(t.c.id).where(t.c.group_id == group_id)).first() is not None:
            return None
        regrouped = conn.execute(select(t.c.id).join(MOVES, MOVES.c.to_group_id == t.c.group_id).where(
            MOVES.c.from_group_id == group_id, t.c.merged_into.is_(None)).limit(1)).scalar_one_or_none()
        if regrouped is not None:
            return f"its crashes were regrouped into the group of ticket {regrouped}"
        project_id = conn.execute(select(GROUPS.c.project_id).where(GROUPS.c.id == group_id)).scalar_one()
        pending = conn.execute(
            select(t.c.id).join(c, c.c.group_id == t.c.group_id).join(m, m.c.crash_id == c.c.crash_id)
            .join(f, stores_missing(c.c.project_id))
            .where(t.c.project_id == project_id, c.c.project_id == project_id, f.c.uploaded_at > c.c.processed_at)
            .limit(1)).scalar_one_or_none()
        if pending is not None:
            return f"ticket {pending}'s crashes are being reprocessed with symbols that just arrived"
    return None


def tickets_for_groups(engine: Engine, *, group_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """group id -> its ticket row (JSON-ready), for the groups that have one."""
    out: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for start in range(0, len(group_ids), CHUNK):
            chunk = list(group_ids[start:start + CHUNK])
            for row in conn.execute(select(TICKETS).where(TICKETS.c.group_id.in_(chunk))):
                out[row.group_id] = ticket_json(row._mapping)
    return out


def last_event_at(engine: Engine, *, ticket_id: int, action: str) -> datetime | None:
    """When the ticket last had an event of action (e.g. when it was resolved)."""
    with engine.connect() as conn:
        return as_utc(conn.execute(select(EVENTS.c.at).where(  # not max(): SQLite's is text
            EVENTS.c.ticket_id == ticket_id, EVENTS.c.action == action).order_by(EVENTS.c.at.desc()).limit(1))
            .scalar_one_or_none())


def events_since(engine: Engine, *, since: datetime, actions: Iterable[str],
                 project_id: ProjectScope = None, show_restricted: Restricted = False) -> list[dict[str, Any]]:
    """Events of those actions since a time, each with its ticket's id, title and priority
    (restricted tickets' only as show_restricted allows)."""
    stmt = (select(EVENTS, TICKETS.c.title, TICKETS.c.priority, TICKETS.c.state, TICKETS.c.fixed_in)
            .join(TICKETS, TICKETS.c.id == EVENTS.c.ticket_id)
            .where(EVENTS.c.at >= since, EVENTS.c.action.in_(list(actions)), *scoped(TICKETS.c.project_id, project_id),
                   visible(show_restricted))
            .order_by(EVENTS.c.at, EVENTS.c.id))
    with engine.connect() as conn:
        return [{**_event_json(r._mapping), "ticket_id": r.ticket_id, "title": r.title, "priority": r.priority,
                 "state": r.state, "fixed_in": r.fixed_in} for r in conn.execute(stmt)]


# -- the triage report ----------------------------------------------------------------------


def new_groups(engine: Engine, *, since: datetime, project_id: ProjectScope = None) -> list[dict[str, Any]]:
    """Groups first seen at or after since, most testers first."""
    stmt = select(GROUPS.c.id, GROUPS.c.signature, GROUPS.c.component, GROUPS.c.crash_count, GROUPS.c.tester_count,
                  GROUPS.c.first_seen).where(GROUPS.c.first_seen >= since, GROUPS.c.crash_count > 0,
                                             *scoped(GROUPS.c.project_id, project_id))
    stmt = stmt.order_by(GROUPS.c.tester_count.desc(), GROUPS.c.crash_count.desc(), GROUPS.c.id)
    with engine.connect() as conn:
        return [{**r._mapping, "first_seen": as_utc(r.first_seen).isoformat()}
                for r in conn.execute(stmt)]


def top_groups(engine: Engine, *, since: datetime, project_id: ProjectScope = None, limit: int = 10) -> list[dict[str, Any]]:
    """Groups by distinct testers among crashes received since (then crashes): group_id,
    signature, component, testers, crashes."""
    testers, crashes = func.count(distinct(CRASHES.c.tester_id)), func.count()
    stmt = (select(GROUPS.c.id.label("group_id"), GROUPS.c.signature, GROUPS.c.component,
                   testers.label("testers"), crashes.label("crashes"))
            .join(GROUPS, GROUPS.c.id == CRASHES.c.group_id).where(CRASHES.c.received_at >= since)
            .group_by(GROUPS.c.id, GROUPS.c.signature, GROUPS.c.component)
            .where(*scoped(GROUPS.c.project_id, project_id))
            .order_by(testers.desc(), crashes.desc(), GROUPS.c.id).limit(limit))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]
