"""Job queues: RQ on Redis when CRASHD_REDIS_URL is set, else an in-process worker thread.

Both run ``workers.jobs.process_crash``; RQ job ids are ``process:<crash_id>``. Jobs and
callbacks are named by dotted path (rq's own ``enqueue_call`` style), so this module imports no
job module: the jobs import the queue, never the other way round.
"""

from __future__ import annotations

import importlib
import logging
import queue as stdlib_queue
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable

from redis import Redis
from rq import Callback, Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from schemas.settings import Settings

log = logging.getLogger(__name__)

JOB_FUNCTION = "workers.jobs.process_crash"
NOTIFY_JOB_FUNCTION = "workers.jobs.deliver_notifications"
NOTIFY_JOB_ID = "notify"  # one notify job waits at a time: RQ id queue_job_id(NOTIFY_JOB_ID, queue name)
# RQ's on_failure callback of a processing job (RQ stores the name; the worker imports it)
FAILURE_CALLBACK = "workers.retries.on_job_failure"


def queue_job_id(name: str, queue_name: str) -> str:
    """The RQ id of a job that runs once at a time per queue (notify, triage-periodic, a
    project's verification): its name and the queue's. RQ keeps a job's data under
    ``rq:job:<id>`` for every queue of a Redis database alike, so a bare "notify" was one key
    for two deployments (or two test runs) sharing Redis, each overwriting and deleting the
    other's job. No ':' in it (RQ 2 refuses that)."""
    return f"{name}-{queue_name}"


def job_id(crash_id: str) -> str:
    """The RQ job id of a crash's processing job."""
    return f"process:{crash_id}"


class JobQueue(ABC):
    """Where crashes wait for processing."""

    # True: a worker takes every `received` crash by itself (the database queue), so an
    # upload needs no enqueue (server/ingest/crashmover.py)
    polls_received = False

    @abstractmethod
    def enqueue(self, crash_id: str) -> None:
        """Schedule processing of crash_id. Raises on a queue failure (callers decide)."""

    def is_pending(self, crash_id: str) -> bool:
        """True when a job for crash_id is already queued or running."""
        return False

    def forget(self, crash_id: str) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Drop what the queue remembers of a job of crash_id that died with its worker, so
        that is_pending() no longer counts it. Only for a job known dead (the sweeper)."""

    def enqueue_notify(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Schedule a ``notify`` job (send due ticket notifications) unless one is already
        queued. Call it after committing notifications; the sweeper's tick is the safety net,
        so a queue without jobs may ignore it (this default does). Raises on a queue failure."""

    def check(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Raise when the queue cannot be reached (health checks)."""

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Stop background threads, close connections."""


class RQJobQueue(JobQueue):
    """Jobs on an RQ queue in Redis, run by ``crashd worker``."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url
        timeout = settings.redis_socket_timeout_seconds  # a hung Redis costs an upload seconds
        self.redis = Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.queue = Queue(settings.queue_name, connection=self.redis)
        self.timeout = settings.job_timeout_seconds

    def enqueue(self, crash_id: str) -> None:
        self.queue.enqueue(
            JOB_FUNCTION,
            crash_id,
            job_id=job_id(crash_id),
            job_timeout=self.timeout,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            on_failure=Callback(FAILURE_CALLBACK),
        )

    def is_pending(self, crash_id: str) -> bool:
        try:
            status = Job.fetch(job_id(crash_id), connection=self.redis).get_status()
        except NoSuchJobError:
            return False
        return status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)

    def forget(self, crash_id: str) -> None:
        """A killed worker leaves its job `started` (until RQ's registry clean-up, up to
        minutes later, calls it abandoned): delete that job so a retry can be enqueued."""
        try:
            job = Job.fetch(job_id(crash_id), connection=self.redis)
        except NoSuchJobError:
            return
        if job.get_status() == JobStatus.STARTED:
            job.delete()

    def enqueue_once(self, function: str, name: str, *args: Any) -> bool:
        """Enqueue function (a dotted path) as job ``queue_job_id(name, <this queue>)`` unless
        that job is already waiting in this queue; True when enqueued. A running one does not
        count: it may have read the rows committed just now. Two processes racing here may both
        enqueue, so such jobs must be safe to run twice at once."""
        once_id = queue_job_id(name, self.queue.name)
        if self.queue.get_job_position(once_id) is not None:
            return False
        self.queue.enqueue(function, *args, job_id=once_id, job_timeout=self.timeout, result_ttl=3600,
                           failure_ttl=7 * 24 * 3600)
        return True

    def enqueue_notify(self) -> None:
        """Enqueue job ``notify`` unless one is already waiting (deliver_due is safe to run
        twice at once)."""
        self.enqueue_once(NOTIFY_JOB_FUNCTION, NOTIFY_JOB_ID)

    def check(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()


def resolve(dotted: str) -> Callable[..., Any]:
    """The function a dotted path names ("workers.jobs.process_crash"), imported when a job
    runs, as an RQ worker imports a job's function. A string resolved at run time is no
    import of this module (none at module level, in a function or under TYPE_CHECKING), so
    the jobs may import the queue without a cycle. Raises ImportError or AttributeError."""
    module, _, name = dotted.rpartition(".")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


_worker_thread = threading.local()  # .queue: the queue whose worker thread this is


def serve_jobs_from(queue: JobQueue) -> None:
    """Say that the calling thread runs the jobs of queue (the in-process worker's thread, the
    embedded default's worker process, workers/db_queue.py): their follow-up work goes there."""
    _worker_thread.queue = queue


def running_in_process() -> JobQueue | None:
    """The queue whose worker thread runs the calling job, else None (RQ workers, the
    server's request threads, tests calling a job directly)."""
    return getattr(_worker_thread, "queue", None)


class InProcessJobQueue(JobQueue):
    """A worker thread in the server process: the laptop default, no Redis needed."""

    def __init__(self) -> None:
        self._queue: stdlib_queue.Queue[str | None] = stdlib_queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="crashd-inprocess-worker", daemon=True)
        self._thread.start()

    def enqueue(self, crash_id: str) -> None:
        with self._lock:
            self._pending.add(crash_id)
        self._queue.put(crash_id)

    def is_pending(self, crash_id: str) -> bool:
        with self._lock:
            return crash_id in self._pending

    def join(self) -> None:
        """Wait until every job enqueued so far has run (tests, CLI)."""
        self._queue.join()

    def _run(self) -> None:
        process_crash = resolve(JOB_FUNCTION)
        serve_jobs_from(self)
        while True:
            crash_id = self._queue.get()
            try:
                if crash_id is None:
                    return
                self._run_job(crash_id, process_crash)
            except Exception:
                log.exception("in-process job failed for %s", crash_id)
            finally:
                with self._lock:
                    self._pending.discard(crash_id or "")
                self._queue.task_done()

    _notify_queued = False

    def enqueue_notify(self) -> None:
        """Run a notify job on the worker thread, unless one is already waiting there."""
        with self._lock:
            if self._notify_queued:
                return
            self._notify_queued = True
        self._queue.put(NOTIFY_JOB_ID)

    def _run_job(self, item: str, process_crash: Callable[[str], object]) -> None:
        """Run one queued item: the notify job or a crash's processing."""
        if item != NOTIFY_JOB_ID:
            process_crash(item)
            return
        with self._lock:
            self._notify_queued = False  # rows committed from now on need another run
        resolve(NOTIFY_JOB_FUNCTION)()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


def make_queue(settings: Settings) -> JobQueue:
    """RQ when settings.redis_url is set, else the in-process worker."""
    return RQJobQueue(settings) if settings.redis_url else InProcessJobQueue()
