"""Uploads first: the embedded default's worker process gives way while the web processes are
busy (workers/db_queue.py asks between jobs).

``crashd serve`` on one machine runs its web process(es) and this worker side by side. A
crash takes the worker 20-25 ms of CPU and an upload the web process about 3 ms
(docs/benchmarks.md), so in a burst of uploads a worker running flat out took the CPU the
uploads needed: the uploads were answered later, and their clients waited. Here the worker
reads the CPU time of the server that started it (its parent, named by the environment
variable the supervisor sets) and of that server's other children (``--workers N`` web
processes; the other workers of ``--worker-processes M`` are not counted), from /proc.
While they used more than BUSY_SHARE of a core over the last SAMPLE_SECONDS, the worker
pauses after each job for YIELD_FACTOR times the job's length (at most
MAX_PAUSE_SECONDS): it keeps processing, at about a quarter of a core, and the
backlog is worked off at full speed when the burst is over. A steady 100 uploads/s of real
game-client dumps keeps the web process near 0.3-0.4 of a core, under the share
(bench/steady.py); the bench's 16 uploads in flight keep it at a whole core. Off Linux, or with no server above the
worker (``crashd worker`` started by hand, or on RQ), it never pauses.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("crashd.worker")

BUSY_SHARE = 0.75  # of one core, the web processes' CPU over the last sample
SAMPLE_SECONDS = 0.2
YIELD_FACTOR = 3.0  # pause = this many times the job's length: the worker takes <= 1/4 of a core
MAX_PAUSE_SECONDS = 0.5
CHILDREN_EVERY_SECONDS = 5.0  # the server's children (web processes) are listed again this often
LOG_EVERY_SECONDS = 60.0  # "giving way" is logged at most this often
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of pid (all its threads), or None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """The child processes of pid (whichever of its threads started them)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                found.extend(int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
            except OSError:  # the thread ended meanwhile
                continue
    except OSError:
        return []
    return found


def is_worker(pid: int) -> bool:
    """Whether pid is a crashd worker process (``python -m server.cli worker``, as
    server/cli/supervisor.py starts one): a sibling worker of ``crashd serve
    --worker-processes M`` is not a web process."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"server.cli" in args and b"worker" in args


class IngestPressure:
    """Whether the web processes of the server above this worker are busy (see the module)."""

    def __init__(self, server_pid: int | None, *, me: int | None = None) -> None:
        self.server_pid = server_pid
        self.me = os.getpid() if me is None else me
        self._web: list[int] = []
        self._listed = float("-inf")
        self._last: tuple[float, float] | None = None  # (monotonic, web CPU seconds)
        self.busy = False
        self.paused_seconds = 0.0  # how long this worker gave way in all
        self._logged = float("-inf")

    @classmethod
    def of_supervisor(cls, variable: str) -> "IngestPressure":
        """For the server named by the environment variable (None: never busy)."""
        value = os.environ.get(variable, "")
        return cls(int(value) if value.isdigit() else None)

    def web_cpu(self, now: float) -> float | None:
        """CPU seconds of the server and its other children, or None (no server, not Linux)."""
        if self.server_pid is None:
            return None
        if now - self._listed >= CHILDREN_EVERY_SECONDS:
            self._web = [pid for pid in children(self.server_pid) if pid != self.me and not is_worker(pid)]
            self._listed = now
        total = cpu_seconds(self.server_pid)
        if total is None:
            return None
        return total + sum(cpu_seconds(pid) or 0.0 for pid in self._web)

    def check(self) -> bool:
        """Update busy from a new sample once SAMPLE_SECONDS have passed; returns busy."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < SAMPLE_SECONDS:
            return self.busy
        used = self.web_cpu(now)
        if used is None:
            self.busy, self._last = False, None
            return False
        if self._last is not None:
            share = (used - self._last[1]) / (now - self._last[0])
            if share > BUSY_SHARE and not self.busy and now - self._logged >= LOG_EVERY_SECONDS:
                self._logged = now
                log.info("the web processes are busy (%.0f%% of a core): the worker gives way to the uploads "
                         "(%.1f s paused so far)", share * 100, self.paused_seconds)
            self.busy = share > BUSY_SHARE
        self._last = (now, used)
        return self.busy

    def pause_after(self, job_seconds: float) -> float:
        """How long to wait after a job of job_seconds: 0 unless the web processes are busy."""
        if not self.check():
            return 0.0
        pause = min(MAX_PAUSE_SECONDS, YIELD_FACTOR * job_seconds)
        self.paused_seconds += pause
        return pause
