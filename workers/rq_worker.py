"""`crashd worker`: an RQ worker that outlives Redis outages.

Plain RQ gives up in three places: a worker started while Redis is down exits at once
(registering the worker needs Redis), a Redis error while a job ends quits the work loop,
and RQ's dequeue loop logs every reconnect attempt. Here the worker waits for Redis, one
log line a minute, and starts a fresh RQ worker (same process, same warm context) when Redis
answers again; SIGTERM/SIGINT still stop it, between jobs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any, Callable

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker, Worker

from schemas.settings import Settings

log = logging.getLogger("crashd.worker")

RETRY_SECONDS = 1.0  # how often a waiting worker asks Redis again
LOG_EVERY_SECONDS = 60.0  # one "still unreachable" line a minute, not one per attempt
# RQ blocks in BLPOP for worker_ttl - 15 s; the socket timeout must be longer, or every idle
# wait ends in a TimeoutError that quits the RQ worker (docs/deploy.md, timeouts).
WORKER_TTL_SECONDS = 75
SOCKET_TIMEOUT_SECONDS = 90.0
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


class OutageLog:
    """Says that a dependency (Redis, the database) is unreachable once a minute while it is,
    and when it answers again."""

    def __init__(self, every: float = LOG_EVERY_SECONDS, what: str = "Redis") -> None:
        self.every = every
        self.what = what
        self.since: float | None = None
        self.last_line = 0.0

    def failed(self, error: object) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.last_line = now, now - self.every
        if now - self.last_line >= self.every:
            self.last_line = now
            log.warning("%s unreachable for %.0f s (%s); waiting, retrying every %.0f s",
                        self.what, now - self.since, error, RETRY_SECONDS)

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("%s answers again after %.0f s; resuming", self.what, time.monotonic() - self.since)
            self.since = None


class FoldRedisErrors(logging.Filter):
    """On RQ's logger: its line per reconnect attempt, and the traceback of a Redis error
    that quit its work loop, become OutageLog's line a minute."""

    def __init__(self, outage: OutageLog) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, REDIS_DOWN) or str(record.msg).startswith("Could not connect to Redis"):
            self.outage.failed(error or "connection refused or lost")
            return False
        return True


class OutageAware:
    """What crashd changes in RQ's workers (mixed into SimpleWorker and Worker below)."""

    outage: OutageLog
    stop_requested = False
    jobs_done = 0
    # RQ's own reconnect loop (Redis lost while idle): every second, no growing backoff
    max_connection_wait_time = RETRY_SECONDS
    exponential_backoff_factor = 1.0

    def subscribe(self) -> None:
        """No pub/sub thread: crashd sends workers no commands, and that thread dies with the
        first Redis outage, printing a traceback."""

    def unsubscribe(self) -> None:
        """Nothing subscribed (see subscribe)."""

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[misc]

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        if pipeline is None:  # it reached Redis (a pipeline's commands go later)
            self.outage.recovered()

    def execute_job(self, job: Any, queue: Any) -> None:
        super().execute_job(job, queue)  # type: ignore[misc]
        self.jobs_done += 1


class WarmWorker(OutageAware, SimpleWorker):
    """Jobs in this process (the default)."""


class ForkWorker(OutageAware, Worker):
    """A process per job (``--fork``)."""


class StopSignal:
    """SIGTERM/SIGINT while no RQ worker runs (waiting for Redis or the database): stop waiting."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        log.info("stop requested while waiting for Redis or the database")
        self.event.set()


def connect(settings: Settings) -> Redis:
    """The worker's Redis connection (see SOCKET_TIMEOUT_SECONDS)."""
    assert settings.redis_url
    return Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=SOCKET_TIMEOUT_SECONDS,
                          socket_keepalive=True)


def wait_for(call: Callable[[], object], errors: tuple[type[BaseException], ...], outage: OutageLog,
             stop: StopSignal) -> bool:
    """Call until it returns without one of errors (True) or a stop is requested (False): how
    a worker waits for Redis (a PING) and, at start-up, for the database (one log line a
    minute)."""
    while not stop.event.is_set():
        try:
            call()
            outage.recovered()
            return True
        except errors as exc:
            outage.failed(exc)
        stop.event.wait(RETRY_SECONDS)
    return False


def run_worker(settings: Settings, *, fork: bool, burst: bool, max_jobs: int | None) -> int:
    """Work the queue until stopped (SIGTERM, SIGINT), --burst finds it empty or --max-jobs
    jobs ran; Redis outages are waited out. Returns the exit code."""
    redis, outage, stop = connect(settings), OutageLog(), StopSignal()
    logging.getLogger("rq.worker").addFilter(FoldRedisErrors(outage))
    worker_class = ForkWorker if fork else WarmWorker
    done = 0
    while True:
        stop.install()
        if not wait_for(redis.ping, REDIS_DOWN, outage, stop):
            return 0
        worker = worker_class([Queue(settings.queue_name, connection=redis)], connection=redis,
                              default_worker_ttl=WORKER_TTL_SECONDS)
        worker.outage = outage
        try:
            worker.work(burst=burst, with_scheduler=False, max_jobs=None if max_jobs is None else max_jobs - done)
        except REDIS_DOWN as exc:  # RQ's start (register) or end (teardown) needs Redis too
            outage.failed(exc)
        done += worker.jobs_done
        if worker.stop_requested or stop.event.is_set() or (max_jobs is not None and done >= max_jobs):
            return 0
        if burst and outage.since is None:
            return 0  # the queue is empty
        time.sleep(RETRY_SECONDS)  # RQ quit on an error (it logged it): a fresh worker
