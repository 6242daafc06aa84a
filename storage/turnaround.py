"""The times a ticket's turnaround is measured with (docs/triage.md, Turnaround), read in a
few queries for all tickets at once (never one query per ticket):

- opened: ``tickets.created_at``;
- resolved, verified: the ticket's latest ``resolved`` / ``verified`` event;
- deployed: the first deploy of its ``fixed_in`` version to ``staging`` (``releases``, same
  project); without one, the first session (``sessions.started``) or crash
  (``crashes.received_at``) seen from that build, whichever came first.

triage/turnaround.py makes the figures. Keyword-only functions taking an Engine.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection, Engine

from schemas.tables import Crash, GameSession, Release, utcnow
from storage.queries import as_utc
from storage.scope import ProjectScope, scoped
from storage.tickets import EVENTS, TICKETS, Restricted
from triage.turnaround import PRIORITIES, TicketTimes, summarize, summary_lines, ticket_row

RELEASES: Table = Release.__table__  # type: ignore[attr-defined]
SESSIONS: Table = GameSession.__table__  # type: ignore[attr-defined]
CRASHES: Table = Crash.__table__  # type: ignore[attr-defined]
STAGING = "staging"
CHUNK = 500  # ids or versions per IN list

Key = tuple[int, str]  # (project id, build)


def turnaround(engine: Engine, *, project_id: ProjectScope, since: datetime | None = None,
               show_restricted: Restricted = False, now: datetime | None = None,
               p1_due_hours: float = 72.0) -> dict[str, Any]:
    """``{"tickets": [...], "summary": {"P0": {...}, "P1": {...}}, "summary_text": [...]}`` of
    the P0/P1 tickets opened at or after since (all without), oldest first. Restricted
    tickets are counted and listed, titled "Restricted security report #N" unless
    show_restricted lets the caller see them."""
    now = now or utcnow()
    rows = [ticket_row(t, now, p1_due_hours)
            for t in ticket_times(engine, project_id=project_id, since=since, show_restricted=show_restricted)]
    summary = summarize(rows)
    return {"tickets": rows, "summary": summary, "summary_text": summary_lines(summary)}


def ticket_times(engine: Engine, *, project_id: ProjectScope, since: datetime | None = None,
                 show_restricted: Restricted = False) -> list[TicketTimes]:
    """Each P0/P1 ticket's opened, resolved, deployed and verified times, oldest first."""
    stmt = select(TICKETS).where(*scoped(TICKETS.c.project_id, project_id), TICKETS.c.priority.in_(PRIORITIES))
    if since is not None:
        stmt = stmt.where(TICKETS.c.created_at >= since)
    with engine.connect() as conn:
        tickets = list(conn.execute(stmt.order_by(TICKETS.c.created_at, TICKETS.c.id)))
        events = _latest_events(conn, [t.id for t in tickets])
        deploys = deploy_times(conn, {(t.project_id, t.fixed_in) for t in tickets if t.fixed_in})
    out = []
    for t in tickets:
        deployed = deploys.get((t.project_id, t.fixed_in)) if t.fixed_in else None
        out.append(TicketTimes(
            id=t.id, project_id=t.project_id, priority=t.priority, state=t.state, fixed_in=t.fixed_in,
            title=t.title if _may_see(t, show_restricted) else f"Restricted security report #{t.id}",
            restricted=t.restricted, opened_at=as_utc(t.created_at), due_at=as_utc(t.due_at),
            resolved_at=events.get((t.id, "resolved")), verified_at=events.get((t.id, "verified")),
            deployed_at=deployed[0] if deployed else None, deployed_by=deployed[1] if deployed else None))
    return out


def _may_see(ticket: Any, show: Restricted) -> bool:
    """Whether a caller who sees show restricted tickets may read this ticket's title."""
    if not ticket.restricted or show is True:
        return True
    return isinstance(show, frozenset) and ticket.project_id in show


def _latest_events(conn: Connection, ticket_ids: list[int]) -> dict[tuple[int, str], datetime]:
    """(ticket id, action) -> when its latest resolved / verified event happened."""
    out: dict[tuple[int, str], datetime] = {}
    for start in range(0, len(ticket_ids), CHUNK):
        chunk = ticket_ids[start:start + CHUNK]
        for ticket_id, action, at in conn.execute(  # not max(): SQLite's is text
                select(EVENTS.c.ticket_id, EVENTS.c.action, EVENTS.c.at)
                .where(EVENTS.c.ticket_id.in_(chunk), EVENTS.c.action.in_(("resolved", "verified")))):
            at = as_utc(at)
            out[ticket_id, action] = max(out.get((ticket_id, action), at), at)
    return out


def deploy_times(conn: Connection, wanted: Iterable[Key]) -> dict[Key, tuple[datetime, str]]:
    """(project id, build) -> (when it reached staging, how we know: ``release``,
    ``first_session`` or ``first_crash``), for the builds of wanted that got there."""
    wanted = set(wanted)
    projects = sorted({p for p, _ in wanted})
    versions = sorted({v for _, v in wanted})
    released = _first(conn, RELEASES.c.deployed_at, RELEASES, projects, versions, RELEASES.c.version,
                      RELEASES.c.environment == STAGING)
    played = _first(conn, SESSIONS.c.started, SESSIONS, projects, versions, SESSIONS.c.build)
    crashed = _first(conn, CRASHES.c.received_at, CRASHES, projects, versions, CRASHES.c.build)
    out: dict[Key, tuple[datetime, str]] = {}
    for key in wanted:
        if key in released:
            out[key] = (released[key], "release")
        elif key in played or key in crashed:
            seen = [(played[key], "first_session")] if key in played else []
            seen += [(crashed[key], "first_crash")] if key in crashed else []
            out[key] = min(seen)
    return out


def _first(conn: Connection, at: Any, table: Table, projects: Sequence[int], versions: Sequence[str],
           build: Any, *where: Any) -> dict[Key, datetime]:
    """(project id, build) -> the earliest ``at`` of table's rows of those projects and builds."""
    out: dict[Key, datetime] = {}
    for start in range(0, len(versions), CHUNK):
        stmt = (select(table.c.project_id, build, func.min(at))
                .where(table.c.project_id.in_(projects), build.in_(versions[start:start + CHUNK]), *where)
                .group_by(table.c.project_id, build))
        for project_id, version, first in conn.execute(stmt):
            out[project_id, version] = as_utc(first)
    return out


def staging_releases(engine: Engine, *, project_id: int) -> list[str]:
    """The project's versions deployed to staging, in the order of their first deploy."""
    stmt = (select(RELEASES.c.version).where(RELEASES.c.project_id == project_id, RELEASES.c.environment == STAGING)
            .order_by(RELEASES.c.deployed_at, RELEASES.c.id))
    with engine.connect() as conn:
        return list(dict.fromkeys(conn.execute(stmt).scalars()))
