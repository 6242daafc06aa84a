"""Per-project rate limits (server/ingest/ratelimit.py), on both backends (in memory; in Redis with
RQ): envelopes over the limit get 429 with Retry-After and X-Sentry-Rate-Limits (and the real
sentry-sdk obeys them); the minidump endpoints answer 200 and drop, counted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from server.cli.projects import project_urls
from server.ingest.ratelimit import MemoryRateLimiter, RedisRateLimiter

from conftest import REPO, Crashd, LiveServer, _crashd, make_settings
from minidump_writer import small_dump
from uploads import minidump_upload

LIMIT = 2


@pytest.fixture
def limited(backend: str, services, tmp_path: Path) -> Iterator[Crashd]:
    """crashd whose projects may send LIMIT reports a minute."""
    pg, redis = services
    for crashd in _crashd(backend, make_settings(backend, tmp_path, pg, redis, rate_limit_per_minute=LIMIT)):
        # A stopped clock 1 s into a window: a test never straddles two windows.
        start = time.time() // 60 * 60 + 1
        crashd.state.limiter.clock = lambda start=start: start
        yield crashd


def event_envelope() -> bytes:
    event = json.dumps({"message": "boom", "level": "error"}).encode()
    return (json.dumps({"event_id": uuid.uuid4().hex}).encode() + b"\n"
            + json.dumps({"type": "event", "length": len(event)}).encode() + b"\n" + event + b"\n")


def post_envelope(crashd: Crashd, body: bytes):
    return crashd.client.post(f"/api/{crashd.project.id}/envelope/?sentry_key={crashd.key}", content=body,
                              headers={"Content-Type": "application/x-sentry-envelope"})


def discards(crashd: Crashd) -> dict[str, int]:
    return crashd.client.get("/api/discards", headers=crashd.admin).json()["all_time"]


def test_envelopes_over_the_limit_get_429(limited: Crashd) -> None:
    assert [post_envelope(limited, event_envelope()).status_code for _ in range(LIMIT)] == [200] * LIMIT
    refused = post_envelope(limited, event_envelope())
    assert (refused.status_code, refused.json()) == (429, {"detail": "rate_limited"})
    assert refused.headers["Retry-After"] == "59"  # the window ends in 59 s
    assert refused.headers["X-Sentry-Rate-Limits"] == "59::project:rate_limited"
    assert limited.crash_count() == LIMIT and discards(limited) == {"rate_limited": 1}


def test_sessions_are_never_limited(limited: Crashd) -> None:
    for _ in range(LIMIT):
        post_envelope(limited, event_envelope())
    session = json.dumps({"sid": uuid.uuid4().hex, "status": "exited", "started": "2026-03-01T12:00:00Z",
                          "attrs": {"release": "1.0"}}).encode()
    body = b"{}\n" + json.dumps({"type": "session", "length": len(session)}).encode() + b"\n" + session
    assert post_envelope(limited, body).status_code == 200
    # the session is counted although the project has used its events of the minute
    builds = limited.client.get("/api/builds?project=game", headers=limited.admin).json()["builds"]
    assert [(b["build"], b["sessions"], b["crashed_sessions"]) for b in builds if b["sessions"]] == [("1.0", 1, 0)]
    assert limited.crash_count() == LIMIT and discards(limited) == {}


@pytest.mark.parametrize("endpoint", ["minidump", "submit"])
def test_minidump_endpoints_answer_200_and_drop(limited: Crashd, endpoint: str) -> None:
    url = (f"/api/{limited.project.id}/minidump/?sentry_key={limited.key}" if endpoint == "minidump"
           else f"/submit?key={limited.key}")
    answers = []
    for tag in range(LIMIT + 1):
        body, ctype = minidump_upload(small_dump(90 + tag, size=100_000))
        answers.append(limited.client.post(url, content=body, headers={"Content-Type": ctype}))
    assert [a.status_code for a in answers] == [200] * (LIMIT + 1)
    assert answers[-1].headers["X-Crashd-Discarded"] == "rate_limited"
    assert answers[-1].text == ("Discarded=rate_limited\n" if endpoint == "submit" else str(uuid.UUID(int=0)))
    assert limited.crash_count() == LIMIT and discards(limited) == {"rate_limited": 1}


def test_real_sentry_sdk_obeys_the_429(limited: Crashd) -> None:
    limited.state.limiter.per_minute = 1
    with LiveServer(limited) as live:
        dsn = project_urls(limited.settings, limited.project, live.url)["dsn"]
        client = Path(__file__).parent / "clients" / "sentry_sdk_client.py"
        done = subprocess.run([sys.executable, str(client), "burst", str(dsn)], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    # the first event is stored, the second refused with 429; the SDK keeps the third to itself
    assert limited.crash_count() == 1 and discards(limited) == {"rate_limited": 1}


def test_window_ends_and_projects_are_counted_apart() -> None:
    now = [120.0]
    limiter = MemoryRateLimiter(2, clock=lambda: now[0])
    assert [limiter.hit(1), limiter.hit(1), limiter.hit(2)] == [None, None, None]
    now[0] = 150.2
    assert limiter.hit(1) == 30  # 29.8 s left in the window, rounded up
    now[0] = 180.0
    assert limiter.hit(1) is None
    assert MemoryRateLimiter(0).hit(1) is None  # 0: no limit


def test_redis_counts_are_shared_between_processes(redis_url: str) -> None:
    prefix = f"crashd-test-{uuid.uuid4().hex[:8]}"
    start = time.time() // 60 * 60 + 1
    first, second = (RedisRateLimiter(3, redis_url, prefix, clock=lambda: start) for _ in range(2))
    try:
        assert [first.hit(7), second.hit(7), first.hit(7)] == [None, None, None]
        assert second.hit(7) is not None and first.hit(8) is None
    finally:
        for key in first.redis.scan_iter(match=f"{prefix}:*"):
            first.redis.delete(key)


def set_project_limit(crashd: Crashd, per_minute: str) -> int:
    """`crashd project limit <project> <per_minute>` on crashd's database."""
    import argparse

    from server.cli.projects import cmd_project_limit

    return cmd_project_limit(crashd.settings, argparse.Namespace(project=crashd.project.name, per_minute=per_minute))


def test_a_project_limit_of_its_own(crashd: Crashd) -> None:
    """No server-wide limit; `crashd project limit game 1` limits that project alone."""
    start = time.time() // 60 * 60 + 1
    crashd.state.limiter.clock = lambda: start
    assert set_project_limit(crashd, "1") == 0
    assert [post_envelope(crashd, event_envelope()).status_code for _ in range(3)] == [200, 429, 429]
    assert crashd.crash_count() == 1 and discards(crashd) == {"rate_limited": 2}


def test_a_project_limit_of_zero_lifts_the_server_limit(limited: Crashd) -> None:
    assert set_project_limit(limited, "0") == 0
    assert [post_envelope(limited, event_envelope()).status_code for _ in range(LIMIT + 2)] == [200] * (LIMIT + 2)
    assert set_project_limit(limited, "default") == 0
    assert limited.crash_count() == LIMIT + 2


def test_project_limit_refuses_bad_values(crashd: Crashd, capsys: pytest.CaptureFixture[str]) -> None:
    assert set_project_limit(crashd, "lots") == 2
    assert "give a number" in capsys.readouterr().err
    import argparse

    from server.cli.projects import cmd_project_limit

    assert cmd_project_limit(crashd.settings, argparse.Namespace(project="nope", per_minute="5")) == 1
