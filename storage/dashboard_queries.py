"""Reads for the dashboard (issue 6): the crash groups table with sparklines, a group's page,
the triage board and the symbols page. Keyword-only functions taking an Engine first, like
storage/queries.py. They return plain dicts and lists with times as aware UTC datetimes;
server/api/ turns them into JSON and server/dashboard/ into HTML.

Shaped for 100,000 crashes in 2,000 groups on PostgreSQL (bench/dashboard.py): a page of
groups is picked from ``crash_groups`` and its counters first, then the sparklines of only
those ids come from one grouped query over ``crashes (group_id, received_at)``
(migration 0006). Nothing here scans every crash.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any, overload

from sqlalchemy import Table, and_, distinct, func, select
from sqlalchemy.engine import Connection, Engine

from schemas.tables import Project, SymbolFile, utcnow
from storage import trends
from storage.groups import BUILDS, CRASHES, GROUPS, MISSING, PLATFORMS, TESTERS
from storage.regroup import merged_signatures
from storage.scope import ProjectScope, scoped
from storage.tickets import EVENTS, TICKETS, Restricted, hidden_count, visible
from storage.triage_queries import ticket_notice
from triage.kinds import FEEDBACK, KINDS
from triage.rates import sort_builds
from triage.tickets.transitions import ACTIONS

PROJECTS: Table = Project.__table__  # type: ignore[attr-defined]
SYMBOL_FILES: Table = SymbolFile.__table__  # type: ignore[attr-defined]

TICKET_STATES = ("open", "resolved", "verified", "regressed", "wontfix", "duplicate")
STATUSES = TICKET_STATES + ("none",)  # "none": groups without a ticket
BUILD_COUNT = (select(func.count()).where(BUILDS.c.group_id == GROUPS.c.id)
               .correlate(GROUPS).scalar_subquery().label("build_count"))
SORTS: dict[str, Any] = {
    "last_seen": GROUPS.c.last_seen, "first_seen": GROUPS.c.first_seen, "crash_count": GROUPS.c.crash_count,
    "tester_count": GROUPS.c.tester_count, "build_count": BUILD_COUNT, "signature": GROUPS.c.signature,
}
SPREADING_WINDOW = timedelta(hours=48)
SPREADING_TESTERS = 2  # a new group hit by this many testers is spreading; fewer: new, one tester so far


@overload
def as_utc(value: datetime | str) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | str | None) -> datetime | None:
    """An aware UTC datetime from what a driver returns: PostgreSQL's aware values, SQLite's
    naive ones and, for aggregates such as max(), SQLite's text (``2026-11-25 14:00:00.000000``)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None:
        return None
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


# -- the groups table -----------------------------------------------------------------------


def _group_columns() -> list[Any]:
    return [GROUPS.c.id.label("group_id"), GROUPS.c.project_id, PROJECTS.c.name.label("project"),
            GROUPS.c.signature, GROUPS.c.signature_version, GROUPS.c.component, GROUPS.c.reason_text, GROUPS.c.kind,
            GROUPS.c.crash_count, GROUPS.c.tester_count, BUILD_COUNT, GROUPS.c.first_seen, GROUPS.c.last_seen,
            TICKETS.c.id.label("ticket_id"), TICKETS.c.state.label("ticket_status"),
            TICKETS.c.priority.label("ticket_priority")]


def _groups_from(build: str | None) -> Any:
    """crash_groups with its project and ticket; with build, joined to that build's counter
    (only groups seen in it, and their ``build_crash_count``)."""
    joined = GROUPS.join(PROJECTS, PROJECTS.c.id == GROUPS.c.project_id).outerjoin(
        TICKETS, TICKETS.c.group_id == GROUPS.c.id)
    if build is None:
        return joined
    return joined.join(BUILDS, and_(BUILDS.c.group_id == GROUPS.c.id, BUILDS.c.build == build))


def _group_filters(project_id: ProjectScope, component: str | None, platform: str | None, status: str | None,
                   since: datetime | None, kind: str | None = None) -> list[Any]:
    where: list[Any] = [GROUPS.c.crash_count > 0]  # an emptied group is no longer listed
    # Feedback groups count reports, not crashes: listed only when asked for (docs/feedback.md).
    where.append(GROUPS.c.kind == kind if kind is not None else GROUPS.c.kind != FEEDBACK)
    where.extend(scoped(GROUPS.c.project_id, project_id))  # one project, the caller's, or all
    if component is not None:
        where.append(GROUPS.c.component == component)
    if since is not None:
        where.append(GROUPS.c.last_seen >= as_utc(since))
    if platform is not None:
        where.append(select(PLATFORMS.c.group_id).where(PLATFORMS.c.group_id == GROUPS.c.id,
                                                        PLATFORMS.c.platform == platform).exists())
    if status == "none":
        where.append(TICKETS.c.id.is_(None))
    elif status is not None:
        where.append(TICKETS.c.state == status)
    return where


def list_groups_page(engine: Engine, *, project_id: ProjectScope = None, component: str | None = None,
                     build: str | None = None, platform: str | None = None, status: str | None = None,
                     since: datetime | None = None, sort: str = "last_seen", descending: bool = True,
                     limit: int = 50, offset: int = 0, days: int = 14, now: datetime | None = None,
                     kind: str | None = None, crashes: Any = None) -> dict[str, Any]:
    """One page of crash groups: ``{"groups": [...], "total": n}`` (total: every group the
    filters keep). Each group has group_id, project_id, project, signature, component,
    reason_text, kind, crash_count, tester_count, build_count, first_seen, last_seen, ticket_id,
    ticket_status, ticket_priority (None without a ticket), ``sparkline`` (crashes per UTC
    day, ``days`` of them, oldest first, ending today) and, with build, build_crash_count.

    status: a ticket state or ``none``; since: last seen at or after it; kind: the group's kind
    (triage/kinds.py); crashes: a subquery of group ids (storage/search.matching_groups), the
    groups with crashes a search matched. Ties sort by more crashes, then by id. Raises
    ValueError for an unknown sort, status or kind.
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    where = _group_filters(project_id, component, platform, status, since, kind)
    if crashes is not None:
        where.append(GROUPS.c.id.in_(crashes))
    columns = _group_columns() + ([BUILDS.c.crash_count.label("build_crash_count")] if build is not None else [])
    key = SORTS[sort]
    stmt = (select(*columns).select_from(_groups_from(build)).where(*where)
            .order_by(key.desc() if descending else key.asc(), GROUPS.c.crash_count.desc(), GROUPS.c.id)
            .limit(limit).offset(offset))
    with engine.connect() as conn:
        groups = [_group_row(r._mapping) for r in conn.execute(stmt)]
        total = conn.execute(select(func.count()).select_from(_groups_from(build)).where(*where)).scalar_one()
        lines = sparklines(conn, group_ids=[g["group_id"] for g in groups], days=days, now=now)
    for group in groups:
        group["sparkline"] = lines[group["group_id"]]
    return {"groups": groups, "total": int(total)}


def _group_row(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["first_seen"], out["last_seen"] = as_utc(out["first_seen"]), as_utc(out["last_seen"])
    return out


def _day(conn: Connection, column: Any) -> Any:
    """The UTC day of a timestamp column (PostgreSQL: a date; SQLite: 'YYYY-MM-DD' text of
    the stored UTC wall clock)."""
    if conn.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def sparklines(conn: Connection, *, group_ids: list[int], days: int = 14,
               now: datetime | None = None) -> dict[int, list[int]]:
    """Crashes per UTC day of each group, ``days`` values oldest first, the last one today
    (the day of now); one grouped query over the ids' crashes."""
    today = (as_utc(now) or utcnow()).date()
    first = today - timedelta(days=days - 1)
    lines = {group_id: [0] * days for group_id in group_ids}
    if not group_ids:
        return lines
    day = _day(conn, CRASHES.c.received_at)
    stmt = (select(CRASHES.c.group_id, day, func.count())
            .where(CRASHES.c.group_id.in_(group_ids),
                   CRASHES.c.received_at >= datetime.combine(first, time.min, tzinfo=timezone.utc))
            .group_by(CRASHES.c.group_id, day))
    for group_id, value, count in conn.execute(stmt):
        index = ((value if isinstance(value, date) else date.fromisoformat(value)) - first).days
        if 0 <= index < days:  # a crash received after now (a `now` in the past) is left out
            lines[group_id][index] += int(count)
    return lines


# -- one group ------------------------------------------------------------------------------


def group_page(engine: Engine, *, group_id: int, crash_limit: int = 50, days: int = 14,
               now: datetime | None = None) -> dict[str, Any] | None:
    """A group's page, or None when there is no such group: the fields of list_groups_page
    plus ``builds`` (version order: build, crashes, sessions, crash_rate (None without
    sessions), first_seen, last_seen), ``platforms`` ({platform: crashes}), ``testers``
    (most crashes first: tester_id, crashes, first_seen, last_seen), ``crashes`` (newest
    first, at most crash_limit: crash_id, build, tester_id, platform, status, received_at, kind,
    level),
    ``representative_crash_id`` (its latest crash), ``ticket`` (None, or ticket_page's
    dict), ``merged_into`` (the group a person merged this one into, else None) and
    ``merged_signatures`` (signatures merged into this group: storage/regroup.py)."""
    with engine.connect() as conn:
        row = conn.execute(select(*_group_columns()).select_from(_groups_from(None))
                           .where(GROUPS.c.id == group_id)).first()
        if row is None:
            return None
        group = _group_row(row._mapping)
        group["sparkline"] = sparklines(conn, group_ids=[group_id], days=days, now=now)[group_id]
        group["builds"] = _builds(conn, group_id, group["project_id"])
        group["platforms"] = {r.platform: r.crash_count for r in conn.execute(
            select(PLATFORMS.c.platform, PLATFORMS.c.crash_count).where(PLATFORMS.c.group_id == group_id))}
        group["testers"] = [{"tester_id": r.tester_id, "crashes": r.crash_count, "first_seen": as_utc(r.first_seen),
                             "last_seen": as_utc(r.last_seen)} for r in conn.execute(
            select(TESTERS).where(TESTERS.c.group_id == group_id)
            .order_by(TESTERS.c.crash_count.desc(), TESTERS.c.tester_id))]
        group["crashes"] = _crashes(conn, group_id, max(crash_limit, 1))
        group["representative_crash_id"] = group["crashes"][0]["crash_id"] if group["crashes"] else None
        group["crashes"] = group["crashes"][:crash_limit]
        group["ticket"] = ticket_page(conn, group_id=group_id)
        group["merged_into"] = conn.execute(select(GROUPS.c.merged_into).where(GROUPS.c.id == group_id)).scalar_one()
        group["merged_signatures"] = merged_signatures(conn, group_id=group_id)
    return group


def _builds(conn: Connection, group_id: int, project_id: int) -> list[dict[str, Any]]:
    """The group's crashes per build with the sessions of those builds and its rate in each;
    then the builds played since its first crash in which it never crashed (``crashes`` 0,
    ``crash_rate`` 0.0, no first_seen or last_seen; at most trends.MAX_ZERO_BUILDS, the newest):
    "0 in 300 sessions" is the fix build QA looks for. All in version order."""
    rows = {r.build: r for r in conn.execute(select(BUILDS).where(BUILDS.c.group_id == group_id))}
    if not rows:
        return []
    first_seen = {b: as_utc(r.first_seen) for b, r in rows.items()}
    quiet = trends.played_since(conn, project_id=project_id, since=min(first_seen.values()), exclude=rows)
    played = trends.sessions_per_build(conn, project_id=project_id, builds=[*rows, *quiet])
    out = []
    for b in sort_builds(sorted([*rows, *quiet]), {**quiet, **first_seen}):
        if b in quiet:
            out.append({"build": b, "crashes": 0, "sessions": played.get(b, 0), "crash_rate": 0.0,
                        "first_seen": None, "last_seen": None})
            continue
        out.append({"build": b, "crashes": rows[b].crash_count, "sessions": played.get(b, 0),
                    "crash_rate": rows[b].crash_count / played[b] if played.get(b) else None,
                    "first_seen": first_seen[b], "last_seen": as_utc(rows[b].last_seen)})
    return out


def _crashes(conn: Connection, group_id: int, limit: int) -> list[dict[str, Any]]:
    stmt = (select(CRASHES.c.crash_id, CRASHES.c.build, CRASHES.c.tester_id, CRASHES.c.platform, CRASHES.c.status,
                   CRASHES.c.received_at, CRASHES.c.kind, CRASHES.c.level).where(CRASHES.c.group_id == group_id)
            .order_by(CRASHES.c.received_at.desc(), CRASHES.c.crash_id.desc()).limit(limit))
    return [{**r._mapping, "received_at": as_utc(r.received_at)} for r in conn.execute(stmt)]


def ticket_page(conn: Connection, *, group_id: int) -> dict[str, Any] | None:
    """The group's ticket with its history (oldest event first) and the manual ``actions``
    that apply in its state (triage.tickets.transitions.ACTIONS), or None without a ticket."""
    row = conn.execute(select(TICKETS).where(TICKETS.c.group_id == group_id)).first()
    if row is None:
        return None
    ticket = _ticket(row._mapping)
    ticket["actions"] = [name for name, (states, _, _) in ACTIONS.items() if ticket["status"] in states]
    ticket["history"] = [{"id": e.id, "at": as_utc(e.at), "actor": e.actor, "action": e.action,
                          "details": e.details or {}} for e in conn.execute(
        select(EVENTS).where(EVENTS.c.ticket_id == row.id).order_by(EVENTS.c.at, EVENTS.c.id))]
    return ticket


def _ticket(row: Any) -> dict[str, Any]:
    """A tickets row as the dashboard shows it: ``ticket_id`` and ``status`` (its state)."""
    out = {k: row[k] for k in TICKETS.c.keys() if k not in ("id", "state")}
    out.update(ticket_id=row["id"], status=row["state"])
    for key in ("due_at", "created_at", "updated_at"):
        out[key] = as_utc(out[key])
    return out


# -- the triage board -----------------------------------------------------------------------


def _tickets(conn: Connection, project_id: ProjectScope, states: tuple[str, ...], order: Any,
             show_restricted: Restricted = False) -> list[dict[str, Any]]:
    """Tickets in states with their group's signature, component and counts (a security
    report's ticket has no group: its title stands for its signature)."""
    stmt = (select(TICKETS, GROUPS.c.signature, GROUPS.c.component, GROUPS.c.tester_count, GROUPS.c.crash_count)
            .join(GROUPS, GROUPS.c.id == TICKETS.c.group_id, isouter=True)
            .where(TICKETS.c.state.in_(states), TICKETS.c.priority.in_(("P0", "P1")), visible(show_restricted),
                   TICKETS.c.merged_into.is_(None), *scoped(TICKETS.c.project_id, project_id)).order_by(*order))
    return [{**_ticket(r._mapping), "signature": r.signature or r.title, "component": r.component,
             "tester_count": r.tester_count or 0, "crash_count": r.crash_count or 0, "notice": ticket_notice(r._mapping)}
            for r in conn.execute(stmt)]


def triage_board(engine: Engine, *, project_id: ProjectScope = None, now: datetime | None = None,
                 limit: int = 50, show_restricted: Restricted = False) -> dict[str, Any]:
    """What the triage meeting looks at:

    - ``open_tickets`` and ``regressions``: as active_tickets (the daily report lists the same);
    - ``spreading``: groups first seen within the last 48 hours, most testers first;
    - ``regressions``: regressed tickets; ``awaiting_verification``: resolved tickets, newest
      first.

    Security reports' restricted tickets only as show_restricted allows; ``restricted_hidden``
    counts the others (shown as "N restricted items").

    workers.triage_report.triage_board adds the verification numbers and the daily report.
    """
    now = as_utc(now) or utcnow()
    lists = active_tickets(engine, project_id=project_id, now=now, show_restricted=show_restricted)
    with engine.connect() as conn:
        awaiting = _tickets(conn, project_id, ("resolved",), (TICKETS.c.updated_at.desc(), TICKETS.c.id),
                            show_restricted)
        spreading = _spreading(conn, project_id, now, limit)
    return {"now": now, **lists, "spreading": spreading,
            "awaiting_verification": awaiting,
            "restricted_hidden": hidden_count(engine, project_id=project_id, show=show_restricted)}


def active_tickets(engine: Engine, *, project_id: ProjectScope, now: datetime,
                   show_restricted: Restricted = False) -> dict[str, list[dict[str, Any]]]:
    """The tickets the triage meeting must act on, for the board and the daily report alike
    (workers/triage_report.build_report: the two never disagree): ``open_tickets``, P0/P1
    tickets open or regressed (a regressed P0 is open again), not merged into another,
    soonest due first, each with ``seconds_left`` (negative when overdue) and ``overdue``;
    ``regressions``, the regressed ones among them."""
    with engine.connect() as conn:
        active = _tickets(conn, project_id, ("open", "regressed"), (TICKETS.c.due_at, TICKETS.c.id), show_restricted)
    for ticket in active:
        ticket["seconds_left"] = (ticket["due_at"] - now).total_seconds()
        ticket["overdue"] = ticket["seconds_left"] < 0
    return {"open_tickets": active, "regressions": [t for t in active if t["status"] == "regressed"]}


def _spreading(conn: Connection, project_id: ProjectScope, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Groups first seen in SPREADING_WINDOW, most testers first (then crashes, then id), each
    with ``spreading``: hit by at least SPREADING_TESTERS testers (a one-tester group is new but
    not spreading yet: it is listed after them, marked so)."""
    stmt = (select(*_group_columns()).select_from(_groups_from(None))
            .where(*_group_filters(project_id, None, None, None, None), GROUPS.c.first_seen >= now - SPREADING_WINDOW)
            .order_by(GROUPS.c.tester_count.desc(), GROUPS.c.crash_count.desc(), GROUPS.c.id).limit(limit))
    rows = [_group_row(r._mapping) for r in conn.execute(stmt)]
    return [{**row, "spreading": (row["tester_count"] or 0) >= SPREADING_TESTERS} for row in rows]


# -- symbols --------------------------------------------------------------------------------


def symbols_page(engine: Engine, *, project_id: ProjectScope = None, limit: int = 200) -> dict[str, Any]:
    """``files``: uploaded debug files, newest first (debug_file, debug_id, code_file,
    code_id, os, cpu, format (``breakpad`` for a .sym, else ``native``), size, sha256,
    uploaded_at, project_id, project); ``missing``: modules whose symbols crashes lacked,
    the most crashes they would fix first (debug_file, debug_id, code_file (when a symbol
    file names it), crashes, groups, last_seen, uploaded: symbols for it have arrived since)."""
    with engine.connect() as conn:
        files = _symbol_files(conn, project_id, limit)
        missing = _missing_symbols(conn, project_id, limit)
        known = _uploaded(conn, {m["debug_id"].upper() for m in missing})
    for module in missing:
        key = (module["debug_file"].lower(), module["debug_id"].upper())
        module["uploaded"] = key in known
        module["code_file"] = known.get(key)
    return {"files": files, "missing": missing}


def _symbol_files(conn: Connection, project_id: ProjectScope, limit: int) -> list[dict[str, Any]]:
    f = SYMBOL_FILES.c
    stmt = (select(f.debug_file, f.debug_id, f.code_file, f.code_id, f.os, f.cpu, f.size, f.sha256, f.path,
                   f.uploaded_at, f.project_id, PROJECTS.c.name.label("project"))
            .select_from(SYMBOL_FILES.outerjoin(PROJECTS, PROJECTS.c.id == f.project_id))
            .where(*scoped(f.project_id, project_id))  # a set of projects leaves the shared store out
            .order_by(f.uploaded_at.desc(), f.id.desc()).limit(limit))
    return [{**r._mapping, "uploaded_at": as_utc(r.uploaded_at),
             "format": "breakpad" if r.path.endswith(".sym") else "native"} for r in conn.execute(stmt)]


def _missing_symbols(conn: Connection, project_id: ProjectScope, limit: int) -> list[dict[str, Any]]:
    crashes, groups = func.count(distinct(MISSING.c.crash_id)), func.count(distinct(CRASHES.c.group_id))
    stmt = (select(MISSING.c.debug_file, MISSING.c.debug_id, crashes.label("crashes"), groups.label("groups"),
                   func.max(CRASHES.c.received_at).label("last_seen"))
            .join(CRASHES, CRASHES.c.crash_id == MISSING.c.crash_id).where(*scoped(CRASHES.c.project_id, project_id))
            .group_by(MISSING.c.debug_file, MISSING.c.debug_id)
            .order_by(crashes.desc(), groups.desc(), MISSING.c.debug_file, MISSING.c.debug_id).limit(limit))
    return [{"debug_file": r.debug_file, "debug_id": r.debug_id, "crashes": int(r.crashes), "groups": int(r.groups),
             "last_seen": as_utc(r.last_seen)} for r in conn.execute(stmt)]


def _uploaded(conn: Connection, debug_ids: set[str]) -> dict[tuple[str, str], str | None]:
    """(lower debug_file, debug_id) of stored symbol files among debug_ids -> their code_file."""
    if not debug_ids:
        return {}
    rows = conn.execute(select(SYMBOL_FILES.c.debug_file, SYMBOL_FILES.c.debug_id, SYMBOL_FILES.c.code_file)
                        .where(SYMBOL_FILES.c.debug_id.in_(sorted(debug_ids))))
    return {(r.debug_file.lower(), r.debug_id.upper()): r.code_file for r in rows}
