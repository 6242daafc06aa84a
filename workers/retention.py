"""Retention: delete crashes received and sessions started before a cutoff; a crash's rows
first, then its blobs.

Run by ``crashd prune --older-than 90d`` and, when ``CRASHD_RETENTION_DAYS`` is set, by the
server's sweeper tick; raw dumps alone by ``crashd prune --raw-dumps`` and, past
``CRASHD_RAW_DUMP_DAYS`` (30 by default), by the same tick (a bounded batch per tick, so a large backlog drains over a few ticks
without holding the loop). A blob that cannot be deleted is logged and left behind: the row is
gone, so nothing points at it any more, and the day folders (storage/blobs.day_key) make such
leftovers easy to find.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.tables import utcnow
from storage.blobs import BlobStoreError
from storage.retention import (
    count_old,
    count_raw_dumps,
    delete_crash,
    delete_sessions,
    forget_raw_dump,
    old_crashes,
    old_raw_dumps,
)
from workers.context import WorkerContext

log = logging.getLogger(__name__)

BATCH = 500  # crashes a sweeper tick deletes at most (and 10x as many sessions)
SESSION_BATCH = 5000


@dataclass
class Pruned:
    """What a prune did (or, with dry_run, would do)."""

    crashes: int = 0
    sessions: int = 0
    blobs: int = 0  # deleted, or already gone
    blobs_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def prune(ctx: WorkerContext, *, before: datetime, project_id: int | None = None, dry_run: bool = False,
          limit: int | None = None) -> Pruned:
    """Delete crashes received before ``before`` (at most ``limit``; None: all of them), and
    sessions started before it (at most 10 * ``limit``)."""
    result = Pruned()
    if dry_run:
        crashes, played = count_old(ctx.engine, before=before, project_id=project_id)
        result.crashes, result.sessions = (crashes, played) if limit is None else (min(crashes, limit),
                                                                                    min(played, 10 * limit))
        return result
    while limit is None or result.crashes < limit:
        size = BATCH if limit is None else min(BATCH, limit - result.crashes)
        batch = old_crashes(ctx.engine, before=before, project_id=project_id, limit=size)
        for crash_id in batch:
            keys = delete_crash(ctx.engine, crash_id=crash_id)
            result.crashes += 1 if keys else 0
            for key in keys:
                _delete_blob(ctx, key, result)
        if len(batch) < size:
            break
    while limit is None or result.sessions < 10 * limit:
        size = SESSION_BATCH if limit is None else min(SESSION_BATCH, 10 * limit - result.sessions)
        gone = delete_sessions(ctx.engine, before=before, project_id=project_id, limit=size)
        result.sessions += gone
        if gone < size:
            break
    if result.crashes or result.sessions:
        log.info("retention: deleted %d crashes (%d blobs) and %d sessions from before %s", result.crashes,
                 result.blobs, result.sessions, before.isoformat())
    return result


def _delete_blob(ctx: WorkerContext, key: str, result: Pruned) -> None:
    try:
        ctx.blobs.delete(key)  # a missing key is not an error (BlobStore.delete)
        result.blobs += 1
    except (BlobStoreError, OSError) as exc:
        result.blobs_failed += 1
        log.warning("retention: blob %s left behind: %s", key, exc)


def prune_raw_dumps(ctx: WorkerContext, *, before: datetime, days: float, project_id: int | None = None,
                    dry_run: bool = False, limit: int | None = None) -> Pruned:
    """Delete the raw dumps of crashes received before ``before`` and done with processing
    (at most ``limit``; None: all of them), keeping everything else of them (storage/retention.py):
    ``crashes`` counts the dumps. ``days`` is recorded on each crash (its page says "deleted
    after N days")."""
    result = Pruned()
    if dry_run:
        found = count_raw_dumps(ctx.engine, before=before, project_id=project_id)
        result.crashes = found if limit is None else min(found, limit)
        return result
    while limit is None or result.crashes < limit:
        size = BATCH if limit is None else min(BATCH, limit - result.crashes)
        batch = old_raw_dumps(ctx.engine, before=before, project_id=project_id, limit=size)
        for crash_id in batch:
            key = forget_raw_dump(ctx.engine, crash_id=crash_id, days=days)
            if key is not None:
                result.crashes += 1
                _delete_blob(ctx, key, result)
        if len(batch) < size:
            break
    if result.crashes:
        log.info("retention: deleted the raw dumps of %d crashes from before %s", result.crashes, before.isoformat())
    return result


def tick(ctx: WorkerContext) -> Pruned | None:
    """The sweeper's retention step: one batch of crashes past CRASHD_RETENTION_DAYS (what it
    did, None when that is unset), then one batch of raw dumps past CRASHD_RAW_DUMP_DAYS
    (raw_dump_tick)."""
    days = ctx.settings.retention_days
    pruned = prune(ctx, before=utcnow() - timedelta(days=days), limit=BATCH) if days else None
    raw_dump_tick(ctx)
    return pruned


def raw_dump_tick(ctx: WorkerContext) -> Pruned | None:
    """One batch of raw dumps past CRASHD_RAW_DUMP_DAYS; None when it is 0 (keep them)."""
    days = ctx.settings.raw_dump_days
    if not days:
        return None
    return prune_raw_dumps(ctx, before=utcnow() - timedelta(days=days), days=days, limit=BATCH)
