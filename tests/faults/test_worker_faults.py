"""Faults of the processing side (issue 11 items 6, 7, 9 and 14), on the test's own Redis and
PostgreSQL with real `crashd serve` and `crashd worker` processes. Each ends with the count:
uploads answered 200 = stored = processed, nothing left in received or processing.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from faults.services import CrashdProcess, Ledger, PostgresCluster, ingest_key, settle, upload, wait_until
from minidump_writer import thread_copies_dump
from uploads import minidump_upload

FAST = {
    "CRASHD_JOB_TIMEOUT_SECONDS": "2",  # a lost worker's crash is retried after 2 x 2 s
    "CRASHD_RETRY_BACKOFF_SECONDS": "0.5",
}


def all_processed(cluster: PostgresCluster, ledger: Ledger, timeout: float = 60.0) -> None:
    """The fault's count: every upload answered 200 is stored and processed, none failed,
    none stuck, each with its report and its group."""
    counts = settle(cluster, ledger, timeout)
    assert counts == {"processed": len(ledger.answered)}, counts
    incomplete = cluster.query("SELECT count(*) FROM crashes WHERE signature IS NULL OR group_id IS NULL"
                               " OR processed->>'report_key' IS NULL")
    assert incomplete == [(0,)]
    print(f"answered 200: {len(ledger.answered)}, stored: {sum(counts.values())}, processed: {counts['processed']}")


def wait_processing(cluster: PostgresCluster, crash_id: str) -> None:
    """Wait until a worker has started on crash_id."""
    wait_until(lambda: cluster.query("SELECT status FROM crashes WHERE crash_id = %s", crash_id) == [("processing",)],
               20, f"a worker to start on {crash_id}", 0.05)


def statuses(cluster: PostgresCluster, crash_ids: list[str]) -> dict[str, tuple[str, int]]:
    rows = cluster.query("SELECT crash_id, status, attempts FROM crashes WHERE crash_id = ANY(%s)", crash_ids)
    return {crash_id: (status, attempts) for crash_id, status, attempts in rows}


class SilentServer:
    """A TCP server that accepts connections and never answers: a hung symbol server, so that
    a processing job is still running when the test kills its worker."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        for conn in [self.sock, *self.held]:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def upload_dump(server: CrashdProcess, key: str, dump: bytes, ledger: Ledger) -> str:
    body, ctype = minidump_upload(dump, guid="tester-slow", ver="1.0")
    response = httpx.post(f"{server.url}/api/1/minidump/?sentry_key={key}", content=body,
                          headers={"Content-Type": ctype}, timeout=30)
    assert response.status_code == 200, response.text
    ledger.answered.append(response.text.strip())
    return ledger.answered[-1]


def start_with_slow_job(env: dict[str, str], cluster: PostgresCluster,
                        processes) -> tuple[CrashdProcess, CrashdProcess, str, Ledger, str]:
    """A server and a worker; 5 uploads, then one whose job waits on the symbol server of env
    (a dump with a module), returned once a worker runs it: (server, worker, key, ledger, slow)."""
    server, worker = processes.serve(env), processes.worker(env)
    key, ledger = ingest_key(cluster), Ledger()
    for tag in range(5):
        assert upload(server, key, tag, ledger) == 200
    slow = upload_dump(server, key, thread_copies_dump(1), ledger)
    wait_processing(cluster, slow)
    return server, worker, key, ledger, slow


def test_worker_killed_mid_job_its_crash_is_retried(fault_env, own_postgres, processes, silent_server) -> None:
    """Item 6: SIGKILL of the worker while it processes a crash (waiting on a hung symbol
    server); a new worker processes it once the sweeper sees its lease run out."""
    env = {**fault_env, **FAST, "CRASHD_SYMBOL_URLS": silent_server.url}
    server, worker, key, ledger, slow = start_with_slow_job(env, own_postgres, processes)
    worker.kill()  # SIGKILL mid-job
    silent_server.close()  # from now on the symbol server refuses at once
    for tag in range(5, 10):
        assert upload(server, key, tag, ledger) == 200
    processes.worker(env)
    all_processed(own_postgres, ledger)
    assert own_postgres.query("SELECT attempts FROM crashes WHERE crash_id = %s", slow) == [(0,)]  # processed
    assert "the worker stopped before it finished" in server.log() + "".join(p.log() for p in processes.started)


def test_redis_killed_and_restarted_workers_survive_and_resume(fault_env, own_postgres, own_redis, processes,
                                                               silent_server) -> None:
    """Item 7: Redis dies (its queue with it) while a job runs and uploads keep coming. The
    job's end cannot reach Redis, which used to quit the worker; now it waits and resumes,
    the server keeps answering 200, and its sweeper enqueues what was stored meanwhile."""
    env = {**fault_env, **FAST, "CRASHD_SYMBOL_URLS": silent_server.url}
    server, worker, key, ledger, slow = start_with_slow_job(env, own_postgres, processes)
    own_redis.kill()
    silent_server.close()  # the job goes on, and ends while Redis is down
    for tag in range(5, 15):
        assert upload(server, key, tag, ledger) == 200  # persisted; enqueued later by the sweeper
    time.sleep(3)
    assert worker.alive(), worker.log()[-3000:]
    own_redis.start()  # same port, empty: every queued job is gone
    for tag in range(15, 20):
        assert upload(server, key, tag, ledger) == 200
    all_processed(own_postgres, ledger)
    assert worker.alive()
    assert worker.log().count("Redis unreachable") == 1, worker.log()[-3000:]  # a line a minute, not per attempt
    assert "Redis answers again" in worker.log()


def test_worker_started_while_redis_is_down_waits_and_resumes(fault_env, own_postgres, own_redis, processes) -> None:
    """Item 7: a worker started during a Redis outage waits for it instead of exiting."""
    env = {**fault_env, **FAST}
    server = processes.serve(env)
    own_redis.kill()
    key, ledger = ingest_key(own_postgres), Ledger()
    for tag in range(8):
        assert upload(server, key, tag, ledger) == 200
    worker = processes.worker(env)
    time.sleep(3)
    assert worker.alive(), worker.log()[-3000:]
    assert statuses(own_postgres, ledger.answered) == {c: ("received", 0) for c in ledger.answered}
    own_redis.start()
    all_processed(own_postgres, ledger)
    assert worker.alive()


def test_worker_started_while_postgres_is_down_waits_and_resumes(fault_env, own_postgres, own_redis,
                                                                 processes) -> None:
    """A worker started while PostgreSQL is down waits for it (a line a minute) instead of
    exiting, then works the queue the server filled before the outage."""
    env = {**fault_env, **FAST}
    server = processes.serve(env)
    key, ledger = ingest_key(own_postgres), Ledger()
    for tag in range(6):
        assert upload(server, key, tag, ledger) == 200
    own_postgres.kill()
    worker = processes.worker(env)
    # its first line comes once the worker has started and failed to reach PostgreSQL: seconds
    # under load (the suite runs in two processes)
    wait_until(lambda: "the database unreachable" in worker.log() or not worker.alive(), 60,
               "the worker's line about the database")
    assert worker.alive(), worker.log()[-3000:]
    own_postgres.start()
    all_processed(own_postgres, ledger)
    assert worker.alive()


def test_full_blob_store_crashes_are_retried_not_processed(fault_env, own_postgres, processes, tmp_path: Path) -> None:
    """Item 9: while reports cannot be written (a file where the folder processed/ goes: writes
    fail as on a full disk, for root too), crashes go back for retries instead of ending
    `processed` without a signature or group; once the store works, all are processed."""
    env = {**fault_env, **FAST, "CRASHD_MAX_ATTEMPTS": "50"}
    blocker = Path(env["CRASHD_DATA_DIR"]) / "blobs" / "processed"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"")
    server = processes.serve(env)
    processes.worker(env)
    key, ledger = ingest_key(own_postgres), Ledger()
    for tag in range(10):
        assert upload(server, key, tag, ledger) == 200
    wait_until(lambda: all(attempts >= 1 for _, attempts in statuses(own_postgres, ledger.answered).values())
               and len(statuses(own_postgres, ledger.answered)) == 10, 30, "every crash to fail an attempt")
    assert own_postgres.query("SELECT count(*) FROM crashes WHERE status = 'processed'") == [(0,)]
    errors = {e for (e,) in own_postgres.query("SELECT DISTINCT processing_error FROM crashes WHERE attempts > 0")}
    assert all(e.startswith("ReportRule: the blob store could not read or write a blob") for e in errors), errors
    blocker.unlink()
    all_processed(own_postgres, ledger)


def test_orphan_blobs_are_deleted_after_the_grace_period(fault_env, own_postgres, processes) -> None:
    """Item 14: blobs an upload killed before its 200 left behind (a dump, its annotations, an
    unfinished write) are deleted by the server's sweeper after the grace period; the stored
    crashes keep theirs."""
    env = {**fault_env, **FAST, "CRASHD_ORPHAN_BLOB_GRACE_SECONDS": "2"}
    server = processes.serve(env)
    processes.worker(env)
    key, ledger = ingest_key(own_postgres), Ledger()
    for tag in range(5):
        assert upload(server, key, tag, ledger) == 200
    all_processed(own_postgres, ledger)
    root = Path(env["CRASHD_DATA_DIR"]) / "blobs"
    kept = sorted(p for p in root.rglob("*") if p.is_file())
    orphan, day = str(uuid.uuid4()), time.strftime("%Y-%m-%d", time.gmtime())
    left = [root / "minidumps" / day / f"{orphan}.dmp", root / "annotations" / day / f"{orphan}.json",
            root / "attachments" / day / orphan / "00-log.txt", root / "minidumps" / day / ".tmp-k1ll3d.part"]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a killed upload")
    wait_until(lambda: not any(p.exists() for p in left), 15, "the orphan blobs to be deleted")
    assert all(p.exists() for p in kept)
    all_processed(own_postgres, ledger)
