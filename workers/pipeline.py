"""Processing is an ordered list of small rules (Socorro's processor/rules).

Each rule has ``predicate()`` (should it run on this crash?) and ``action()`` (what it adds to
the processed crash). A rule that raises adds a note saying in words what failed; the next
rules still run and the crash is still saved. Two exceptions: a rule that fails because the
database, Redis or the blob store failed stops processing and the crash is retried
(workers/retries.py), and a crash ends `processed` only with its report stored and its group
counted; otherwise it is `failed` with the reason. Order: verify the stored dump -> read it -> walk every thread ->
symbolicate (a Sentry event without a dump: its own stack trace instead) -> report (the full
JSON to the blob store, a summary to the crash row) -> signature -> component -> group ->
thresholds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from schemas.tables import Crash, CrashStatus
from storage import queries
from workers.context import WorkerContext
from workers.retries import infrastructure_reason, on_job_failure, retry_later
from workers.rule import ProcessingState, Rule
from workers.rules import DEFAULT_RULES
from workers.triage_jobs import worker_queue

log = logging.getLogger(__name__)


def run_rules(ctx: WorkerContext, state: ProcessingState, rules: tuple[Rule, ...]) -> None:
    """Run each applicable rule in order; a failing rule becomes a note, an infrastructure
    failure (workers/retries.py) stops the run with state.retry set."""
    for rule in rules:
        try:
            if rule.predicate(ctx, state):
                rule.action(ctx, state)
        except Exception as exc:
            log.exception("rule %s failed on %s", rule.name, state.crash.crash_id)
            state.retry = infrastructure_reason(exc)
            if state.retry is not None:
                state.retry = f"{rule.name}: {state.retry}"
                return
            state.notes.append(f"{rule.name} {rule.failure} (the worker log has the error)")


def incomplete(state: ProcessingState) -> str | None:
    """Why a crash that ran every rule cannot be `processed` (no stored report, or not
    counted in a group: a rule failed on this dump), or None."""
    if "report_key" not in state.processed:
        return "no report could be built from this crash (the notes say which step failed)"
    if state.processed.get("group_id") is None:
        return "the crash could not be counted in a group (the notes say which step failed)"
    return None


def run_pipeline(ctx: WorkerContext, crash_id: str, rules: tuple[Rule, ...] = DEFAULT_RULES, *,
                 taken: bool = False) -> dict[str, Any]:
    """Process one crash and save the result: `processed`, `failed` (a bad dump), or back to
    `received` for a retry after an infrastructure failure. Returns a short summary (the RQ
    job result). Raises when the database fails while saving (the job's failure callback,
    else the sweeper, retries the crash). taken: the caller already marked it `processing`
    (the database queue's worker, queries.take_received), so it is only read."""
    if taken:
        crash = queries.get_crash(ctx.engine, crash_id=crash_id)
    else:
        crash = queries.claim_crash(ctx.engine, crash_id=crash_id)
    if crash is None:
        log.warning("process: no crash %s", crash_id)
        return {"crash_id": crash_id, "status": "missing"}
    if crash.minidump_key is None and (crash.processed or {}).get("raw_dump"):
        return keep_result(ctx, crash)
    # The cooperative limit sits a little under RQ's hard job timeout, so a slow dump ends
    # with a partial result and a note instead of a killed job.
    state = ProcessingState(crash, deadline=time.monotonic() + 0.8 * ctx.settings.job_timeout_seconds)
    run_rules(ctx, state, rules)
    if state.retry is not None:
        status = retry_later(ctx, crash_id, state.retry)
        return {"crash_id": crash_id, "status": status, "retry": state.retry}
    state.processed["notes"] = state.notes
    state.fatal = state.fatal or incomplete(state)
    status = CrashStatus.failed if state.fatal else CrashStatus.processed
    queries.finish_crash(
        ctx.engine, crash_id=crash_id, status=status, processed=state.processed, error=state.fatal
    )
    if state.again is not None:
        process_again(ctx, crash_id, state.again)
    return {"crash_id": crash_id, "status": status.value, "notes": state.notes}


RAW_DUMP_GONE = "not processed again: its raw dump was deleted"


def keep_result(ctx: WorkerContext, crash: Crash) -> dict[str, Any]:
    """A crash whose raw dump retention deleted (storage/retention.py) cannot be walked again:
    it keeps the result of its last processing, its status (`processed`, or `failed` with its
    reason) and its group, with a note saying why (one, however often it is reprocessed)."""
    processed = dict(crash.processed or {})
    days = (processed.get("raw_dump") or {}).get("after_days")
    after = f" after {days:g} days (CRASHD_RAW_DUMP_DAYS)" if isinstance(days, (int, float)) else ""
    note = f"{RAW_DUMP_GONE}{after}; this is the result of its last processing"
    processed["notes"] = [*(n for n in processed.get("notes") or [] if not str(n).startswith(RAW_DUMP_GONE)), note]
    status = CrashStatus.processed if "report_key" in processed else CrashStatus.failed
    queries.finish_crash(ctx.engine, crash_id=crash.crash_id, status=status, processed=processed,
                         error=crash.processing_error if status is CrashStatus.failed else None)
    return {"crash_id": crash.crash_id, "status": status.value, "notes": [note]}


def process_again(ctx: WorkerContext, crash_id: str, why: str) -> None:
    """Enqueue the crash once more (symbols it lacked arrived while it was processed). A
    failed enqueue is logged: `crashd reprocess` or the next upload of those symbols redo it."""
    queue = worker_queue(ctx)
    log.info("processing %s again: %s", crash_id, why)
    if queue is None:
        return
    try:
        queue.enqueue(crash_id)
    except Exception as exc:  # noqa: BLE001 - the crash is saved; only its regrouping waits
        log.warning("could not enqueue %s again: %s", crash_id, exc)


mark_timed_out = on_job_failure  # the failure callback's name in jobs enqueued before retries existed
