"""Security reports in the database (docs/security-reports.md): a tester's report of a
vulnerability, its restricted P0 ticket, and the disclosure timeline on that ticket.

The timeline is the ticket's events: ``opened`` (received) and then the steps people record,
each with its time and actor: acknowledged, confirmed or report_rejected, fixed (the build),
tester_told, disclosed. Only the security webhook hears the steps; the other backends hear at
most that a restricted report was received (storage/outbox.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from schemas.settings import Settings
from schemas.tables import utcnow
from storage.groups import retrying
from storage.queries import as_utc
from storage.tickets import EVENTS, REPORTS, TICKETS, _record, open_restricted
from triage.tickets.transitions import Change, TicketNotFound, TransitionError

# step -> (states it applies to, the state it leads to (None: unchanged), the event's name)
STEPS: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "acknowledged": (("open", "regressed"), None, "acknowledged"),
    "confirmed": (("open", "regressed"), None, "confirmed"),
    "rejected": (("open", "regressed"), "wontfix", "report_rejected"),
    "fixed": (("open", "regressed"), "resolved", "fixed"),
    "tester_told": (("open", "regressed", "resolved", "verified", "wontfix"), None, "tester_told"),
    "disclosed": (("resolved", "verified", "wontfix"), None, "disclosed"),
}
TIMELINE = ("opened", *(event for _, _, event in STEPS.values()))
RECEIPT = ("Thank you: security report {id} was received. It is visible only to the studio's security "
           "team, who will contact you through the test's usual channel. Please do not share it elsewhere.")


def store_report(engine: Engine, settings: Settings, *, project_id: int, summary: str, details: str,
                 tester_id: str | None, build: str | None, source: str,
                 attachments: list[dict[str, Any]] | None = None, report_id: str | None = None) -> tuple[str, Change]:
    """Store the report and open its restricted P0 ticket in one transaction; returns the
    report's id and the ticket's change (to notify)."""
    report_id = report_id or str(uuid.uuid4())

    def work(conn: Connection) -> Change:
        conn.execute(REPORTS.insert().values(
            id=report_id, project_id=project_id, summary=summary[:500], details=details, tester_id=tester_id,
            build=build, source=source, received_at=utcnow(), attachments=attachments or []))
        return open_restricted(conn, settings, project_id=project_id, title=f"Security: {summary}",
                               report_id=report_id)
    return report_id, retrying(f"security report {report_id}", work, engine)


def record_step(engine: Engine, settings: Settings, *, ticket_id: int, step: str, actor: str,
                build: str | None = None, note: str | None = None) -> Change:
    """Record a disclosure step on a security report's ticket. Raises TicketNotFound (also for
    a ticket that is not a security report's) or TransitionError (unknown step, a step that
    does not apply in the ticket's state, ``fixed`` without the build)."""
    if step not in STEPS:
        raise TransitionError(f"unknown step {step!r}; one of {', '.join(STEPS)}")
    allowed, target, event = STEPS[step]
    if step == "fixed" and not (build and build.strip()):
        raise TransitionError("fixed needs build: the build that has the fix")

    def work(conn: Connection) -> Change:
        before = conn.execute(select(TICKETS.c.state, TICKETS.c.restricted).where(TICKETS.c.id == ticket_id)).first()
        if before is None or not before.restricted:
            raise TicketNotFound(f"no security report ticket {ticket_id}")
        values: dict[str, Any] = {"updated_at": utcnow()}
        if target:
            values["state"] = target
        if step == "fixed":
            values["fixed_in"] = (build or "").strip()[:200]
        row = conn.execute(update(TICKETS).where(TICKETS.c.id == ticket_id, TICKETS.c.state.in_(allowed))
                           .values(**values).returning(*TICKETS.c)).first()
        if row is None:
            raise TransitionError(f"ticket {ticket_id} is {before.state}: {step} applies only to a ticket that is "
                                  f"{' or '.join(allowed)}")
        details = {"step": step, "from": before.state, "fixed_in": values.get("fixed_in"),
                   "note": note[:2000] if note else None}
        return _record(conn, settings, row, event, actor, details)
    return retrying(f"{step} of ticket {ticket_id}", work, engine)


def report_of(engine: Engine, *, ticket_id: int) -> dict[str, Any] | None:
    """The security report of a restricted ticket, with its ``timeline`` (oldest first)."""
    with engine.connect() as conn:
        row = conn.execute(select(REPORTS).where(REPORTS.c.ticket_id == ticket_id)).first()
        if row is None:
            return None
        report = {k: (as_utc(v).isoformat() if k == "received_at" else v) for k, v in row._mapping.items()}
        report["timeline"] = [
            {"step": "received" if e.action == "opened" else (e.details or {}).get("step", e.action),
             "at": as_utc(e.at).isoformat(), "actor": e.actor, **{k: v for k, v in (e.details or {}).items()
                                                                   if k in ("fixed_in", "note")}}
            for e in conn.execute(select(EVENTS).where(EVENTS.c.ticket_id == ticket_id, EVENTS.c.action.in_(TIMELINE))
                                  .order_by(EVENTS.c.at, EVENTS.c.id))]
        return report

