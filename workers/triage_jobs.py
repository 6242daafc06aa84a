"""Triage work: threshold rules on groups, regressions, and verification by numbers.

The same functions run as crashes land (workers/rules.ThresholdRule), periodically
(``tick`` from the server's sweeper loop: in-process it runs here, on RQ it enqueues the job
``triage-periodic-<queue>``), when sessions arrive (``sessions_arrived``: job
``triage-verify-<project_id>-<queue>``) and when a ticket is resolved by hand (``verify_resolved``).
Every change is committed with its outbox rows first; only then is delivery enqueued.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from schemas.tables import utcnow
from storage import sessions, triage_queries
from storage.tickets import mark_regressed, open_or_escalate, verify_by_numbers
from triage.thresholds import GroupStats, Threshold, current_rules, evaluate, hang_windows, strongest, windows
from triage.tickets.transitions import FIXED, Change, rules_may_change
from triage.verification import Verification, at_or_after, verify_fix
from workers.context import WorkerContext, current_context
from workers.queue import JobQueue, RQJobQueue, running_in_process

log = logging.getLogger(__name__)

PERIODIC_JOB_NAME = "triage-periodic"  # its RQ id: queue_job_id(PERIODIC_JOB_NAME, queue name)
PERIODIC_FUNCTION = "workers.triage_jobs.periodic_job"
VERIFY_FUNCTION = "workers.triage_jobs.verify_job"
DEFAULT_LOOKBACK = timedelta(days=1)  # groups evaluated periodically when no rule has a window


def verify_job_name(project_id: int) -> str:
    """The name of a project's verification job (its RQ id adds the queue's: queue_job_id)."""
    return f"triage-verify-{project_id}"


# -- the work -------------------------------------------------------------------------------


def evaluate_group(ctx: WorkerContext, group_id: int) -> list[Change]:
    """Open or escalate the group's ticket when a rule fires, and mark its resolved ticket
    regressed when it crashed again at or after fixed_in. Raises RulesError on a bad file."""
    rules = current_rules(ctx.settings.rules_file)
    # The window counts scan the group's recent crashes, which grows with the group; skip them
    # when no rule could change the ticket (already P0, or resolved/closed by hand).
    ticket = triage_queries.ticket_for_group(ctx.engine, group_id=group_id)
    stats = (triage_queries.group_stats(ctx.engine, group_id=group_id, windows=windows(rules),
                                        hang_windows=hang_windows(rules))
             if rules_may_change(ticket) else None)
    return _fire(ctx, rules, group_id, stats) + check_regression(ctx, group_id)


def _fire(ctx: WorkerContext, rules: tuple[Threshold, ...], group_id: int, stats: GroupStats | None) -> list[Change]:
    """Open or escalate the group's ticket for the strongest rule that fires on stats; no new
    ticket while regrouping may bring this group's bug its ticket (triage_queries.opening_deferred)."""
    firing = strongest(evaluate(rules, stats)) if stats is not None else None
    if firing is not None and (why := triage_queries.opening_deferred(ctx.engine, group_id=group_id)):
        log.info("group %s: %s fires, no ticket opened yet: %s", group_id, firing.rule.name, why)
        return []
    change = open_or_escalate(ctx.engine, settings=ctx.settings, group_id=group_id,
                              firing=firing) if firing is not None else None
    return [change] if change else []


def check_regression(ctx: WorkerContext, group_id: int) -> list[Change]:
    """Reopen the group's resolved/verified ticket as regressed when a crash received after
    it was resolved has a build at or after fixed_in."""
    ticket = triage_queries.ticket_for_group(ctx.engine, group_id=group_id)
    if ticket is None or ticket["state"] not in FIXED or not ticket["fixed_in"]:
        return []
    resolved_at = triage_queries.last_event_at(ctx.engine, ticket_id=ticket["id"], action="resolved")
    if resolved_at is None:
        return []
    builds = triage_queries.crash_builds_since(ctx.engine, group_id=group_id, since=resolved_at)
    first_seen = sessions.build_first_seen(ctx.engine, project_id=ticket["project_id"]) if builds else {}
    hits = [b for b in builds if at_or_after(b, ticket["fixed_in"], first_seen)]
    if not hits:
        return []
    change = mark_regressed(ctx.engine, settings=ctx.settings, ticket_id=ticket["id"], details={
        "fixed_in": ticket["fixed_in"], "builds": hits, "crash_id": builds[hits[-1]]})
    return [change] if change else []


def verify_resolved(ctx: WorkerContext, *, project_id: int | None = None,
                    ticket_id: int | None = None) -> list[Change]:
    """Verify resolved tickets (of a project, or one) whose group crashes significantly less
    per session from fixed_in on; the others stay resolved until the numbers say so."""
    tickets = triage_queries.list_tickets(ctx.engine, project_id=project_id, states=["resolved"])
    changes = []
    projects: dict[int, tuple[dict[str, int], dict[str, Any]]] = {}  # read once per project, not per ticket
    for ticket in tickets:
        if ticket_id is not None and ticket["id"] != ticket_id:
            continue
        result = fix_numbers(ctx, ticket, projects)
        if result.test.significant:
            change = verify_by_numbers(ctx.engine, settings=ctx.settings, ticket_id=ticket["id"],
                                       fixed_in=ticket["fixed_in"], details=result.details())
            changes += [change] if change else []
    return changes


def fix_numbers(ctx: WorkerContext, ticket: dict[str, Any],
                projects: dict[int, tuple[dict[str, int], dict[str, Any]]] | None = None) -> Verification:
    """The rate test of a resolved ticket's fix (triage/verification.py) as the numbers are now.

    projects: a dict that keeps each project's sessions per build and builds' first sightings
    across calls, read once for a report that checks many tickets of one project."""
    pid = ticket["project_id"]
    projects = {} if projects is None else projects
    if pid not in projects:
        projects[pid] = (sessions.sessions_per_build(ctx.engine, project_id=pid),
                         sessions.build_first_seen(ctx.engine, project_id=pid))
    played, first_seen = projects[pid]
    return verify_fix(sessions.group_crashes_per_build(ctx.engine, group_id=ticket["group_id"]),
                      played, ticket["fixed_in"], first_seen=first_seen,
                      min_sessions=ctx.settings.verify_min_sessions)


def run_periodic(ctx: WorkerContext) -> list[Change]:
    """Evaluate every group seen within the longest rule window, then verify every resolved
    ticket. A failing group is logged and the others still run."""
    rules = current_rules(ctx.settings.rules_file)
    lookback = max((r.window for r in rules), default=DEFAULT_LOOKBACK)
    changes: list[Change] = []
    active = triage_queries.active_group_ids(ctx.engine, since=utcnow() - lookback)
    # what evaluate_group does per group, read for all of them at once (a few queries per
    # 500 groups instead of five per group)
    tickets = triage_queries.tickets_for_groups(ctx.engine, group_ids=active)
    stats = triage_queries.group_stats_many(ctx.engine, windows=windows(rules), hang_windows=hang_windows(rules),
                                            group_ids=[g for g in active if rules_may_change(tickets.get(g))])
    for group_id in active:
        try:
            changes += _fire(ctx, rules, group_id, stats.get(group_id))
            if tickets.get(group_id, {}).get("state") in FIXED:
                changes += check_regression(ctx, group_id)
        except Exception:
            log.exception("triage of group %s failed", group_id)
    return changes + verify_resolved(ctx)


# -- scheduling and notification ------------------------------------------------------------


def notify(queue: JobQueue | None, changes: list[Change]) -> None:
    """Enqueue delivery of the outbox after committed changes that wrote notifications. A
    failure only delays delivery: the rows stay pending in the outbox."""
    if queue is None or not any(c.notifications for c in changes):
        return
    try:
        queue.enqueue_notify()
    except Exception as exc:  # noqa: BLE001 - the outbox keeps the events
        log.warning("could not enqueue notification delivery: %s", exc)


_worker_queues: dict[tuple[str, str], RQJobQueue] = {}


def worker_queue(ctx: WorkerContext) -> JobQueue | None:
    """The queue a job running in this process enqueues follow-up work on: RQ's in an RQ
    worker; in the server's in-process worker its own queue, so a ticket's notification goes
    out right after the crash that opened it, not at the next sweeper tick. None elsewhere
    (the outbox rows then go out with the next delivery)."""
    settings = ctx.settings
    if not settings.redis_url:
        return running_in_process()
    key = (settings.redis_url, settings.queue_name)
    if key not in _worker_queues:
        _worker_queues[key] = RQJobQueue(settings)
    return _worker_queues[key]


def tick(ctx: WorkerContext, queue: JobQueue) -> None:
    """The sweeper loop's triage step: the periodic job on RQ, or the work itself here."""
    if isinstance(queue, RQJobQueue):
        queue.enqueue_once(PERIODIC_FUNCTION, PERIODIC_JOB_NAME)
    else:
        notify(queue, run_periodic(ctx))


def sessions_arrived(ctx: WorkerContext, queue: JobQueue, project_id: int) -> None:
    """After sessions were stored: verify the project's resolved tickets (on RQ as a job).
    Never raises: the sessions are stored either way, and the periodic tick catches up."""
    try:
        if isinstance(queue, RQJobQueue):
            queue.enqueue_once(VERIFY_FUNCTION, verify_job_name(project_id), project_id)
        else:
            notify(queue, verify_resolved(ctx, project_id=project_id))
    except Exception:
        log.exception("verification after sessions of project %s failed", project_id)


def periodic_job() -> dict[str, Any]:
    """RQ job ``triage-periodic-<queue>``."""
    ctx = current_context()
    changes = run_periodic(ctx)
    notify(worker_queue(ctx), changes)
    return {"changes": [f"{c.ticket_id}:{c.action}" for c in changes]}


def verify_job(project_id: int) -> dict[str, Any]:
    """RQ job ``triage-verify-<project_id>-<queue>``."""
    ctx = current_context()
    changes = verify_resolved(ctx, project_id=project_id)
    notify(worker_queue(ctx), changes)
    return {"changes": [f"{c.ticket_id}:{c.action}" for c in changes]}
