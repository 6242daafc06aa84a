"""PostgreSQL and Redis down or hung under real `crashd serve` / `crashd worker` processes
(issue 11, items 8 and 13): every ingest path answers 503 + Retry-After while the database is
gone, never 500 and never a dropped connection; toward a hung (SIGSTOP'd) dependency an upload
and the heartbeat answer within seconds; with Redis down uploads are still stored (200) and
enqueued later. Each test ends with the count: answered 200 = stored = processed.
"""

from __future__ import annotations

import time

import httpx

from faults.services import CrashdProcess, Ledger, RedisServer, heartbeat, ingest_key, settle, upload, wait_until
from uploads import ingest_requests

# Short enough to keep each fault to seconds; the defaults (docs/deploy.md) are a little longer.
FAST_TIMEOUTS = {"CRASHD_DB_CONNECT_TIMEOUT_SECONDS": "2", "CRASHD_DB_STATEMENT_TIMEOUT_SECONDS": "2",
                 "CRASHD_REDIS_SOCKET_TIMEOUT_SECONDS": "1"}


def timed_upload(server: CrashdProcess, key: str, tag: int, ledger: Ledger) -> tuple[int | None, float]:
    """upload() and how long the answer took."""
    started = time.monotonic()
    status = upload(server, key, tag, ledger, timeout=20)
    return status, time.monotonic() - started


def timed_heartbeat(server: CrashdProcess) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = heartbeat(server, timeout=10)
    return response, time.monotonic() - started


def ensure_worker(worker: CrashdProcess, processes, env: dict[str, str]) -> None:
    """Start another worker when this one exited with its dependency (issue 11 item 7 is another
    test's subject; this one counts the server's uploads)."""
    if not worker.alive():
        processes.worker(env)


def uploads_without_queue(server: CrashdProcess, key: str, tags: range, ledger: Ledger) -> None:
    """With Redis down or hung: each upload is answered 200 within seconds (stored; enqueued
    later by the sweeper) and the heartbeat names the queue within 2 s."""
    for tag in tags:
        status, took = timed_upload(server, key, tag, ledger)
        assert status == 200 and took < 4, (status, took)
    beat, took = timed_heartbeat(server)
    checks = beat.json()["checks"]
    assert beat.status_code == 503 and took < 2 and checks["queue"].startswith("error"), checks
    assert checks["database"] == checks["blob_store"] == "ok", checks


def test_postgres_killed_every_ingest_path_answers_503(fault_env, own_postgres, own_redis, processes) -> None:
    env = {**fault_env, **FAST_TIMEOUTS}
    server = processes.serve(env)
    worker = processes.worker(env)
    key, ledger = ingest_key(own_postgres), Ledger()
    for tag in range(5):
        assert upload(server, key, tag, ledger) == 200
    settle(own_postgres, ledger)  # the worker is up (a worker starting without a database exits)
    own_postgres.kill()
    for request_key in (key, "never-seen-key"):  # a project in the key cache, and a lookup
        for path, body, headers in ingest_requests(request_key):
            response = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=20)
            assert (response.status_code, response.headers.get("retry-after")) == (503, "60"), (path, response.text)
    for tag in range(5, 15):
        status, took = timed_upload(server, key, tag, ledger)
        assert status == 503 and took < 5, (status, took)
    beat, took = timed_heartbeat(server)
    assert beat.status_code == 503 and took < 2 and beat.json()["checks"]["database"].startswith("error")
    own_postgres.start()
    ensure_worker(worker, processes, env)
    for tag in range(15, 20):
        assert upload(server, key, tag, ledger) == 200
    counts = settle(own_postgres, ledger)
    assert counts == {"processed": 10}, counts
    assert (len(ledger.answered), ledger.refused, ledger.dropped) == (10, {503: 10}, 0)


def test_postgres_hung_upload_and_heartbeat_answer_in_seconds(fault_env, own_postgres, own_redis,
                                                              processes) -> None:
    env = {**fault_env, **FAST_TIMEOUTS}
    server = processes.serve(env)
    processes.worker(env)
    key, ledger = ingest_key(own_postgres), Ledger()
    for tag in range(3):
        assert upload(server, key, tag, ledger) == 200
    settle(own_postgres, ledger)  # no job holds the database when it freezes
    own_postgres.pause()
    try:
        beat, took = timed_heartbeat(server)
        checks = beat.json()["checks"]
        assert beat.status_code == 503 and took < 2, (beat.status_code, took)
        assert checks["database"].startswith("error") and checks["queue"] == checks["blob_store"] == "ok", checks
        for tag in range(3, 6):  # the first waits out a pooled connection, then connects
            status, took = timed_upload(server, key, tag, ledger)
            assert status == 503 and took < 6, (status, took)
    finally:
        own_postgres.resume()
    wait_until(lambda: heartbeat(server).status_code == 200, 15, "the heartbeat to say ok again")
    for tag in range(6, 9):
        assert upload(server, key, tag, ledger) == 200
    counts = settle(own_postgres, ledger)
    assert counts == {"processed": 6}, counts
    assert (len(ledger.answered), ledger.refused, ledger.dropped) == (6, {503: 3}, 0)


def test_redis_killed_uploads_are_stored_and_processed_when_it_returns(fault_env, own_postgres,
                                                                       own_redis: RedisServer, processes) -> None:
    env = {**fault_env, **FAST_TIMEOUTS}
    server = processes.serve(env)
    worker = processes.worker(env)
    key, ledger = ingest_key(own_postgres), Ledger()
    assert upload(server, key, 0, ledger) == 200
    settle(own_postgres, ledger)  # the worker is up before Redis goes
    own_redis.kill()
    uploads_without_queue(server, key, range(1, 9), ledger)
    own_redis.start()  # empty: the sweeper enqueues what waits in `received`
    ensure_worker(worker, processes, env)
    counts = settle(own_postgres, ledger)
    assert counts == {"processed": 9}, counts
    assert (len(ledger.answered), ledger.refused, ledger.dropped) == (9, {}, 0)


def test_redis_hung_uploads_answer_200_in_seconds(fault_env, own_postgres, own_redis: RedisServer,
                                                  processes) -> None:
    env = {**fault_env, **FAST_TIMEOUTS}
    server = processes.serve(env)
    worker = processes.worker(env)
    key, ledger = ingest_key(own_postgres), Ledger()
    assert upload(server, key, 0, ledger) == 200
    settle(own_postgres, ledger)
    own_redis.pause()
    try:
        uploads_without_queue(server, key, range(1, 4), ledger)
    finally:
        own_redis.resume()
    ensure_worker(worker, processes, env)
    counts = settle(own_postgres, ledger)
    assert counts == {"processed": 4}, counts
    assert (len(ledger.answered), ledger.refused, ledger.dropped) == (4, {}, 0)
