"""Fixtures of the fault tests: each test gets its own redis-server and PostgreSQL cluster on
free ports, and real `crashd serve` / `crashd worker` processes (tests/faults/services.py,
which also holds the accounting every fault ends with: uploads answered 200 = stored =
processed). tests/faults is a package (`faults.conftest`, `faults.services`) so that this
conftest and tests/conftest.py do not both import as `conftest` in one run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from faults.services import ADMIN_TOKEN, CrashdProcess, PostgresCluster, RedisServer


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


