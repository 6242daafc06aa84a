"""Turnaround figures (docs/triage.md, Turnaround): how long each ticket took from opened to
its fix deployed to staging, against its due time, and a summary line per priority
(``P0: 7 of 8 deployed within 48 h (6 by their due time), median 19 h; 1 overdue``). Also
which two staging builds the builds page compares when nobody picked any.

Pure: times in, JSON-ready dicts and lines out (storage/turnaround.py reads the times).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from triage.rates import sort_builds

P0_TARGET_HOURS = 48.0  # the studio's objective: every P0 fixed and deployed to staging within 24-48 h
PRIORITIES = ("P0", "P1")
CLOSED = ("wontfix", "duplicate")  # closed without a fix: no deploy to wait for, not counted


@dataclass(frozen=True)
class TicketTimes:
    """One ticket's times (aware UTC). deployed_by: ``release``, ``first_session``,
    ``first_crash`` or None (not deployed)."""

    id: int
    project_id: int
    title: str
    priority: str
    state: str
    fixed_in: str | None
    restricted: bool
    opened_at: datetime
    due_at: datetime
    resolved_at: datetime | None = None
    deployed_at: datetime | None = None
    deployed_by: str | None = None
    verified_at: datetime | None = None


def target_hours(priority: str, p1_due_hours: float) -> float:
    """The "deployed within N h" of a priority: 48 h for a P0 (the upper end of the 24-48 h
    objective; its due time is CRASHD_P0_DUE_HOURS, 24, the lower end), the P1 due time
    (CRASHD_P1_DUE_HOURS, 72: the next bundled update) for a P1."""
    return P0_TARGET_HOURS if priority == "P0" else p1_due_hours


def hours_between(start: datetime, end: datetime) -> float:
    """Hours from start to end, one decimal; a build already out when the ticket opened is 0."""
    return round(max(0.0, (end - start).total_seconds() / 3600), 1)


def standing(t: TicketTimes, now: datetime) -> str:
    """``on_time`` (deployed by its due time), ``late`` (deployed after it), ``overdue`` (not
    deployed, past due), ``pending`` (not deployed, not due yet) or ``closed`` (wontfix or
    duplicate without a deploy)."""
    if t.deployed_at is not None:
        return "on_time" if t.deployed_at <= t.due_at else "late"
    if t.state in CLOSED:
        return "closed"
    return "overdue" if now > t.due_at else "pending"


def ticket_row(t: TicketTimes, now: datetime, p1_due_hours: float) -> dict[str, Any]:
    """The ticket's turnaround, JSON-ready: its times, ``hours_to_deploy`` (None: not
    deployed), ``on_time`` (True / False; None while not deployed and not yet due, or closed),
    ``status`` (standing) and ``target_hours``."""
    status = standing(t, now)
    iso = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    return {
        "id": t.id, "project_id": t.project_id, "title": t.title, "priority": t.priority, "state": t.state,
        "fixed_in": t.fixed_in, "restricted": t.restricted, "opened_at": iso(t.opened_at),
        "resolved_at": iso(t.resolved_at), "deployed_at": iso(t.deployed_at), "deployed_by": t.deployed_by,
        "verified_at": iso(t.verified_at), "due_at": iso(t.due_at),
        "hours_to_deploy": hours_between(t.opened_at, t.deployed_at) if t.deployed_at is not None else None,
        "on_time": {"on_time": True, "late": False, "overdue": False}.get(status),
        "status": status, "target_hours": target_hours(t.priority, p1_due_hours),
    }


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per priority (P0, P1) over ticket_row dicts, closed tickets left out: ``tickets``,
    ``deployed``, ``within_target`` (deployed within target_hours of opening), ``target_hours``,
    ``on_time`` / ``late`` (deployed by / after the due time), ``overdue`` (not deployed, past
    due), ``pending`` (not deployed, not due yet), ``median_hours`` (of the deployed; None
    without one)."""
    counted = [r for r in rows if r["status"] != "closed"]
    out: dict[str, dict[str, Any]] = {}
    for priority in PRIORITIES:
        mine = [r for r in counted if r["priority"] == priority]
        hours = [r["hours_to_deploy"] for r in mine if r["hours_to_deploy"] is not None]
        target = mine[0]["target_hours"] if mine else None
        out[priority] = {
            "tickets": len(mine), "deployed": len(hours), "target_hours": target,
            "within_target": sum(1 for r in mine if r["hours_to_deploy"] is not None
                                 and r["hours_to_deploy"] <= r["target_hours"]),
            **{key: sum(1 for r in mine if r["status"] == key) for key in ("on_time", "late", "overdue", "pending")},
            "median_hours": round(statistics.median(hours), 1) if hours else None,
        }
    return out


def _hours(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")


def summary_line(priority: str, s: dict[str, Any]) -> str:
    """``P0: 7 of 8 deployed within 48 h (6 by their due time), median 19 h; 1 overdue``,
    plus ``, 1 not yet due`` when some are still within their time; ``P0: no tickets``."""
    if not s["tickets"]:
        return f"{priority}: no tickets"
    median = f"median {_hours(s['median_hours'])} h" if s["median_hours"] is not None else "none deployed yet"
    line = (f"{priority}: {s['within_target']} of {s['tickets']} deployed within {_hours(s['target_hours'])} h "
            f"({s['on_time']} by their due time), {median}; {s['overdue']} overdue")
    return line + (f", {s['pending']} not yet due" if s["pending"] else "")


def summary_lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    """summary_line of each priority, P0 first."""
    return [summary_line(p, summary[p]) for p in PRIORITIES if p in summary]


# -- the builds page's automatic comparison ----------------------------------------------------


@dataclass(frozen=True)
class AutoPair:
    """Two builds picked for the builds page: target (the newest with enough sessions) and
    base (the one before it), and how they were picked (``release``: staging deploys by
    deployed_at; ``build_order``: the builds' version order)."""

    base: str
    target: str
    by: str

    @property
    def label(self) -> str:
        """``beta3 vs beta2 (latest staging deploy)``."""
        how = "latest staging deploy" if self.by == "release" else "latest builds by version"
        return f"{self.target} vs {self.base} ({how})"


def pick_pair(deployed: Sequence[str], played: dict[str, int], min_sessions: int,
              first_seen: dict[str, datetime] | None = None) -> AutoPair | None:
    """The newest staging release (deployed: versions oldest deploy first) with at least
    min_sessions sessions vs the release deployed before it. With fewer than two staging
    releases: the newest build with enough sessions vs the build with sessions before it in
    build order (docs/rates.md). None when no build qualifies."""
    if len(deployed) >= 2:
        for index in range(len(deployed) - 1, 0, -1):
            if played.get(deployed[index], 0) >= min_sessions:
                return AutoPair(deployed[index - 1], deployed[index], "release")
        return None
    ordered = sort_builds(sorted(b for b, n in played.items() if n and b), first_seen)
    for index in range(len(ordered) - 1, 0, -1):
        if played[ordered[index]] >= min_sessions:
            return AutoPair(ordered[index - 1], ordered[index], "build_order")
    return None
