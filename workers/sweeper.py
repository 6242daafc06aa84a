"""The sweeper: each tick of `crashd serve` (and `crashd sweep`) makes sure every stored crash
gets processed and no blob outlives its crash. docs/processing.md, "The sweeper", says the
same for operators.

1. A crash `processing` for longer than 2 x CRASHD_JOB_TIMEOUT_SECONDS lost its worker (RQ
   kills a job at 1 x): it counts as a failed attempt (retries.retry_later).
2. A crash `received` for longer than CRASHD_SWEEPER_STUCK_AFTER_SECONDS (its enqueue failed),
   or whose retry is due, is enqueued unless its job is already queued or running.
3. Blobs without a crash row (an upload killed before its 200) older than
   CRASHD_ORPHAN_BLOB_GRACE_SECONDS are deleted, ORPHAN_BATCH keys examined per tick; so are
   symupload v2 uploads created and never completed (``symbols/.staging/`` on an object store,
   the symbols folder's ``.staging/`` on this machine) as old.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from schemas.tables import utcnow
from storage import queries
from symbolicator.symbols import remote
from symbolicator.symbols.store import STAGING
from workers.context import WorkerContext
from workers.queue import JobQueue
from workers.retries import WORKER_LOST, retry_later

log = logging.getLogger(__name__)

ORPHAN_BATCH = 2000  # blob keys examined per tick: bounded work, resumed at the next tick
ORPHAN_KINDS = ("minidumps/", "attachments/", "annotations/", "events/", "processed/")
# <kind>/<YYYY-MM-DD>/<crash_id>.<ext> or <kind>/<YYYY-MM-DD>/<crash_id>/<attachment>
CRASH_KEY = re.compile(r"^[a-z]+/\d{4}-\d{2}-\d{2}/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})[./]")
TEMP_PREFIX = ".tmp-"  # FSBlobStore's unfinished writes
# symupload v2's uploads waiting for their :complete on an object store (server/ingest/symbols_v2.py)
STAGING_PREFIX = f"{remote.PREFIX}{STAGING}/"


def sweep(ctx: WorkerContext, queue: JobQueue) -> list[str]:
    """One tick: count lost workers' crashes as failed attempts, enqueue stuck and due crashes,
    delete a batch of orphan blobs and abandoned symbol uploads. Returns the crash ids enqueued."""
    expire_lost(ctx, queue, utcnow())
    enqueued = enqueue_stuck(ctx, queue, utcnow())  # retries due by now, those just counted included
    delete_orphans(ctx, utcnow())
    delete_stale_staging(ctx, utcnow())
    return enqueued


def expire_lost(ctx: WorkerContext, queue: JobQueue, now: datetime) -> list[str]:
    """Crashes whose processing outlived 2 x the job time limit: their job died with its
    worker. Each counts as a failed attempt; RQ's record of the dead job is dropped so that
    the retry can be enqueued. Returns their ids."""
    cutoff = now - timedelta(seconds=2 * ctx.settings.job_timeout_seconds)
    lost = queries.lost_crash_ids(ctx.engine, processing_before=cutoff)
    for crash_id in lost:
        queue.forget(crash_id)
        retry_later(ctx, crash_id, WORKER_LOST, updated_before=cutoff)
    return lost


def enqueue_stuck(ctx: WorkerContext, queue: JobQueue, now: datetime) -> list[str]:
    """Enqueue every crash `received` too long or due for a retry that has no pending job.
    Stops at the first failed enqueue (the queue is down: the next tick tries again)."""
    stuck = queries.stuck_crash_ids(
        ctx.engine, received_before=now - timedelta(seconds=ctx.settings.sweeper_stuck_after_seconds), now=now)
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
        log.info("sweeper enqueued %d crashes", len(enqueued))
    return enqueued


def delete_orphans(ctx: WorkerContext, now: datetime) -> list[str]:
    """Delete blobs older than the grace period whose crash has no row, unfinished writes
    (temp files) and abandoned symupload v2 uploads (STAGING_PREFIX) as old; examines
    ORPHAN_BATCH keys from where the last tick stopped (a listing that starts there: a tick
    costs the same however large the store). Keys of another shape are left alone. Returns
    the keys deleted."""
    oldest = now.timestamp() - ctx.settings.orphan_blob_grace_seconds
    batch = list(itertools.islice(ctx.blobs.iter_keys(after=ctx.orphan_cursor), ORPHAN_BATCH))
    # a full batch: resume after its last key; fewer: the whole store was seen, start again
    ctx.orphan_cursor = batch[-1][0] if len(batch) == ORPHAN_BATCH else ""
    candidates: dict[str, list[str]] = {}  # crash_id -> its old keys
    loose: list[str] = []  # no row to ask about: temp files, staged symbol uploads
    for key, modified in batch:
        if modified >= oldest:
            continue
        if key.startswith(STAGING_PREFIX):
            loose.append(key)
        elif not key.startswith(ORPHAN_KINDS):
            continue
        elif key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            loose.append(key)
        elif match := CRASH_KEY.match(key):
            candidates.setdefault(match.group(1), []).append(key)
    known = queries.existing_crash_ids(ctx.engine, crash_ids=list(candidates)) if candidates else set()
    doomed = loose + [key for crash_id, keys in candidates.items() if crash_id not in known for key in keys]
    for key in doomed:
        ctx.blobs.delete(key)
    if doomed:
        log.info("sweeper deleted %d orphan blobs (no crash row, or an abandoned upload; older than %.0f s)",
                 len(doomed), ctx.settings.orphan_blob_grace_seconds)
    return doomed


def delete_stale_staging(ctx: WorkerContext, now: datetime) -> list[Path]:
    """Delete what this machine's symbols folder keeps in ``.staging/`` for longer than the
    orphan grace period: symupload v2 uploads never completed (``v2-<key>.json`` and the file
    it names), and files or scratch folders of an upload whose process was killed. An upload
    being stored keeps its files for seconds, and writing them moves their mtime. Returns the
    paths deleted."""
    oldest = now.timestamp() - ctx.settings.orphan_blob_grace_seconds
    try:
        with os.scandir(ctx.settings.symbols_dir / STAGING) as scan:
            entries = list(scan)
    except FileNotFoundError:
        return []
    doomed = []
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= oldest:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:  # its upload finished meanwhile
            continue
        doomed.append(Path(entry.path))
    if doomed:
        log.info("sweeper deleted %d abandoned symbol uploads' files (older than %.0f s)", len(doomed),
                 ctx.settings.orphan_blob_grace_seconds)
    return doomed
