"""The ticket state machine: states, the manual actions and the states they apply to, due
times, titles. Pure logic, no SQL: storage/tickets.py applies these transitions with
conditional UPDATEs and writes their events and outbox rows.

States (docs/triage.md): open -> resolved (fixed_in) -> verified; regressed (the group
crashed again at or after fixed_in) works like open; wontfix / duplicate close by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.settings import Settings

ACTIVE = ("open", "regressed")  # states in which rules escalate and the due time counts
FIXED = ("resolved", "verified")  # states in which a new crash at/after fixed_in regresses
NOTIFY_EVENTS = frozenset({"opened", "escalated", "resolved", "verified", "regressed", "regrouped", "duplicate",
                           # a security report's steps (storage/security.py): the security webhook's only
                           "acknowledged", "confirmed", "report_rejected", "fixed", "tester_told", "disclosed"})
# Manual actions: states they apply to -> the state they lead to, and the event's name.
ACTIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "resolve": (ACTIVE, "resolved", "resolved"),
    "verify": (("resolved",), "verified", "verified"),
    "reject": (FIXED, "open", "rejected"),
    "reopen": (("resolved", "verified", "wontfix", "duplicate"), "open", "reopened"),
    "wontfix": (ACTIVE + ("resolved",), "wontfix", "wontfix"),
    "duplicate": (ACTIVE + ("resolved",), "duplicate", "duplicate"),
}


class TicketNotFound(LookupError):
    """No ticket with that id."""


class TransitionError(ValueError):
    """The action does not apply to the ticket's current state; the message says why."""


@dataclass(frozen=True)
class Change:
    """A change made to a ticket: its event and how many outbox rows it wrote."""

    ticket_id: int
    action: str
    notifications: int = 0


def due_at(settings: Settings, now: datetime, priority: str) -> datetime:
    """When a ticket of priority ("P0" or "P1") made or reopened at now is due."""
    return now + timedelta(hours=settings.p0_due_hours if priority == "P0" else settings.p1_due_hours)


def title_of(component: str | None, signature: str) -> str:
    """A ticket's title: component and signature ("game: crash_here")."""
    return (f"{component}: {signature}" if component else signature)[:400]


def rules_may_change(ticket: dict[str, Any] | None) -> bool:
    """Whether open_or_escalate could change the group's ticket: there is none yet, or it is
    a P1 that is open or regressed (a rule may escalate it to P0)."""
    return ticket is None or (ticket["priority"] != "P0" and ticket["state"] in ACTIVE)


def check_action(action: str, *, ticket_id: int, fixed_in: str | None,
                 duplicate_of: int | None) -> tuple[tuple[str, ...], str, str]:
    """The manual action's (states it applies to, state it leads to, event name) (ACTIONS).
    Raises TransitionError for an unknown action or one missing what it needs."""
    if action not in ACTIONS:
        raise TransitionError(f"unknown action {action!r}")
    allowed, target, event = ACTIONS[action]
    if action == "resolve" and not (fixed_in and fixed_in.strip()):
        raise TransitionError("resolve needs fixed_in: the build that has the fix")
    if action == "duplicate" and duplicate_of is None:
        raise TransitionError("duplicate needs of: the ticket this one duplicates")
    if action == "duplicate" and duplicate_of == ticket_id:
        raise TransitionError("a ticket cannot be a duplicate of itself")
    return allowed, target, event
