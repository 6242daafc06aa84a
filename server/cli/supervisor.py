"""The worker process that ``crashd serve`` starts and supervises on the embedded default (no
Redis): ``crashd worker`` taking crashes from the database (workers/db_queue.py).

It is restarted when it exits (after RESTART_SECONDS, doubling up to MAX_RESTART_SECONDS
while it keeps dying young), stopped with SIGTERM when the server stops, and dies with the
server if the server is killed (Linux's parent-death signal), so no orphan keeps the database.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("crashd.serve")

RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 30.0
YOUNG_SECONDS = 10.0  # a worker that exits sooner than this counts as dying young
STOP_SECONDS = 30.0  # SIGTERM, then SIGKILL after this (a job in flight finishes first)
PR_SET_PDEATHSIG = 1
PARENT_VARIABLE = "_CRASHD_SUPERVISOR_PID"  # set for the child: the server it must die with


def die_with_supervisor() -> bool:
    """In a worker the server started: ask for SIGTERM when the server dies, even by SIGKILL
    (Linux's parent-death signal). False when the server is already gone (exit then)."""
    parent = os.environ.get(PARENT_VARIABLE)
    if not parent:
        return True
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the server's stop() still ends it
        pass
    return str(os.getppid()) == parent


class WorkerSupervisor:
    """Runs ``crashd worker`` in a child process and keeps it running."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "server.cli", "worker"]
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="crashd-worker-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        env = {**os.environ, PARENT_VARIABLE: str(os.getpid())}
        self.process = subprocess.Popen(self.command, env=env)
        self.started = time.monotonic()
        log.info("worker process %d started", self.process.pid)

    def _watch(self) -> None:
        delay = RESTART_SECONDS
        while not self._stopping.is_set():
            assert self.process is not None
            code = self.process.wait()
            if self._stopping.is_set():
                return
            young = time.monotonic() - self.started < YOUNG_SECONDS
            delay = min(delay * 2, MAX_RESTART_SECONDS) if young else RESTART_SECONDS
            log.error("worker process %d exited with %s; starting another in %.0f s", self.process.pid, code, delay)
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            self._spawn()

    def stop(self) -> None:
        """SIGTERM the worker (it finishes its job), SIGKILL after STOP_SECONDS."""
        self._stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("worker process %d did not stop in %.0f s: killed", process.pid, STOP_SECONDS)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
