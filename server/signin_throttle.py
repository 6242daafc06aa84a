"""Failed sign-ins per user name and client address, so that passwords cannot be guessed
online: after ``limit`` failures within a ``window`` (10 in 15 minutes by default) that
name from that address is refused with 429 until the window ends, right password or not.

Keyed by name *and* address: a studio's testers share one NAT address, and one guesser must
not lock every colleague out; nor can anyone lock a user out from elsewhere. With
``CRASHD_REDIS_URL`` the counts live in Redis (every server process sees them), otherwise in
this process's memory. Counting never blocks a sign-in when Redis does not answer.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class SignInThrottle:
    """Failed sign-ins in fixed windows; ``blocked`` says how long to wait, ``failed`` counts."""

    def __init__(self, limit: int = 10, window_seconds: int = 900, redis_url: str | None = None,
                 prefix: str = "crashd", clock: Callable[[], float] = time.time,
                 redis_timeout: float = 2.0) -> None:
        self.limit, self.window_seconds, self.clock = limit, window_seconds, clock
        self.prefix = prefix
        self.redis = None
        if redis_url:
            from redis import Redis

            self.redis = Redis.from_url(redis_url, socket_timeout=redis_timeout, socket_connect_timeout=redis_timeout)
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def _window(self) -> tuple[int, float]:
        now = self.clock()
        return int(now // self.window_seconds), now

    def _key(self, name: str, address: str, window: int) -> str:
        digest = hashlib.sha256(f"{name.lower()}\0{address}".encode()).hexdigest()[:32]
        return f"{self.prefix}:signin:{digest}:{window}"

    def blocked(self, name: str, address: str) -> int | None:
        """Seconds until name may try again from address (at least 1), or None."""
        window, now = self._window()
        if self._get(self._key(name, address, window)) < self.limit:
            return None
        return max(1, int((window + 1) * self.window_seconds - now + 0.999))

    def failed(self, name: str, address: str) -> None:
        """Count one failed sign-in."""
        window, _ = self._window()
        self._incr(self._key(name, address, window), window)

    def _get(self, key: str) -> int:
        if self.redis is None:
            with self._lock:
                return self._counts.get((key, 0), 0)
        from redis.exceptions import RedisError

        try:
            return int(self.redis.get(key) or 0)
        except RedisError as exc:
            log.warning("sign-in throttle not checked, Redis failed: %s", exc)
            return 0

    def _incr(self, key: str, window: int) -> None:
        if self.redis is None:
            with self._lock:
                if len(self._counts) > 100_000:  # a flood of names: forget, do not grow
                    self._counts.clear()
                for old in [k for k in self._counts if not k[0].endswith(f":{window}")]:
                    del self._counts[old]  # earlier windows are over
                self._counts[(key, 0)] = self._counts.get((key, 0), 0) + 1
            return
        from redis.exceptions import RedisError

        try:
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 2 * self.window_seconds)
            pipe.execute()
        except RedisError as exc:
            log.warning("failed sign-in not counted, Redis failed: %s", exc)
