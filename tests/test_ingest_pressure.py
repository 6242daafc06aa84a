"""The embedded default's worker gives way to busy web processes (workers/ingest_pressure.py):
real processes that burn CPU or sleep stand in for the server, read from /proc."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from test_db_queue import db_crashd, status, upload  # noqa: F401 - db_crashd is a fixture

from workers import ingest_pressure
from workers.db_queue import DatabaseWorker
from workers.ingest_pressure import IngestPressure, children, cpu_seconds, is_worker

from conftest import Crashd

BURN = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"
SLEEP = "import time; time.sleep(60)"


def started(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture(autouse=True)
def low_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy from a tenth of a core: a process burning a core gets less than BUSY_SHARE's 3/4
    on a box that the test suite keeps busy, and more than a tenth; a sleeper gets none."""
    monkeypatch.setattr(ingest_pressure, "BUSY_SHARE", 0.1)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for process in running:
        process.kill()
        process.wait()


def sampled(pressure: IngestPressure) -> bool:
    """busy after two samples SAMPLE_SECONDS and a little apart."""
    pressure.check()
    time.sleep(ingest_pressure.SAMPLE_SECONDS + 0.1)
    return pressure.check()


def test_a_server_burning_a_core_is_busy_and_the_worker_pauses_three_times_its_job(
        processes: list[subprocess.Popen[bytes]]) -> None:
    burner = started(BURN)
    processes.append(burner)
    pressure = IngestPressure(burner.pid)
    assert sampled(pressure) is True
    assert pressure.pause_after(0.02) == pytest.approx(0.06)
    assert pressure.pause_after(10.0) == ingest_pressure.MAX_PAUSE_SECONDS  # capped
    assert pressure.paused_seconds == pytest.approx(0.06 + ingest_pressure.MAX_PAUSE_SECONDS)


def test_an_idle_server_is_not_busy(processes: list[subprocess.Popen[bytes]]) -> None:
    sleeper = started(SLEEP)
    processes.append(sleeper)
    pressure = IngestPressure(sleeper.pid)
    assert sampled(pressure) is False
    assert pressure.pause_after(0.02) == 0.0


@contextlib.contextmanager
def server_with_two_children(tmp_path: Path, second_args: list[str]) -> Iterator[tuple[int, int, int]]:
    """A server process (sleeping) with two children burning a core each, the second with
    second_args after its code; yields (server, first child, second child) and kills them."""
    pids = tmp_path / "pids"
    code = ("import subprocess, sys, time\n"
            f"burn = {BURN!r}\n"
            f"kids = [subprocess.Popen([sys.executable, '-c', burn, *extra]) for extra in ([], {second_args!r})]\n"
            f"open({str(pids)!r}, 'w').write(' '.join(str(k.pid) for k in kids))\n"
            "time.sleep(60)\n")
    server = started(code)
    try:
        deadline = time.monotonic() + 30
        while not (pids.exists() and len(pids.read_text().split()) == 2):
            assert time.monotonic() < deadline, "the server did not start its children"
            time.sleep(0.05)
        first, second = (int(p) for p in pids.read_text().split())
        yield server.pid, first, second
    finally:
        for pid in pids.read_text().split() if pids.exists() else []:
            subprocess.run(["kill", "-9", pid], check=False)
        server.kill()
        server.wait()


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """pid stopped (SIGSTOP) while inside, then continued."""
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    try:
        yield
    finally:
        subprocess.run(["kill", "-CONT", str(pid)], check=True)


def test_the_servers_other_children_count_and_the_worker_itself_does_not(tmp_path: Path) -> None:
    # a server (sleeping) with two children: a web process burning a core, and "the worker"
    # (burning too, but it is the one asking, so it must not count)
    with server_with_two_children(tmp_path, []) as (server, web, worker):
        assert sorted(children(server)) == sorted([web, worker])
        assert IngestPressure(server, me=worker).web_cpu(time.monotonic()) is not None
        assert sampled(IngestPressure(server, me=worker)) is True  # the web child's core
        with stopped(web):  # the web child stops working
            assert sampled(IngestPressure(server, me=worker)) is False  # its own burning is not counted


def test_the_other_worker_processes_do_not_count(tmp_path: Path) -> None:
    """`crashd serve --worker-processes 2`: a worker's sibling (``... server.cli worker``) is
    not a web process; burning a core, it does not make the server busy."""
    with server_with_two_children(tmp_path, ["server.cli", "worker"]) as (server, web, sibling):
        assert is_worker(sibling) and not is_worker(web) and not is_worker(server)
        assert sampled(IngestPressure(server, me=os.getpid())) is True  # the web child's core
        with stopped(web):
            assert sampled(IngestPressure(server, me=os.getpid())) is False  # the sibling's is not counted


def test_no_server_or_a_gone_one_is_never_busy(processes: list[subprocess.Popen[bytes]]) -> None:
    assert sampled(IngestPressure(None)) is False
    gone = started("pass")
    gone.wait()
    assert cpu_seconds(gone.pid) is None
    assert sampled(IngestPressure(gone.pid)) is False


def test_the_worker_keeps_processing_while_it_gives_way(db_crashd: Crashd,
                                                        processes: list[subprocess.Popen[bytes]]) -> None:
    burner = started(BURN)
    processes.append(burner)
    crash_ids = [upload(db_crashd, tag) for tag in (41, 42, 43)]
    pressure = IngestPressure(burner.pid)
    assert sampled(pressure) is True
    worker = DatabaseWorker(db_crashd.state.ctx.engine, threading.Event(), poll_seconds=0.01, pressure=pressure)
    worker.run(burst=True)
    assert worker.jobs == 3
    assert [status(db_crashd, c) for c in crash_ids] == ["processed"] * 3
    assert pressure.paused_seconds > 0  # it paused after its jobs, and still did them all
