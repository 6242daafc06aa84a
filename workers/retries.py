"""Which processing failures are retried, how long a retry waits, and how a failure is told.

An infrastructure failure says nothing about the dump: the worker was killed, the job ran
past its time limit, or the database, Redis or the blob store failed. Its crash goes back to
`received` and the sweeper enqueues it again after a backoff, up to CRASHD_MAX_ATTEMPTS
attempts; then it is `failed` with the reason. A bad dump is failed at once (pipeline.py).

Reasons are words for people reading the crash; the exception itself goes to the log.
"""

from __future__ import annotations

import errno
import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg
import redis.exceptions
from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException
from sqlalchemy import exc as sa_exc

from schemas.settings import Settings
from storage import queries
from storage.blobs import BlobNotFound, BlobStoreError
from workers.context import WorkerContext, current_context

log = logging.getLogger(__name__)

WORKER_LOST = "the worker stopped before it finished (killed, or cut off from the database)"
UNEXPECTED = "processing stopped on an unexpected error (the worker log has it)"
MAX_DELAY = timedelta(hours=1)

# errno values that mean the disk, not the file: full, over quota, read-only, failing
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def infrastructure_reason(exc: BaseException) -> str | None:
    """What failed, in words, when exc (or an exception it was raised from) is an
    infrastructure failure; None when it is not (a bug, or something in the dump)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _reason_of(current)
        if reason is not None:
            return reason
        current = current.__cause__ or current.__context__
    return None


def _reason_of(exc: BaseException) -> str | None:
    if isinstance(exc, JobTimeoutException):
        return "processing ran past the job time limit (CRASHD_JOB_TIMEOUT_SECONDS)"
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                        sa_exc.TimeoutError, psycopg.OperationalError)):
        return "the database was unavailable"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "Redis was unavailable"
    if isinstance(exc, BlobStoreError) and not isinstance(exc, BlobNotFound):
        return "the blob store could not read or write a blob (disk full or unavailable)"
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return "a disk was full or failing"
    return None


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """How long the crash waits after its attempts-th failed attempt: retry_backoff_seconds,
    doubling with each attempt, at most an hour."""
    # the exponent stops at 20, as the outbox's backoff does: past it every delay is the hour
    # (for any backoff of a few seconds), and 2 ** 43 x 30 s overflows timedelta
    seconds = settings.retry_backoff_seconds * 2 ** max(0, min(attempts - 1, 20))
    return min(timedelta(seconds=seconds), MAX_DELAY)


def retry_later(ctx: WorkerContext, crash_id: str, reason: str, updated_before: datetime | None = None) -> str | None:
    """Count a failed attempt of a `processing` crash: back to `received` until its retry is
    due, or `failed` at CRASHD_MAX_ATTEMPTS. Returns the new status (None: not processing)."""
    settings = ctx.settings
    status = queries.retry_or_fail(ctx.engine, crash_id=crash_id, reason=reason, max_attempts=settings.max_attempts,
                                   delay=lambda attempts: retry_delay(settings, attempts), updated_before=updated_before)
    log.warning("crash %s: %s -> %s", crash_id, reason, status)
    return status


def on_job_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """RQ on_failure callback of a processing job that raised or hit its time limit: the
    crash is retried (or failed at CRASHD_MAX_ATTEMPTS) with the reason in words. A job RQ
    found abandoned (its worker was killed) is left to the sweeper, which sees the crash's
    processing lease run out; RQ may report it while a retry of the crash already runs."""
    crash_id = job.args[0] if job.args else None
    if crash_id is None or (isinstance(exc_type, type) and issubclass(exc_type, AbandonedJobError)):
        return
    reason = (infrastructure_reason(exc_value) if isinstance(exc_value, BaseException) else None) or UNEXPECTED
    retry_later(current_context(), crash_id, reason)
