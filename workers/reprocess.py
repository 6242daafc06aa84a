"""Reprocessing: run crashes through the pipeline again (after new symbols or rule changes).

A reprocessed crash moves to the group of its new signature; storage/groups.py keeps it
counted in exactly one group.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, Iterable

from sqlalchemy import select
from sqlmodel import col

from schemas.tables import Crash
from storage import groups, queries
from storage.db import session
from workers.context import WorkerContext
from workers.queue import JobQueue

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def select_crashes(ctx: WorkerContext, *, everything: bool = False, group_id: int | None = None,
                   since: datetime | None = None, failed: bool = False) -> list[str]:
    """Crash ids to reprocess: all, those of one group, those received since a time, or the
    `failed` ones (put back to `received` with no failed attempts, so the sweeper enqueues
    them should the caller's enqueue fail)."""
    if failed:
        return queries.requeue_failed(ctx.engine)
    if group_id is not None:
        return groups.group_crash_ids(ctx.engine, group_id=group_id)
    stmt = select(col(Crash.crash_id)).order_by(col(Crash.received_at))
    if since is not None:
        stmt = stmt.where(col(Crash.received_at) >= since)
    elif not everything:
        return []
    with session(ctx.engine) as s:
        return list(s.execute(stmt).scalars())


def enqueue_all(queue: JobQueue, crash_ids: Iterable[str], progress: Progress | None = None) -> int:
    """Enqueue each crash; returns how many were enqueued (a failed enqueue is logged and
    counted out: the crash keeps its current result)."""
    crash_ids = list(crash_ids)
    done = 0
    for index, crash_id in enumerate(crash_ids, 1):
        try:
            queue.enqueue(crash_id)
            done += 1
        except Exception as exc:  # noqa: BLE001 - the rest still go
            log.warning("could not enqueue %s for reprocessing: %s", crash_id, exc)
        if progress:
            progress(index, len(crash_ids))
    return done


def reprocess_for_symbols(ctx: WorkerContext, queue: JobQueue, *, debug_file: str, debug_id: str) -> list[str]:
    """Enqueue every crash that was processed without this module's symbols."""
    crash_ids = groups.crashes_missing(ctx.engine, debug_file=debug_file, debug_id=debug_id)
    if crash_ids:
        log.info("symbols for %s/%s arrived: reprocessing %d crashes", debug_file, debug_id, len(crash_ids))
        enqueue_all(queue, crash_ids)
    return crash_ids
