"""Triage tickets in the database: one per crash group, changed only by conditional UPDATEs.

Concurrency: the unique constraint on ``tickets.group_id`` decides which of many workers
opens a group's ticket (INSERT ... ON CONFLICT DO NOTHING); every later change is one
``UPDATE ... WHERE <expected state> RETURNING`` so that of two racing changes exactly one
happens and writes its event. Each change writes its ``ticket_events`` row, and for the
events trackers hear about (NOTIFY_EVENTS) its outbox rows, in the same transaction.

The states and which change applies in which (the state machine) are
triage/tickets/transitions.py; this module applies them to the rows.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Union

from sqlalchemy import Table, case, func, literal, or_, select, true, update
from sqlalchemy.engine import Connection, Engine, Row

from schemas.settings import Settings
from schemas.tables import CrashGroup, SecurityReport, Ticket, TicketEvent, utcnow
from storage.db import dialect_insert
from storage.groups import _least, retrying
from storage.outbox import enqueue_notifications
from storage.queries import as_utc
from storage.scope import ProjectScope, scoped
from triage.thresholds import Firing
from triage.tickets.transitions import (
    ACTIVE,
    FIXED,
    NOTIFY_EVENTS,
    Change,
    TicketNotFound,
    TransitionError,
    check_action,
    due_at,
    title_of,
)

log = logging.getLogger(__name__)

TICKETS: Table = Ticket.__table__  # type: ignore[attr-defined]
EVENTS: Table = TicketEvent.__table__  # type: ignore[attr-defined]
GROUPS: Table = CrashGroup.__table__  # type: ignore[attr-defined]
REPORTS: Table = SecurityReport.__table__  # type: ignore[attr-defined]


def _due(settings: Settings, now: datetime, priority: Any) -> Any:
    """The due time of a ticket of priority (a value or the priority column)."""
    if isinstance(priority, str):
        return due_at(settings, now, priority)
    kind = TICKETS.c.due_at.type
    return case((priority == "P0", literal(due_at(settings, now, "P0"), kind)),
                else_=literal(due_at(settings, now, "P1"), kind))


def open_or_escalate(engine: Engine, *, settings: Settings, group_id: int, firing: Firing) -> Change | None:
    """Open the group's ticket for firing, or escalate its P1 ticket when firing is P0.

    Returns the change, or None when nothing changed (a ticket exists and is as urgent, or
    is resolved/closed). Exactly one ticket per group, one event per change, under any
    number of concurrent callers.
    """
    return retrying(f"ticket of group {group_id}", lambda conn: _open_or_escalate(conn, settings, group_id, firing),
                     engine)


def _open_or_escalate(conn: Connection, settings: Settings, group_id: int, firing: Firing) -> Change | None:
    group = conn.execute(select(GROUPS).where(GROUPS.c.id == group_id)).one()
    now, stats, priority = utcnow(), firing.stats, firing.rule.priority
    numbers = {"rule": firing.rule.name, "reason_text": firing.reason, "testers_at_firing": stats.testers,
               "crashes_at_firing": stats.crashes, "builds_at_firing": list(stats.builds)}
    stmt = dialect_insert(conn)(TICKETS).values(
        project_id=group.project_id, group_id=group_id, priority=priority, state="open",
        title=title_of(group.component, group.signature), due_at=_due(settings, now, priority),
        created_at=now, updated_at=now, **numbers,
    ).on_conflict_do_nothing(index_elements=["group_id"]).returning(*TICKETS.c)
    row = conn.execute(stmt).first()
    details = {**numbers, "priority": priority, "window": firing.rule.window_text}
    if row is not None:
        return _record(conn, settings, row, "opened", f"rule:{firing.rule.name}", details)
    if priority != "P0":
        return None
    row = conn.execute(update(TICKETS).where(
        TICKETS.c.group_id == group_id, TICKETS.c.priority == "P1", TICKETS.c.state.in_(ACTIVE),
    ).values(priority="P0", due_at=_least(conn, TICKETS.c.due_at, literal(_due(settings, now, "P0"), TICKETS.c.due_at.type)),
             updated_at=now, **numbers).returning(*TICKETS.c)).first()
    if row is None:
        return None
    return _record(conn, settings, row, "escalated", f"rule:{firing.rule.name}", {**details, "from": "P1"})


def carry(conn: Connection, settings: Settings, *, from_group: int, to_group: int, reason: str,
          actor: str) -> list[Change]:
    """The ticket of from_group follows its crashes to to_group (in conn's transaction; the
    caller holds storage/groups.lock_moves). to_group has no ticket: the same ticket (same id,
    same tracker issue) now points at it, event ``regrouped``. Both have one: the older ticket
    survives on to_group (the more urgent priority and the earlier due time of the two), event
    ``regrouped``; the other becomes ``duplicate`` of it, lets go of its group and names the
    survivor in merged_into, event ``duplicate`` (its tracker issue is closed with a link).
    Returns the changes ([] when from_group has no ticket)."""
    moving = conn.execute(select(TICKETS).where(TICKETS.c.group_id == from_group).with_for_update()).first()
    if moving is None:
        return []
    staying = conn.execute(select(TICKETS).where(TICKETS.c.group_id == to_group).with_for_update()).first()
    old, new = (conn.execute(select(GROUPS).where(GROUPS.c.id == g)).one() for g in (from_group, to_group))
    details: dict[str, Any] = {"reason": reason, "old_group_id": from_group, "new_group_id": to_group,
                               "old_signature": old.signature, "new_signature": new.signature}
    now = utcnow()
    values: dict[str, Any] = {"group_id": to_group, "title": title_of(new.component, new.signature), "updated_at": now}
    if staying is None:
        row = conn.execute(update(TICKETS).where(TICKETS.c.id == moving.id).values(**values)
                           .returning(*TICKETS.c)).one()
        return [_record(conn, settings, row, "regrouped", actor, details)]
    survivor, merged = sorted((moving, staying), key=lambda t: (as_utc(t.created_at), t.id))
    gone = conn.execute(update(TICKETS).where(TICKETS.c.id == merged.id).values(
        group_id=None, merged_into=survivor.id, state="duplicate", updated_at=now).returning(*TICKETS.c)).one()
    if "P0" in (survivor.priority, merged.priority) and survivor.priority != "P0":
        values.update(priority="P0")
        details["priority_from"] = survivor.priority
    if merged.state in ACTIVE:
        values["due_at"] = min(as_utc(survivor.due_at), as_utc(merged.due_at))
    kept = conn.execute(update(TICKETS).where(TICKETS.c.id == survivor.id).values(**values)
                        .returning(*TICKETS.c)).one()
    return [_record(conn, settings, kept, "regrouped", actor, {**details, "merged_ticket_id": merged.id}),
            _record(conn, settings, gone, "duplicate", actor, {
                "duplicate_of": survivor.id, "reason": reason, "from": merged.state,
                "old_group_id": merged.group_id, "new_group_id": to_group})]


def open_restricted(conn: Connection, settings: Settings, *, project_id: int, title: str, report_id: str) -> Change:
    """Open a security report's ticket (in conn's transaction): P0 at once, no threshold and no
    group, restricted (docs/security-reports.md). Its ``opened`` event is the timeline's
    ``received``; the SLA countdown is the P0 one."""
    now = utcnow()
    row = conn.execute(TICKETS.insert().values(
        project_id=project_id, group_id=None, restricted=True, priority="P0", state="open", title=title[:400],
        reason_text="security report received: restricted to the project's security grantees",
        rule="security-report", due_at=_due(settings, now, "P0"), created_at=now, updated_at=now,
        builds_at_firing=[]).returning(*TICKETS.c)).one()
    conn.execute(update(REPORTS).where(REPORTS.c.id == report_id).values(ticket_id=row.id))
    return _record(conn, settings, row, "opened", "system:security-report", {"report_id": report_id, "step": "received"})


def mark_regressed(engine: Engine, *, settings: Settings, ticket_id: int, details: dict[str, Any]) -> Change | None:
    """Reopen a resolved or verified ticket as ``regressed`` (a new due time from now);
    None when it is in another state by now."""
    def work(conn: Connection) -> Change | None:
        now = utcnow()
        row = conn.execute(update(TICKETS).where(TICKETS.c.id == ticket_id, TICKETS.c.state.in_(FIXED)).values(
            state="regressed", due_at=_due(settings, now, TICKETS.c.priority), updated_at=now,
        ).returning(*TICKETS.c)).first()
        return None if row is None else _record(conn, settings, row, "regressed", "system:regression", details)
    return retrying(f"regression of ticket {ticket_id}", work, engine)


def verify_by_numbers(engine: Engine, *, settings: Settings, ticket_id: int, fixed_in: str,
                      details: dict[str, Any]) -> Change | None:
    """Mark a resolved ticket verified by the rate test in details; None when it is no
    longer resolved in fixed_in (resolved again meanwhile, verified by hand ...)."""
    def work(conn: Connection) -> Change | None:
        row = conn.execute(update(TICKETS).where(
            TICKETS.c.id == ticket_id, TICKETS.c.state == "resolved", TICKETS.c.fixed_in == fixed_in,
        ).values(state="verified", updated_at=utcnow()).returning(*TICKETS.c)).first()
        return None if row is None else _record(conn, settings, row, "verified", "system:verification", details)
    return retrying(f"verification of ticket {ticket_id}", work, engine)


def apply_action(engine: Engine, *, settings: Settings, ticket_id: int, action: str, actor: str,
                 fixed_in: str | None = None, note: str | None = None, duplicate_of: int | None = None,
                 extra: dict[str, Any] | None = None) -> Change:
    """A change by hand (ACTIONS): resolve (needs fixed_in), verify, reject (back to open,
    fixed_in cleared, same due time), reopen (fixed_in cleared, a new due time), wontfix,
    duplicate (of another ticket). extra: more details for the event (a release's resolve
    names its commit and release, docs/releases.md).

    Raises TicketNotFound, or TransitionError when the action does not apply now.
    """
    allowed, target, event = check_action(action, ticket_id=ticket_id, fixed_in=fixed_in, duplicate_of=duplicate_of)
    now = utcnow()
    values: dict[str, Any] = {"state": target, "updated_at": now}
    if action == "resolve":
        assert fixed_in is not None  # check_action refuses resolve without fixed_in
        values["fixed_in"] = fixed_in.strip()[:200]
    elif action in ("reject", "reopen"):
        values["fixed_in"] = None  # the event keeps it as previous_fixed_in
    if action == "reopen":
        values["due_at"] = _due(settings, now, TICKETS.c.priority)
    details = {k: v for k, v in {**(extra or {}), "note": note, "fixed_in": values.get("fixed_in"),
                                 "duplicate_of": duplicate_of}.items() if v is not None}

    def work(conn: Connection) -> Change:
        before = conn.execute(select(TICKETS.c.state, TICKETS.c.fixed_in, TICKETS.c.project_id, TICKETS.c.merged_into)
                              .where(TICKETS.c.id == ticket_id)).first()
        if before is None:
            raise TicketNotFound(f"no ticket {ticket_id}")
        if before.merged_into is not None:
            raise TransitionError(f"ticket {ticket_id} was merged into ticket {before.merged_into}: "
                                  f"that ticket is this bug now, change it instead")
        if action == "duplicate" and conn.execute(select(TICKETS.c.id).where(
                TICKETS.c.id == duplicate_of, TICKETS.c.project_id == before.project_id)).first() is None:
            raise TransitionError(f"no ticket {duplicate_of} in this ticket's project to be a duplicate of")
        row = conn.execute(update(TICKETS).where(TICKETS.c.id == ticket_id, TICKETS.c.state.in_(allowed))
                           .values(**values).returning(*TICKETS.c)).first()
        if row is None:
            raise TransitionError(f"ticket {ticket_id} is {before.state}: {action} applies only to a ticket "
                                  f"that is {' or '.join(allowed)}")
        return _record(conn, settings, row, event, actor,
                       {**details, "from": before.state, "previous_fixed_in": before.fixed_in})
    return retrying(f"{action} of ticket {ticket_id}", work, engine)


def _record(conn: Connection, settings: Settings, ticket: Row, action: str, actor: str,
            details: dict[str, Any]) -> Change:
    """Write the event of a change and, for NOTIFY_EVENTS, its outbox rows (same transaction)."""
    details = {k: v for k, v in details.items() if v is not None}
    conn.execute(EVENTS.insert().values(ticket_id=ticket.id, at=utcnow(), actor=actor, action=action,
                                        details=details))
    sent = 0
    if action in NOTIFY_EVENTS:
        # A ticket merged into another holds no group any more: its message shows the last one it
        # had. A security report's ticket never had one; its report goes to the security webhook only.
        group_id = ticket.group_id if ticket.group_id is not None else details.get("old_group_id")
        group = conn.execute(select(GROUPS).where(GROUPS.c.id == group_id)).first() if group_id else None
        payload = {"ticket": ticket_json(ticket._mapping), "group": group_json(group._mapping) if group else {},
                   "details": {**details, "action": action, "actor": actor}}
        if ticket.restricted:
            report = conn.execute(select(REPORTS).where(REPORTS.c.ticket_id == ticket.id)).first()
            payload["report"] = {k: _jsonable(v) for k, v in report._mapping.items()} if report else {}
        sent = enqueue_notifications(conn, settings=settings, ticket_id=ticket.id, event=action, payload=payload,
                                     restricted=bool(ticket.restricted))
    log.info("ticket %s %s by %s", ticket.id, action, actor)
    return Change(ticket.id, action, sent)


Restricted = Union[bool, frozenset[int]]  # which restricted tickets a caller sees: all, none, those projects


def visible(show: Restricted) -> Any:
    """The SQL condition of the tickets a caller who sees ``show`` restricted tickets may see
    (True: every one; False: none; a set: those of these projects)."""
    if show is True:
        return true()
    if show is False or not show:
        return TICKETS.c.restricted.is_(False)
    return or_(TICKETS.c.restricted.is_(False), TICKETS.c.project_id.in_(sorted(show)))


def hidden_count(engine: Engine, *, project_id: ProjectScope, show: Restricted) -> int:
    """How many restricted tickets of the projects in scope the caller does not see (shown as
    "N restricted items")."""
    stmt = select(func.count()).select_from(TICKETS).where(TICKETS.c.restricted.is_(True), ~visible(show),
                                                           *scoped(TICKETS.c.project_id, project_id))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _jsonable(value: Any) -> Any:
    return as_utc(value).isoformat() if isinstance(value, datetime) else value


def ticket_json(row: Any) -> dict[str, Any]:
    """A tickets row as JSON-ready values (times as ISO 8601 UTC)."""
    return {key: _jsonable(row[key]) for key in TICKETS.c.keys()}


def group_json(row: Any) -> dict[str, Any]:
    """The crash_groups fields a tracker message shows."""
    keys = ("id", "project_id", "signature", "component", "reason_text", "crash_count", "tester_count",
            "first_seen", "last_seen")
    return {key: _jsonable(row[key]) for key in keys}
