"""Services a fault test owns: its own redis-server, its own PostgreSQL cluster and real
`crashd serve` / `crashd worker` processes, all on free loopback ports.

The shared services (Redis on 6379, PostgreSQL on 5432) are never touched here: a fault test
kills, stops or freezes (SIGSTOP) only what it started. Everything is torn down by the
fixtures in tests/faults/conftest.py, also when a test fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
import psycopg

from minidump_writer import small_dump
from uploads import minidump_upload

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
ADMIN_TOKEN = "fault-admin-token-0123456789"


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll check() until it is true. Raises AssertionError naming what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tree(pid: int) -> list[int]:
    """pid and its children (one level: PostgreSQL's backends are children of the postmaster)."""
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.split("/")[2]))
    return [pid, *children]


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class RedisServer:
    """redis-server on a free port, in memory only (no RDB, no AOF)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start (or restart, on the same port) and wait until it accepts connections."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _listening(self.port), 10, f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL: the queue and every key in it are gone, as after a crash of the host."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections open but nothing answers, as a hung server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
        self.kill()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    assert path, f"PostgreSQL's {name} not found (apt-get install postgresql)"
    return path


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


_TEMPLATE: Path | None = None


def _template_cluster() -> Path:
    """One initdb per test session (about 2 s); each cluster starts as a copy of it."""
    global _TEMPLATE
    if _TEMPLATE is None:
        root = Path(tempfile.mkdtemp(prefix="crashd-pg-template-"))
        data = root / "data"
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                     "-E", "UTF8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _TEMPLATE = data
    return _TEMPLATE


class PostgresCluster:
    """A PostgreSQL cluster of its own (a copy of one initdb) on a free port, trust auth,
    with a database `crashd`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="crashd-pg-"))
        self.data = self.root / "data"
        shutil.copytree(_template_cluster(), self.data, symlinks=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.root)], check=True)
        self.data.chmod(0o700)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._created = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/crashd"

    def start(self) -> "PostgresCluster":
        """Start (or restart, same port and data) and wait until it accepts connections."""
        argv = [_pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.root}", "-c", "fsync=off",
                "-c", "full_page_writes=off", "-c", "max_connections=100"]
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - kept open by the child
        self.proc = subprocess.Popen(_as_postgres(argv), stdout=log, stderr=log)
        log.close()
        wait_until(self._accepts, 30, f"PostgreSQL on port {self.port}")
        if not self._created:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
                conn.execute("CREATE DATABASE crashd")
            self._created = True
        return self

    def _accepts(self) -> bool:
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def postmaster_pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends: connections drop, new ones are refused."""
        pid = self.postmaster_pid()
        if pid is not None:
            _signal_all(_tree(pid), signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        wait_until(lambda: not _listening(self.port), 10, "PostgreSQL to stop listening")

    def pause(self) -> None:
        """Freeze the postmaster and every backend (SIGSTOP): connects and queries hang."""
        pid = self.postmaster_pid()
        assert pid is not None, "PostgreSQL is not running"
        _signal_all(_tree(pid), signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw the cluster, and the `runuser` that started it: it stops itself when its child
        stops, as su does."""
        pid = self.postmaster_pid()
        if pid is not None:
            _signal_all(_tree(pid), signal.SIGCONT)
        if self.proc is not None:
            _signal_all([self.proc.pid], signal.SIGCONT)

    def stop(self) -> None:
        """Tear down: resume if frozen, kill, remove the data folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Run one statement on the crashd database; the rows it returns."""
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []

    def statuses(self) -> dict[str, int]:
        """Crashes by status."""
        return dict(self.query("SELECT status, count(*) FROM crashes GROUP BY status"))


class CrashdProcess:
    """A real `crashd serve` or `crashd worker` process with only the given CRASHD_* env;
    its output goes to a log file (read it with .log())."""

    def __init__(self, command: str, env: dict[str, str], workdir: Path, *args: str) -> None:
        self.command = command
        self.port = free_port() if command == "serve" else None
        self.env = env
        self.logfile = workdir / f"{command}-{time.monotonic_ns()}.log"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "CrashdProcess":
        """Start; a server is waited for until /__lbheartbeat__ answers (when wait)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
        argv = [sys.executable, "-m", "server.cli", self.command, *self.args]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, env={**base, "PYTHONUNBUFFERED": "1", **self.env},
                                         stdout=log, stderr=subprocess.STDOUT)
        if wait and self.port is not None:
            wait_until(self._answers, 30, f"crashd serve on {self.port}: {self.log()[-2000:]}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"crashd {self.command} exited {self.proc.returncode}: {self.log()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/__lbheartbeat__", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send sig (SIGKILL: no clean-up at all) and wait for the process to end."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


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
