"""The notification outbox: ticket events are written with the ticket change, sent later.
Its SQL lives here, in storage/; the backends it sends to are triage/tickets/.

``enqueue_notifications`` adds one ``notifications`` row per configured backend in the
caller's transaction, so a ticket change and its notifications commit (or roll back)
together. ``deliver_due`` (the queue job ``notify``, and the sweeper's tick as a safety net)
sends the due rows:

- sent: ``status='sent'``; a tracker's issue key/URL is kept in the row's payload
  (``payload["delivery"]``) and on the ticket when it has none yet;
- TemporaryError: ``attempts += 1``, retried after ``10 s * 2**(attempts-1)`` (at most 1 h, at
  least the server's Retry-After); never dropped;
- PermanentError: ``status='failed'`` with ``last_error``, kept for an admin.

Order: per ticket and backend, a row waits while an earlier row of the same ticket and
backend is still pending, so a tracker sees `opened` (which creates the issue) before the
comments that need its key. Backends do not wait for each other. A `duplicate` row also waits
while the surviving ticket (``details["duplicate_of"]``) has a pending `opened` row for the same
backend, so that its issue exists and can be linked; a survivor whose `opened` failed, or was
never written for that backend, holds nothing up: the duplicate then names the crashd ticket.

Claiming: PostgreSQL ``FOR UPDATE SKIP LOCKED``, the row lock held until the outcome is
written, so concurrent workers never send one row twice. SQLite has no row locks and one
writer at a time; a short transaction moves ``next_attempt_at`` a lease ahead (the claim),
and the HTTP requests run with no transaction open.
Delivery is at least once: when a process dies between the tracker's answer and the commit,
the row is sent again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Select, Table, exists, insert, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping

from schemas.settings import Settings
from schemas.tables import CrashGroup, Notification, Ticket, utcnow
from triage.tickets.backends import configured_backends
from triage.tickets.base import EVENTS, SECURITY_EVENTS, Delivery, PermanentError, TemporaryError, TicketBackend

log = logging.getLogger(__name__)

NOTIFICATIONS: Table = Notification.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
TICKETS: Table = Ticket.__table__  # type: ignore[attr-defined]
BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_MAX = timedelta(hours=1)
RETRY_AFTER_MAX = timedelta(hours=24)  # a Retry-After beyond this is taken as garbage
SQLITE_LEASE = timedelta(minutes=10)  # far above the few requests x CRASHD_NOTIFY_TIMEOUT_SECONDS of one send
ERROR_MAX = 2000


def payload_for(ticket: Ticket, group: CrashGroup, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``{"ticket", "group", "details"}`` payload of a ticket and its group, JSON-ready."""
    return {"ticket": ticket.model_dump(mode="json"), "group": group.model_dump(mode="json"),
            "details": _jsonable(details or {})}


def enqueue_notifications(conn: Connection, *, settings: Settings, ticket_id: int, event: str,
                          payload: dict[str, Any], restricted: bool = False) -> int:
    """Add one pending notification per configured backend, in conn's transaction (commit is the
    caller's). payload is ``{"ticket", "group", "details"}`` (and ``report`` for a security
    report); datetimes become ISO strings. Returns the rows added (0 when no backend is
    configured). Raises ValueError for an unknown event. With a Session, pass
    ``session.connection()``.

    A restricted ticket (a security report, docs/security-reports.md): the security webhook
    gets every event with the report; the other backends get its ``opened`` only, as
    ``minimal`` (its id, priority, state and "Restricted security report #N", no details, no
    report), or with CRASHD_SECURITY_NOTIFY=none nothing. The security webhook hears of no
    other ticket.
    """
    if event not in EVENTS and event not in SECURITY_EVENTS:
        raise ValueError(f"unknown ticket event {event!r}; expected one of {', '.join(EVENTS + SECURITY_EVENTS)}")
    body = _jsonable({"ticket": {**(payload.get("ticket") or {}), "id": ticket_id},
                      "group": payload.get("group") or {}, "details": payload.get("details") or {},
                      **({"report": payload["report"]} if payload.get("report") else {})})
    rows: list[dict[str, Any]] = []
    for backend in configured_backends(settings):
        if backend.restricted_only and not restricted:
            continue
        sent = body
        if restricted and not backend.restricted_only:
            if settings.security_notify == "none" or event != "opened":  # at most: "report #N received"
                continue
            sent = {"ticket": restricted_stub(body["ticket"]), "group": {}, "details": {}}
        rows.append({"ticket_id": ticket_id, "event": event, "backend": backend.name, "payload": sent})
    if not rows:
        return 0
    now = utcnow()
    conn.execute(insert(NOTIFICATIONS), [{**row, "status": "pending", "attempts": 0, "next_attempt_at": now,
                                          "created_at": now} for row in rows])
    return len(rows)


def restricted_stub(ticket: dict[str, Any]) -> dict[str, Any]:
    """What a backend other than the security webhook learns of a restricted ticket."""
    return {"id": ticket["id"], "priority": ticket.get("priority"), "state": ticket.get("state"), "restricted": True,
            "title": f"Restricted security report #{ticket['id']}", "due_at": ticket.get("due_at")}


@dataclass
class DeliveryStats:
    """What one deliver_due call did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def retry_delay(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait after the attempts-th failed attempt: 10 s, 20 s, 40 s ... at most 1 h,
    and at least the server's Retry-After (itself capped at 24 h)."""
    backoff = min(BACKOFF_BASE * 2 ** max(0, min(attempts - 1, 20)), BACKOFF_MAX)
    if retry_after is not None:
        backoff = max(backoff, min(timedelta(seconds=retry_after), RETRY_AFTER_MAX))
    return backoff


def deliver_due(engine: Engine, settings: Settings, *, limit: int = 100, now: datetime | None = None) -> DeliveryStats:
    """Send up to limit due notifications, one at a time, and record each outcome.

    A failing tracker never raises out of here (its rows are retried or marked failed);
    database errors do. Rows of backends that are no longer configured stay pending.
    """
    now = (now or utcnow()).astimezone(timezone.utc)
    backends = {backend.name: backend for backend in configured_backends(settings)}
    stats = DeliveryStats()
    try:
        for _ in range(limit):
            if not backends or not _deliver_next(engine, backends, now, stats):
                break
    finally:
        for backend in backends.values():
            backend.close()
    if stats.sent or stats.retried or stats.failed:
        log.info("notifications: %d sent, %d to retry, %d failed", stats.sent, stats.retried, stats.failed)
    return stats


def _deliver_next(engine: Engine, backends: dict[str, TicketBackend], now: datetime, stats: DeliveryStats) -> bool:
    """Claim, send and record one notification; False when none is due."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            claim = _due_query(list(backends), now).with_for_update(skip_locked=True, of=NOTIFICATIONS)
            row = conn.execute(claim).mappings().first()
        else:
            row = _claim_sqlite(conn, list(backends), now)
        if row is None:
            return False
        backend = backends[row["backend"]]
        outcome = _send(backend, _notification(conn, row, backend))
        _record(conn, row, outcome, now, stats)
        conn.commit()
    return True


def _due_query(names: list[str], now: datetime) -> Select[Any]:
    """The oldest due pending row with no earlier pending row of its ticket and backend and, for a
    `duplicate`, no pending `opened` row of the surviving ticket for its backend."""
    n, earlier, opening = NOTIFICATIONS, NOTIFICATIONS.alias("earlier"), NOTIFICATIONS.alias("opening")
    waiting = exists().where(earlier.c.ticket_id == n.c.ticket_id, earlier.c.backend == n.c.backend,
                             earlier.c.status == "pending", earlier.c.id < n.c.id)
    survivor_unopened = exists().where(
        n.c.event == "duplicate", opening.c.ticket_id == n.c.payload[("details", "duplicate_of")].as_integer(),
        opening.c.backend == n.c.backend, opening.c.event == "opened", opening.c.status == "pending")
    return (select(n).where(n.c.status == "pending", n.c.next_attempt_at <= now, n.c.backend.in_(names), ~waiting,
                            ~survivor_unopened)
            .order_by(n.c.id).limit(1))


def _claim_sqlite(conn: Connection, names: list[str], now: datetime) -> RowMapping | None:
    """Take the next due row by moving its next_attempt_at a lease ahead, then commit: the
    HTTP requests that follow hold no SQLite write lock. Another process that took the row
    first makes the UPDATE match nothing; then the next row is tried."""
    n = NOTIFICATIONS
    for _ in range(10):
        row = conn.execute(_due_query(names, now)).mappings().first()
        if row is None:
            conn.rollback()
            return None
        taken = conn.execute(update(n).where(n.c.id == row["id"], n.c.status == "pending", n.c.next_attempt_at <= now)
                             .values(next_attempt_at=now + SQLITE_LEASE))
        conn.commit()
        if taken.rowcount == 1:
            return row
    return None


def _notification(conn: Connection, row: RowMapping, backend: TicketBackend) -> dict[str, Any]:
    """The dict handed to backend.send: the stored payload, with the ticket's external_key and
    external_url as they are now (for a tracker: the issue this tracker made for the ticket).
    A row whose details name ``duplicate_of`` also gets ``duplicate_of``: that ticket's id and
    its issue in this backend, found the same way (None and None while it has none)."""
    payload = row["payload"] or {}
    key, url = _issue_of(conn, row["ticket_id"], backend)
    ticket = {**(payload.get("ticket") or {}), "external_key": key, "external_url": url}
    details = payload.get("details") or {}
    notification = {"event": row["event"], "ticket": ticket, "group": payload.get("group") or {}, "details": details}
    if payload.get("report"):  # only the security webhook's rows carry a security report's text
        notification["report"] = payload["report"]
    target = details.get("duplicate_of")
    if isinstance(target, int):
        key, url = _issue_of(conn, target, backend)
        notification["duplicate_of"] = {"id": target, "external_key": key, "external_url": url}
    return notification


def _issue_of(conn: Connection, ticket_id: int, backend: TicketBackend) -> tuple[str | None, str | None]:
    """The ticket's issue for backend: a tracker's own issue (its sent rows, else the ticket's
    external_url when it is an issue of this tracker, linked by hand), for chats and webhooks the
    ticket's external_key/url. (None, None) when there is none, or no such ticket."""
    current = conn.execute(select(TICKETS.c.external_key, TICKETS.c.external_url)
                           .where(TICKETS.c.id == ticket_id)).first()
    key, url = (current.external_key, current.external_url) if current is not None else (None, None)
    if backend.needs_external_key:
        return _tracker_issue(conn, ticket_id, backend) or ((key, url) if backend.owns_url(url) else (None, None))
    return key, url


def _tracker_issue(conn: Connection, ticket_id: int, backend: TicketBackend) -> tuple[str, str | None] | None:
    """The issue key and URL this backend returned for the ticket's latest sent row, if any."""
    n = NOTIFICATIONS
    rows = conn.execute(select(n.c.payload).where(n.c.ticket_id == ticket_id, n.c.backend == backend.name,
                                                  n.c.status == "sent").order_by(n.c.id.desc())).all()
    for (payload,) in rows:  # .all(): an open SQLite read would make the later write fail
        delivery = (payload or {}).get("delivery") or {}
        if delivery.get("external_key"):
            return delivery["external_key"], delivery.get("external_url")
    return None


def _send(backend: TicketBackend, notification: dict[str, Any]) -> Delivery | TemporaryError | PermanentError:
    """backend.send, with its failure returned rather than raised. An unexpected exception (a
    bug in a backend, a surprising answer) counts as temporary: the row is kept and retried."""
    try:
        return backend.send(notification)
    except (TemporaryError, PermanentError) as exc:
        return exc
    except Exception as exc:
        log.exception("notification backend %s failed unexpectedly", backend.name)
        return TemporaryError(f"unexpected {type(exc).__name__}: {exc}")


def _record(conn: Connection, row: RowMapping, outcome: Delivery | Exception, now: datetime,
            stats: DeliveryStats) -> None:
    """Write the outcome of one send on its row (and the issue key on the ticket)."""
    n, attempts = NOTIFICATIONS, row["attempts"] + 1
    where = n.c.id == row["id"]
    if isinstance(outcome, Delivery):
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "attempts": attempts, "last_error": None}
        if outcome.external_key:
            values["payload"] = {**(row["payload"] or {}), "delivery": {
                "external_key": outcome.external_key, "external_url": outcome.external_url}}
            conn.execute(update(TICKETS).where(TICKETS.c.id == row["ticket_id"], TICKETS.c.external_key.is_(None))
                         .values(external_key=outcome.external_key, external_url=outcome.external_url))
        conn.execute(update(n).where(where).values(**values))
        stats.sent += 1
    elif isinstance(outcome, PermanentError):
        log.error("notification %s (%s, ticket %s) failed for good: %s", row["id"], row["backend"],
                  row["ticket_id"], outcome)
        conn.execute(update(n).where(where).values(status="failed", attempts=attempts,
                                                   last_error=str(outcome)[:ERROR_MAX]))
        stats.failed += 1
    else:
        retry_after = getattr(outcome, "retry_after", None)
        due = now + retry_delay(attempts, retry_after)
        log.warning("notification %s (%s, ticket %s) will be retried at %s: %s", row["id"], row["backend"],
                    row["ticket_id"], due.isoformat(), outcome)
        conn.execute(update(n).where(where).values(attempts=attempts, next_attempt_at=due,
                                                   last_error=str(outcome)[:ERROR_MAX]))
        stats.retried += 1


def _jsonable(value: Any) -> Any:
    """value with datetimes, dates and other non-JSON values as strings (the JSON column
    would refuse them)."""
    def default(obj: Any) -> Any:
        if isinstance(obj, (datetime, date)):
            return obj.isoformat()
        return str(obj)

    return json.loads(json.dumps(value, default=default))
