"""The embedded default's queue: the database. ``crashd serve`` without Redis starts a worker
process (``crashd worker`` without CRASHD_REDIS_URL) that takes `received` crashes from the
crashes table itself, so the stack walking never competes with the uploads for the web
process's interpreter (docs/benchmarks.md, Ingest) and a crash the worker died on is still in
the table. docs/processing.md, "The embedded default", says the rest.

- The web process's DatabaseJobQueue stores nothing for a new upload: its row is `received`,
  which is the queue. Enqueueing a crash again (late symbols, ``crashd reprocess``) puts it
  back to `received`.
- DatabaseWorker polls for due `received` crashes, oldest first, claims each with a
  conditional update (two workers never take one crash) and runs the same pipeline as RQ and
  the in-process thread (workers.jobs.process_taken_crash: without claiming it again). It delivers due notifications after a job
  that made some and once every NOTIFY_EVERY_SECONDS.
- While the web processes are busy (more than 3/4 of a core), the worker pauses after each
  job for three times its length: uploads first (workers/ingest_pressure.py).
- The sweeper still puts crashes whose worker died back to `received`; nothing else of it is
  needed, since a `received` crash is always pending here.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from storage import queries
from workers.ingest_pressure import IngestPressure
from workers.queue import NOTIFY_JOB_FUNCTION, JobQueue, resolve, serve_jobs_from

log = logging.getLogger("crashd.worker")

# The job of a crash this worker took (named like workers/queue.py's jobs: no import of them)
TAKEN_JOB_FUNCTION = "workers.jobs.process_taken_crash"
POLL_SECONDS = 0.05  # an idle worker looks again this often: the crash-to-grouped latency's floor
BATCH = 16  # crashes read per poll
NOTIFY_EVERY_SECONDS = 5.0  # notifications the web process committed wait at most this long
OUTAGE_WAIT_SECONDS = 1.0  # the database unreachable: ask again this often


class DatabaseJobQueue(JobQueue):
    """The web process's side: the crashes table is the queue (see the module's text)."""

    polls_received = True

    def __init__(self, engine: Engine, on_notify: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self._on_notify = on_notify

    def enqueue(self, crash_id: str) -> None:
        """Put the crash back to `received` for the worker (a crash being processed right
        now is left alone: its pipeline sees late symbols itself, workers/pipeline.py)."""
        queries.requeue_crash(self.engine, crash_id=crash_id)

    def enqueue_notify(self) -> None:
        """In the worker process: deliver after the current job. In the web process: nothing;
        the worker delivers every NOTIFY_EVERY_SECONDS."""
        if self._on_notify is not None:
            self._on_notify()

    def is_pending(self, crash_id: str) -> bool:
        """Every `received` crash is taken by the worker: the sweeper need not enqueue it."""
        return True


class DatabaseWorker:
    """The worker process's loop (``crashd worker`` without Redis)."""

    def __init__(self, engine: Engine, stop: threading.Event, *, poll_seconds: float = POLL_SECONDS,
                 pressure: IngestPressure | None = None) -> None:
        self.engine = engine
        self.pressure = pressure or IngestPressure(None)  # gives way to busy web processes
        self.queue = DatabaseJobQueue(engine, on_notify=self.enqueue_notify)  # what its jobs enqueue on
        self.stop = stop
        self.poll_seconds = poll_seconds
        self.notify_due = True  # deliver once at start: what waited while no worker ran
        self.last_notify = 0.0
        self.jobs = 0

    def enqueue_notify(self) -> None:
        """A job committed notifications: deliver them after it (workers/triage_jobs.py)."""
        self.notify_due = True

    def run(self, max_jobs: int | None = None, burst: bool = False) -> int:
        """Work until stop is set, max_jobs crashes ran or (burst) none is due. Returns the
        exit code."""
        process_crash = resolve(TAKEN_JOB_FUNCTION)
        serve_jobs_from(self.queue)  # workers/triage_jobs.worker_queue finds it
        while not self.stop.is_set():
            try:
                worked = self.work_batch(process_crash, max_jobs)
                self.deliver_if_due()
            except SQLAlchemyError as exc:
                log.warning("the database failed, waiting %.0f s: %s", OUTAGE_WAIT_SECONDS, exc)
                self.stop.wait(OUTAGE_WAIT_SECONDS)
                continue
            if max_jobs is not None and self.jobs >= max_jobs:
                return 0
            if not worked:
                if burst:
                    return 0
                self.stop.wait(self.poll_seconds)
        return 0

    def work_batch(self, process_crash: Callable[[str], object], max_jobs: int | None) -> bool:
        """Claim and process the due `received` crashes of one poll; True when any ran."""
        worked = False
        for crash_id in queries.due_received_ids(self.engine, limit=BATCH):
            if self.stop.is_set() or (max_jobs is not None and self.jobs >= max_jobs):
                break
            if not queries.take_received(self.engine, crash_id=crash_id):
                continue  # another worker took it
            worked = True
            self.jobs += 1
            started = time.monotonic()
            try:
                process_crash(crash_id)
            except SQLAlchemyError:
                raise  # the crash stays `processing`: the sweeper gives it back after its lease
            except Exception:
                log.exception("job failed for %s", crash_id)
            self.deliver_if_due()
            pause = self.pressure.pause_after(time.monotonic() - started)
            if pause:  # the uploads come first (workers/ingest_pressure.py)
                self.stop.wait(pause)
        return worked

    def deliver_if_due(self) -> None:
        """Send due notifications when a job made some, and every NOTIFY_EVERY_SECONDS."""
        now = time.monotonic()
        if not self.notify_due and now - self.last_notify < NOTIFY_EVERY_SECONDS:
            return
        self.notify_due, self.last_notify = False, now
        try:
            resolve(NOTIFY_JOB_FUNCTION)()
        except SQLAlchemyError:
            raise
        except Exception:
            log.exception("notification delivery failed")
