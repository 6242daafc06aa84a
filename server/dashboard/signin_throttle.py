"""Failed sign-ins per user name and client address, so that passwords cannot be guessed
online: after ``limit`` failures within a ``window`` (10 in 15 minutes by default) that
name from that address is refused with 429 until the window ends, right password or not.

Keyed by name *and* address: a studio's testers share one NAT address, and one guesser must
not lock every colleague out; nor can anyone lock a user out from elsewhere. With
``CRASHD_REDIS_URL`` the counts live in Redis (every server process sees them), otherwise in
this process's memory (WindowCounts: bounded, and a flood of names cannot make it forget a
blocked one). Counting never blocks a sign-in when Redis does not answer.

The address is ``request.client.host``: the peer, or behind a proxy listed in
``CRASHD_TRUSTED_PROXIES`` the client it names in ``X-Forwarded-For`` (``crashd serve``
configures uvicorn so; from any other peer the header is ignored).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Callable

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class WindowCounts:
    """Failures per key within one window, in memory, for at most ``max_keys`` keys.

    When full, a new key pushes out the key with the fewest failures (of those, the one that
    failed longest ago). A flood of names tried once each only pushes out each other; a key
    with many failures, a blocked one above all, stays. Pushing out a blocked key would take
    ``limit`` failures for each of ``max_keys`` other keys within one window (100,000 sign-ins,
    each costing the flooder an Argon2 hash on the server, within 15 minutes by default).
    Counts stop at ``limit``, so every operation is O(limit) at most.
    """

    def __init__(self, limit: int, max_keys: int) -> None:
        self.limit, self.max_keys = limit, max_keys
        self.window: int | None = None
        self._counts: dict[str, int] = {}
        self._by_count: list[OrderedDict[str, None]] = [OrderedDict() for _ in range(limit + 1)]

    def __len__(self) -> int:
        return len(self._counts)

    def get(self, key: str, window: int) -> int:
        """key's failures in window (0 when window is not the current one)."""
        return self._counts.get(key, 0) if window == self.window else 0

    def add(self, key: str, window: int) -> None:
        """Count one failure of key in window; a later window starts from nothing."""
        if window != self.window:
            self.window, self._counts = window, {}
            self._by_count = [OrderedDict() for _ in range(self.limit + 1)]
        count = self._counts.get(key, 0)
        if count:
            del self._by_count[count][key]
        elif len(self._counts) >= self.max_keys:
            self._forget_coldest()
        count = min(count + 1, self.limit)
        self._counts[key] = count
        self._by_count[count][key] = None

    def _forget_coldest(self) -> None:
        for keys in self._by_count[1:]:
            if keys:
                del self._counts[keys.popitem(last=False)[0]]
                return


class SignInThrottle:
    """Failed sign-ins in fixed windows; ``blocked`` says how long to wait, ``failed`` counts."""

    def __init__(self, limit: int = 10, window_seconds: int = 900, redis_url: str | None = None,
                 prefix: str = "crashd", clock: Callable[[], float] = time.time,
                 redis_timeout: float = 2.0, max_keys: int = 10_000) -> None:
        self.limit, self.window_seconds, self.clock = limit, window_seconds, clock
        self.prefix = prefix
        self.redis = None
        if redis_url:
            self.redis = Redis.from_url(redis_url, socket_timeout=redis_timeout, socket_connect_timeout=redis_timeout)
        self._memory = WindowCounts(limit, max_keys)  # without Redis
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
        if self._get(self._key(name, address, window), window) < self.limit:
            return None
        return max(1, int((window + 1) * self.window_seconds - now + 0.999))

    def failed(self, name: str, address: str) -> None:
        """Count one failed sign-in."""
        window, _ = self._window()
        self._incr(self._key(name, address, window), window)

    def _get(self, key: str, window: int) -> int:
        if self.redis is None:
            with self._lock:
                return self._memory.get(key, window)
        try:
            return int(self.redis.get(key) or 0)
        except RedisError as exc:
            log.warning("sign-in throttle not checked, Redis failed: %s", exc)
            return 0

    def _incr(self, key: str, window: int) -> None:
        if self.redis is None:
            with self._lock:
                self._memory.add(key, window)
            return
        try:
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 2 * self.window_seconds)
            pipe.execute()
        except RedisError as exc:
            log.warning("failed sign-in not counted, Redis failed: %s", exc)
