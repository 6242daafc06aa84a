"""The sign-in throttle (server/dashboard/signin_throttle.py, issue 11 item 4): its memory stays bounded
under a flood of names without forgetting a blocked one, and the address it counts comes from
X-Forwarded-For only when the peer is in CRASHD_TRUSTED_PROXIES (a real `crashd serve`)."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from schemas.settings import Settings
from server.dashboard.signin_throttle import SignInThrottle, WindowCounts

from conftest import serve_process

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_a_flood_of_names_does_not_unblock_a_blocked_one_and_memory_stays_bounded() -> None:
    throttle = SignInThrottle(clock=lambda: 1801.0)
    for _ in range(10):
        throttle.failed("alice", "10.0.0.1")
    for _ in range(5):
        throttle.failed("bob", "10.0.0.2")  # warm, not yet blocked
    assert throttle.blocked("alice", "10.0.0.1") == 899
    tracemalloc.start()
    started = time.monotonic()
    for i in range(50_000):
        throttle.failed(f"flood-{i}", "10.6.6.6")
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert throttle.blocked("alice", "10.0.0.1") == 899  # still blocked
    for _ in range(5):
        throttle.failed("bob", "10.0.0.2")
    assert throttle.blocked("bob", "10.0.0.2") == 899  # its first five were remembered too
    assert len(throttle._memory) <= 10_000 and peak < 8 * 2**20, (len(throttle._memory), peak)
    assert elapsed < 10, elapsed  # constant work per failure, not a scan of every key


def test_window_counts_forget_the_fewest_failures_first_then_the_oldest() -> None:
    counts = WindowCounts(limit=3, max_keys=3)
    for key in ("hot", "hot", "warm", "cold"):
        counts.add(key, 1)
    counts.add("new", 1)  # full: "warm" and "cold" have one failure each, "warm" is older
    assert [counts.get(k, 1) for k in ("hot", "warm", "cold", "new")] == [2, 0, 1, 1]
    counts.add("hot", 2)  # a new window starts from nothing
    assert (len(counts), counts.get("hot", 2), counts.get("cold", 2)) == (1, 1, 0)


def test_trusted_proxies_are_addresses_or_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().trusted_proxies == []
    monkeypatch.setenv("CRASHD_TRUSTED_PROXIES", "127.0.0.1, 10.1.2.3/8,::1")
    assert Settings().trusted_proxies == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    for bad in ("*", "proxy.example", "10.0.0.0/33"):
        monkeypatch.setenv("CRASHD_TRUSTED_PROXIES", bad)
        with pytest.raises(ValidationError, match="trusted_proxies"):
            Settings()


def wrong_sign_in(client: httpx.Client, forwarded_for: str) -> int:
    """The status of a sign-in as alice with a wrong password, sent with X-Forwarded-For."""
    token = CSRF_INPUT.search(client.get("/login").text).group(1)
    form = {"username": "alice", "password": "wrong", "csrf_token": token, "next": "/"}
    return client.post("/login", data=form, headers={"X-Forwarded-For": forwarded_for}).status_code


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    """By default nothing is trusted, not even 127.0.0.1: a new forged address per attempt
    does not get round the throttle."""
    with serve_process(tmp_path) as server, httpx.Client(base_url=server.url) as client:
        statuses = [wrong_sign_in(client, f"203.0.113.{i}") for i in range(11)]
    assert statuses == [401] * 10 + [429]


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    with serve_process(tmp_path, CRASHD_TRUSTED_PROXIES="127.0.0.0/8") as server, \
            httpx.Client(base_url=server.url) as client:
        assert [wrong_sign_in(client, f"203.0.113.{i}") for i in range(11)] == [401] * 11  # 11 clients
        statuses = [wrong_sign_in(client, "198.51.100.7, 127.0.0.1") for _ in range(11)]
        assert statuses == [401] * 10 + [429]  # one client, through two proxies
        assert wrong_sign_in(client, "198.51.100.8") == 401  # its neighbour is not blocked
