"""Fixtures of the fault tests: each test gets its own redis-server and PostgreSQL cluster on
free ports (tests/faults/services.py), real `crashd serve` / `crashd worker` processes, and
the accounting every fault ends with: uploads answered 200 = stored = processed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from minidump_writer import small_dump
from services import CrashdProcess, PostgresCluster, RedisServer, wait_until
from uploads import minidump_upload

ADMIN_TOKEN = "fault-admin-token-0123456789"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own; killed at the end."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own (database `crashd`); removed at the end."""
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fault_env(tmp_path: Path, own_postgres: PostgresCluster, own_redis: RedisServer) -> dict[str, str]:
    """CRASHD_* variables for processes on the test's own services, with a fast sweeper.
    Tests may change or add variables before starting processes."""
    return {
        "CRASHD_DATA_DIR": str(tmp_path / "data"),
        "CRASHD_DATABASE_URL": own_postgres.url,
        "CRASHD_REDIS_URL": own_redis.url,
        "CRASHD_QUEUE_NAME": f"crashd-fault-{uuid.uuid4().hex[:6]}",
        "CRASHD_ADMIN_TOKEN": ADMIN_TOKEN,
        "CRASHD_SWEEPER_INTERVAL_SECONDS": "1",
        "CRASHD_SWEEPER_STUCK_AFTER_SECONDS": "2",
    }


@pytest.fixture
def processes(tmp_path: Path) -> Iterator["Processes"]:
    """Start crashd processes with processes.serve(env) / processes.worker(env); all are
    stopped at the end (their logs are attached to a failing test's output)."""
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        for proc in procs.started:
            proc.stop()
        for proc in procs.started:
            if proc.proc is not None and proc.proc.returncode not in (0, -15, -9, None):
                print(f"--- crashd {proc.command} log ---\n{proc.log()[-4000:]}")


@dataclass
class Processes:
    workdir: Path
    started: list[CrashdProcess] = field(default_factory=list)

    def serve(self, env: dict[str, str], wait: bool = True) -> CrashdProcess:
        return self._start("serve", env, wait)

    def worker(self, env: dict[str, str]) -> CrashdProcess:
        return self._start("worker", env, False)

    def _start(self, command: str, env: dict[str, str], wait: bool) -> CrashdProcess:
        proc = CrashdProcess(command, dict(env), self.workdir)
        self.started.append(proc)
        return proc.start(wait=wait)


@dataclass
class Ledger:
    """What clients were told: the crash ids answered 200 and every other answer seen."""

    answered: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)  # status -> count (503, 413 ...)
    dropped: int = 0  # connections closed without an answer

    @property
    def server_errors(self) -> int:
        """Answers 500-599 other than 503 (the only 5xx a dependency outage may give)."""
        return sum(n for status, n in self.refused.items() if status >= 500 and status != 503)


def ingest_key(cluster: PostgresCluster, project: str = "default") -> str:
    """The ingest key of a project `crashd serve` created."""
    rows = cluster.query("SELECT ingest_key FROM projects WHERE name = %s", project)
    assert rows, f"no project {project!r}"
    return rows[0][0]


def upload(server: CrashdProcess, key: str, tag: int, ledger: Ledger, timeout: float = 30.0) -> int | None:
    """Upload one distinct small dump to the minidump endpoint; record the answer in ledger.
    Returns the status code, or None when the connection ended without an answer."""
    body, ctype = minidump_upload(small_dump(tag), guid=f"tester-{tag % 7}", ver="1.0")
    try:
        response = httpx.post(f"{server.url}/api/1/minidump/?sentry_key={key}", content=body,
                              headers={"Content-Type": ctype}, timeout=timeout)
    except httpx.TimeoutException:
        raise
    except httpx.TransportError:
        ledger.dropped += 1
        return None
    if response.status_code == 200:
        ledger.answered.append(response.text.strip())
    else:
        ledger.refused[response.status_code] = ledger.refused.get(response.status_code, 0) + 1
    return response.status_code


def settle(cluster: PostgresCluster, ledger: Ledger, timeout: float = 60.0) -> dict[str, int]:
    """Wait until every crash answered 200 is stored and ended (processed or failed), and
    none is left in received/processing. Returns the final counts by status."""
    answered = set(ledger.answered)

    def done() -> bool:
        rows = cluster.query("SELECT crash_id, status FROM crashes")
        stored = {crash_id for crash_id, _ in rows}
        ended = {crash_id for crash_id, status in rows if status in ("processed", "failed")}
        return answered <= stored and answered <= ended and len(ended) == len(rows)

    wait_until(done, timeout, f"{len(answered)} answered crashes to be processed: {cluster.statuses()}", 0.5)
    counts = cluster.statuses()
    stored = {row[0] for row in cluster.query("SELECT crash_id FROM crashes")}
    assert answered <= stored, f"answered 200 but not stored: {sorted(answered - stored)[:5]}"
    return counts


def heartbeat(server: CrashdProcess, timeout: float = 5.0) -> httpx.Response:
    return httpx.get(f"{server.url}/__heartbeat__", timeout=timeout)
