"""Re-enqueue crashes stuck in `received` (an enqueue failed) or `processing` (a worker died)."""

from __future__ import annotations

import logging
from datetime import timedelta

from schemas.tables import utcnow
from storage import queries
from workers.jobs import WorkerContext
from workers.queue import JobQueue

log = logging.getLogger(__name__)


def sweep(ctx: WorkerContext, queue: JobQueue) -> list[str]:
    """Enqueue every stuck crash that has no pending job. Returns the crash ids enqueued."""
    now = utcnow()
    settings = ctx.settings
    stuck = queries.stuck_crash_ids(
        ctx.engine,
        received_before=now - timedelta(seconds=settings.sweeper_stuck_after_seconds),
        processing_before=now - timedelta(seconds=2 * settings.job_timeout_seconds),
    )
    enqueued = []
    for crash_id in stuck:
        try:
            if queue.is_pending(crash_id):
                continue
            queue.enqueue(crash_id)
            enqueued.append(crash_id)
        except Exception as exc:  # noqa: BLE001 - try again on the next sweep
            log.warning("sweeper could not enqueue %s: %s", crash_id, exc)
            break
    if enqueued:
        log.info("sweeper re-enqueued %d crashes", len(enqueued))
    return enqueued
