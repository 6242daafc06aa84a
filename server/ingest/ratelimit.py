"""Per-project rate limits on crash reports, counted in fixed one-minute windows.

``CRASHD_RATE_LIMIT_PER_MINUTE`` reports per project and minute (0: no limit); a project's own
limit (``crashd project limit NAME N``, the ``projects.rate_limit_per_minute`` column) wins. With
``CRASHD_REDIS_URL`` the count lives in Redis (``INCR`` + ``EXPIRE``), shared by every server
process; without it, in this process's memory (the single-process SQLite setup).

What a client over the limit is told follows Sentry: envelopes and ``/store/`` get ``429``
with ``Retry-After: <s>`` and ``X-Sentry-Rate-Limits: <s>::project:rate_limited`` (retry
after, every category, scope, reason code; sentry-sdk and sentry-native stop sending until
then). The minidump endpoints answer 200 and drop the report: Crashpad retries anything else
forever.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from redis import Redis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from schemas.settings import Settings

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60


class RateLimiter:
    """Counts reports per project in the current window; ``hit`` says when to come back."""

    blocking = True  # hit() may wait for I/O: over_limit calls it in a thread

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self.clock = clock

    def hit(self, project_id: int, own_limit: int | None = None) -> int | None:
        """Count one report of project_id against own_limit (the project's; None: the default
        per_minute; 0: none). Returns None when it is within the limit, else the seconds until
        the window ends (at least 1)."""
        limit = self.per_minute if own_limit is None else own_limit
        if limit <= 0:
            return None
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        if self._incr(project_id, window) <= limit:
            return None
        return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))

    async def over_limit(self, project_id: int, own_limit: int | None = None) -> int | None:
        """hit() from the event loop: in a thread when it may wait for I/O (Redis), else right
        here (a thread-pool hop costs an upload CPU, bench/ingest.py)."""
        if self.blocking:
            return await run_in_threadpool(self.hit, project_id, own_limit)
        return self.hit(project_id, own_limit)

    def _incr(self, project_id: int, window: int) -> int:
        raise NotImplementedError


class MemoryRateLimiter(RateLimiter):
    """Counts in this process (no Redis): exact for one server process."""

    blocking = False

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__(per_minute, clock)
        self._counts: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def _incr(self, project_id: int, window: int) -> int:
        with self._lock:
            for key in [k for k in self._counts if k[1] < window]:  # earlier windows are over
                del self._counts[key]
            self._counts[(project_id, window)] = self._counts.get((project_id, window), 0) + 1
            return self._counts[(project_id, window)]


class RedisRateLimiter(RateLimiter):
    """Counts in Redis, shared by every server process. When Redis does not answer, reports
    are let through (a queue outage must not turn into lost crashes)."""

    def __init__(self, per_minute: int, redis_url: str, prefix: str,
                 clock: Callable[[], float] = time.time, timeout: float = 2.0) -> None:
        super().__init__(per_minute, clock)
        self.redis = Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix = prefix

    def _incr(self, project_id: int, window: int) -> int:
        key = f"{self.prefix}:ratelimit:{project_id}:{window}"
        try:
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW_SECONDS)
            return int(pipe.execute()[0])
        except RedisError as exc:
            log.warning("rate limit not checked, Redis failed: %s", exc)
            return 0


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """The limiter for settings: Redis-backed when CRASHD_REDIS_URL is set."""
    if settings.redis_url:  # a project may have a limit of its own: count in Redis
        return RedisRateLimiter(settings.rate_limit_per_minute, settings.redis_url, settings.queue_name,
                                timeout=settings.redis_socket_timeout_seconds)
    return MemoryRateLimiter(settings.rate_limit_per_minute)


def rate_limit_headers(retry_after: int) -> dict[str, str]:
    """Sentry's 429 headers: every category of the project is limited for retry_after seconds."""
    return {"Retry-After": str(retry_after), "X-Sentry-Rate-Limits": f"{retry_after}::project:rate_limited"}
