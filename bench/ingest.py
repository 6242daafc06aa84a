"""Ingest benchmark: concurrent 400 KB minidump uploads against crashd and against a ceiling.

Run from the repository root: ``.venv/bin/python bench/ingest.py [--seconds S] [--rounds R]``
(``--help`` for the rest). Results and how to read them: docs/benchmarks.md.

The load comes from wrk (Debian's package ``wrk``; ``--client httpx`` uses this process
instead, which eats the server's CPU) with bench/ingest_wrk.lua: C connections (16), a
warm-up, then S seconds (15); R rounds (3) interleave the targets, each round on fresh
servers. Every upload is a distinct dump (its header timestamp changes) with a distinct
``guid``, so crashd's retry dedupe never short-cuts one, and the crashes stored are counted
against the 200s wrk saw. Server CPU is that of the whole process tree (web processes and
the worker), read from /proc; wrk's own CPU is printed apart. Targets:
- ``crashd sqlite``: ``crashd serve`` with its defaults, SQLite + its worker process.
- ``crashd postgres`` (``--backend postgres|both``): PostgreSQL + RQ on Redis, in a scratch
  database and queue that are removed afterwards; no worker runs, jobs wait in the queue.
- ``ceiling``: a Starlette endpoint in this file that streams the body as sent to a temp file,
  then flush + fsync + rename (as FSBlobStore.put_file) and answers 200. It parses nothing.
The dump is 400 KB, the median crash size Mozilla reports: a system-info stream plus padding
that gzip shrinks about 5.6x, like the real dumps of the corpus (constant padding would shrink
1000x and flatter the gzip mode).

This file is longer than our usual modules on purpose: the ceiling server has to live in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from starlette.applications import Starlette

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from workers.ingest_pressure import cpu_seconds  # noqa: E402 - /proc/<pid>/stat, as the worker reads it

from minidump_writer import MinidumpWriter  # noqa: E402
from uploads import minidump_upload  # noqa: E402

HOST = "127.0.0.1"
DUMP_SIZE = 400 * 1024
PADDING_STREAM = 0x4767_0100  # the padding stream type of tests/minidump_writer.small_dump
TIMESTAMP_OFFSET = 20  # MINIDUMP_HEADER: signature, version, count, directory RVA, checksum, time
RANDOM_BLOCK_SHARE = 0.15  # 16-byte random blocks among zeros: gzip -6 ratio ~5.6, the corpus median
SERVER_START_SECONDS = 60
Upload = tuple[bytes, dict[str, str]]


@dataclass
class Server:
    """A running target: its label, upload URL, process and (crashd only) database URL."""

    label: str
    url: str
    process: subprocess.Popen[bytes]
    database_url: str | None = None
    in_process_worker: bool = False  # crashd's own worker (process) takes the crashes


@dataclass
class Tally:
    """What the client saw: latency (s) of each 200, every other outcome, the crash ids."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


@dataclass
class Result:
    """One timed run of one target."""

    target: str
    encoding: str
    concurrency: int
    seconds: float
    tally: Tally
    server_cpu: float | None  # CPU seconds of the server process (all threads)
    client_cpu: float  # CPU seconds of this process
    box_busy: float | None  # share of all CPUs of the machine that were busy

    @property
    def ok(self) -> int:
        return len(self.tally.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def per_upload_ms(self, cpu_seconds: float | None) -> float:
        return math.nan if cpu_seconds is None else cpu_seconds * 1000 / max(1, self.ok)


# -- the uploads ----------------------------------------------------------------------------


def template_dump() -> bytearray:
    """A valid minidump of exactly DUMP_SIZE bytes: system info plus one padding stream."""
    base = len(MinidumpWriter().add_system_info().build())
    padding = bytearray(DUMP_SIZE - base - 12)  # 12: the padding stream's directory entry
    rng = random.Random(2026)
    for offset in range(0, len(padding) - 15, 16):
        if rng.random() < RANDOM_BLOCK_SHARE:
            padding[offset : offset + 16] = rng.randbytes(16)
    dump = MinidumpWriter().add_system_info().add_stream(PADDING_STREAM, bytes(padding)).build()
    assert len(dump) == DUMP_SIZE, len(dump)  # the writer pads streams to 4 bytes
    return bytearray(dump)


def build_uploads(template: bytearray, count: int, encoding: str, tags: Iterator[int]) -> list[Upload]:
    """count distinct multipart bodies and their headers. gzip: the whole body, zlib level 6."""
    uploads = []
    for tag in itertools.islice(tags, count):
        struct.pack_into("<I", template, TIMESTAMP_OFFSET, 1_700_000_000 + tag)
        body, content_type = minidump_upload(bytes(template), prod="BenchGame", ver="1.0.0",
                                             guid=str(uuid.uuid4()))
        headers = {"content-type": content_type}
        if encoding == "gzip":
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: with the gzip header
            body = compressor.compress(body) + compressor.flush()
            headers["content-encoding"] = "gzip"
        uploads.append((body, headers))
    return uploads


# -- the client -----------------------------------------------------------------------------


async def send_all(client: httpx.AsyncClient, url: str, uploads: list[Upload], concurrency: int) -> Tally:
    """POST every upload, concurrency at a time, and tally the answers."""
    tally, pending = Tally(), iter(uploads)

    async def one_connection() -> None:
        for body, headers in pending:  # one shared iterator: each upload is sent once
            start = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code == 200:
                tally.latencies.append(time.perf_counter() - start)
                tally.ids.add(response.text.strip())
            else:
                tally.errors.append(f"{response.status_code} {response.text[:100]!r}")

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return tally


async def measure(server: Server, encoding: str, warmup: list[Upload], uploads: list[Upload],
                  concurrency: int, max_seconds: float) -> Result:
    """Warm up, then time the uploads. Raises TimeoutError when a phase passes max_seconds."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        await asyncio.wait_for(send_all(client, server.url, warmup, concurrency), max_seconds)
        pid = server.process.pid
        server_before, client_before, box_before = cpu_seconds(pid), time.process_time(), machine_cpu()
        start = time.perf_counter()
        tally = await asyncio.wait_for(send_all(client, server.url, uploads, concurrency), max_seconds)
        seconds = time.perf_counter() - start
        server_after, client_after, box_after = cpu_seconds(pid), time.process_time(), machine_cpu()
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    box_busy = None
    if box_before and box_after and box_after[1] > box_before[1]:
        box_busy = (box_after[0] - box_before[0]) / (box_after[1] - box_before[1])
    return Result(server.label, encoding, concurrency, seconds, tally, server_cpu,
                  client_after - client_before, box_busy)


def machine_cpu() -> tuple[int, int] | None:
    """(busy, total) ticks of all CPUs from /proc/stat (busy: neither idle nor iowait)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


# -- wrk ------------------------------------------------------------------------------------

WRK_SCRIPT = REPO / "bench" / "ingest_wrk.lua"
GUID_HOLE = "G" * 36


@dataclass
class WrkResult:
    """One timed wrk run against one target, and what the server stored."""

    target: str
    round: int
    seconds: float
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu: float | None  # CPU seconds of the server's process tree
    wrk_cpu: float
    box_busy: float | None
    stored: int | None = None  # crashes in crashd's database after the run (warm-up included)
    answered: int = 0  # 200s of the warm-up and the timed run
    rss_mb: float | None = None  # the server tree's resident memory after the run
    processes: int = 1

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    @property
    def cpu_ms(self) -> float:
        return math.nan if self.server_cpu is None else self.server_cpu * 1000 / max(1, self.ok)


def write_pieces(template: bytearray, folder: Path) -> None:
    """The body's pieces for bench/ingest_wrk.lua: a, b, c around the guid and the dump's
    header timestamp, and the content type."""
    body, content_type = minidump_upload(bytes(template), guid=GUID_HOLE, prod="BenchGame", ver="1.0.0")
    hole = body.index(GUID_HOLE.encode())
    dump_at = body.index(bytes(template[:TIMESTAMP_OFFSET]))
    stamp = dump_at + TIMESTAMP_OFFSET
    assert hole < dump_at, "the guid field must come before the dump"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a").write_bytes(body[:hole])
    (folder / "b").write_bytes(body[hole + len(GUID_HOLE):stamp])
    (folder / "c").write_bytes(body[stamp + 4:])
    (folder / "ctype").write_text(content_type)


def run_wrk(url: str, pieces: Path, seconds: float, concurrency: int, tag: int) -> tuple[dict[str, int], float]:
    """Run wrk (one thread) for seconds; (its WRK_JSON summary, its CPU seconds)."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(WRK_SCRIPT),
               url, "--", str(pieces), str(tag)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    line = next((x for x in output.splitlines() if x.startswith("WRK_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output[-2000:]}")
    return json.loads(line.removeprefix("WRK_JSON ")), usage.ru_utime + usage.ru_stime


def tree_pids(pid: int) -> list[int]:
    """pid and every process under it (web processes, crashd's worker), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of pid's whole process tree (processes that ended are not counted)."""
    values = [cpu_seconds(p) for p in tree_pids(pid)]
    return None if values[0] is None else sum(v for v in values if v is not None)


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of pid's process tree."""
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def measure_wrk(server: Server, args: argparse.Namespace, pieces: Path, round_no: int, tags: Iterator[int]) -> WrkResult:
    """Warm up, then one timed wrk run; count what crashd stored."""
    warm, _ = run_wrk(server.url, pieces, args.warmup_seconds, args.concurrency, next(tags))
    pid = server.process.pid
    before, box_before = tree_cpu(pid), machine_cpu()
    summary, wrk_cpu = run_wrk(server.url, pieces, args.seconds, args.concurrency, next(tags))
    after, box_after = tree_cpu(pid), machine_cpu()
    box_busy = None
    if box_before and box_after and box_after[1] > box_before[1]:
        box_busy = (box_after[0] - box_before[0]) / (box_after[1] - box_before[1])
    errors = (summary["non_2xx"] + summary["connect_errors"] + summary["read_errors"] + summary["write_errors"]
              + summary["timeouts"])
    ok = summary["requests"] - summary["non_2xx"]
    result = WrkResult(server.label, round_no, summary["duration_us"] / 1e6, ok, errors, summary["p50_us"] / 1000,
                       summary["p99_us"] / 1000, None if before is None or after is None else after - before,
                       wrk_cpu, box_busy, answered=ok + warm["requests"] - warm["non_2xx"],
                       rss_mb=tree_rss_mb(pid), processes=len(tree_pids(pid)))
    if server.database_url is not None:
        result.stored = sum(crash_status_counts(server.database_url).values())
    return result


def print_wrk_table(results: list[WrkResult]) -> None:
    """A Markdown table; `vs ceiling` is crashd's uploads/s over the ceiling's of the same round."""
    ceilings = {r.round: r.rate for r in results if r.target == "ceiling"}
    rows = [("round", "target", "uploads", "errors", "uploads/s", "p50 ms", "p99 ms", "srv CPU ms/up",
             "wrk CPU ms/up", "box CPU %", "RSS MB", "stored/200s", "vs ceiling")]
    for r in results:
        ratio = f"{r.rate / ceilings[r.round]:.2f}" if r.round in ceilings and r.target != "ceiling" else "-"
        rows.append((str(r.round), r.target, str(r.ok), str(r.errors), f"{r.rate:.1f}", f"{r.p50_ms:.1f}",
                     f"{r.p99_ms:.1f}", f"{r.cpu_ms:.2f}", f"{r.wrk_cpu * 1000 / max(1, r.ok):.2f}",
                     "-" if r.box_busy is None else f"{r.box_busy * 100:.0f}",
                     "-" if r.rss_mb is None else f"{r.rss_mb:.0f}",
                     "-" if r.stored is None else f"{r.stored}/{r.answered}", ratio))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def run_wrk_rounds(args: argparse.Namespace, template: bytearray) -> int:
    """R rounds, each a fresh server of every target in turn; prints each run and the table.
    Exit status 1 when an upload was not answered 200 or crashd stored a different count."""
    tags = itertools.count(random.Random().randrange(1, 60_000) * 1000)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = []
    with tempfile.TemporaryDirectory(prefix="crashd-bench-wrk-") as folder:
        pieces = Path(folder)
        write_pieces(template, pieces)
        for round_no in range(1, args.rounds + 1):
            for kind in ("ceiling", *backends):
                with contextlib.ExitStack() as stack:
                    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crashd-bench-")))
                    server = stack.enter_context(target_server(kind, work, args, stack))
                    result = measure_wrk(server, args, pieces, round_no, tags)
                    results.append(result)
                    print(f"  round {round_no} {result.target}: {result.ok} ok, {result.errors} errors, "
                          f"{result.rate:.1f}/s, p99 {result.p99_ms:.0f} ms, {result.processes} processes"
                          + ("" if result.stored is None else f", {result.stored} stored of {result.answered}"),
                          flush=True)
    print()
    print_wrk_table(results)
    # wrk stops with up to C uploads in flight, which the server may still store: C per run, at most
    bad = [r for r in results if r.errors or (r.stored is not None and not
                                               r.answered <= r.stored <= r.answered + 2 * args.concurrency)]
    return 1 if bad else 0


# -- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(**crashd: str) -> dict[str, str]:
    """This environment without any CRASHD_* variable, plus crashd (data_dir= -> CRASHD_DATA_DIR)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    env.update({f"CRASHD_{key.upper()}": value for key, value in crashd.items()})
    return env


def start(command: list[str], env: dict[str, str], log_path: Path, base_url: str) -> subprocess.Popen[bytes]:
    """Start a server (output to log_path) and wait for /__lbheartbeat__. Raises RuntimeError."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited {process.returncode}:\n{log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/__lbheartbeat__", timeout=1.0).status_code == 200:
                return process
        time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"{command[0]} not up in {SERVER_START_SECONDS} s:\n{log_path.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), SIGKILL after 45 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def crashd_server(label: str, work: Path, **crashd: str) -> Iterator[Server]:
    """``crashd serve`` on a data dir under work; crashd holds more settings (database_url=...),
    and serve_workers / worker_processes its --workers / --worker-processes."""
    port, bin_dir = free_port(), Path(sys.executable).parent
    web = ["--workers", crashd.pop("serve_workers")] if "serve_workers" in crashd else []
    if "worker_processes" in crashd:
        web += ["--worker-processes", crashd.pop("worker_processes")]
    env = server_env(data_dir=str(work / "data"), **crashd)
    # the CLI refuses a database that does not exist yet (docs: friction 1 of issue 17): make it
    subprocess.run([str(bin_dir / "crashd"), "migrate"], env=env, cwd=REPO, check=True, capture_output=True,
                   timeout=60)
    created = subprocess.run([str(bin_dir / "crashd"), "project", "create", "bench", "--json",
                              "--base-url", f"http://{HOST}:{port}"],
                             env=env, cwd=REPO, check=True, capture_output=True, text=True, timeout=60)
    url = json.loads(created.stdout)["minidump_url"]
    process = start([str(bin_dir / "crashd"), "serve", "--host", HOST, "--port", str(port), *web],
                    env, work / "server.log", f"http://{HOST}:{port}")
    database_url = crashd.get("database_url") or f"sqlite:///{work / 'data' / 'crashd.db'}"
    try:
        yield Server(label, url, process, database_url.replace("postgresql://", "postgresql+psycopg://"),
                     in_process_worker="redis_url" not in crashd)
    finally:
        stop(process)


@contextlib.contextmanager
def ceiling_server(work: Path) -> Iterator[Server]:
    """This file's ceiling endpoint, served by uvicorn in a subprocess."""
    port = free_port()
    process = start([sys.executable, __file__, "--serve-ceiling", str(work / "blobs"), "--port", str(port)],
                    server_env(), work / "server.log", f"http://{HOST}:{port}")
    try:
        yield Server("ceiling", f"http://{HOST}:{port}/upload", process)
    finally:
        stop(process)


@contextlib.contextmanager
def scratch_postgres_and_queue(admin_url: str, redis_url: str) -> Iterator[dict[str, str]]:
    """crashd settings for a new database and RQ queue; both are removed afterwards."""
    import psycopg
    from redis import Redis
    from rq import Queue

    name = f"crashd_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"database_url": urlsplit(admin_url)._replace(path=f"/{name}").geturl(),
               "redis_url": redis_url, "queue_name": name}
    finally:
        with Redis.from_url(redis_url) as redis:
            Queue(name, connection=redis).delete(delete_jobs=True)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def crash_status_counts(database_url: str) -> dict[str, int]:
    """Crashes per status in crashd's database (read only)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM crashes GROUP BY status"))
            return {status: int(count) for status, count in rows}
    finally:
        engine.dispose()


def wait_drained(database_url: str, max_seconds: float) -> float | None:
    """Seconds until no crash is `received` or `processing`; None if not within max_seconds."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_seconds:
        counts = crash_status_counts(database_url)
        if not counts.get("received") and not counts.get("processing"):
            return time.perf_counter() - start
        time.sleep(0.2)
    return None


# -- the ceiling ----------------------------------------------------------------------------


def ceiling_app(root: Path) -> "Starlette":
    """POST /upload: the body as sent goes to root/<uuid>.bin (temp file, fsync, rename)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def upload(request: Request) -> Response:
        name = uuid.uuid4().hex
        tmp = root / f".tmp-{name}.part"
        out = open(tmp, "wb")  # noqa: SIM115 - durable_rename closes it
        async for chunk in request.stream():
            out.write(chunk)
        await run_in_threadpool(durable_rename, out, tmp, root / f"{name}.bin")
        return PlainTextResponse(name)

    async def lbheartbeat(request: Request) -> Response:
        return Response(status_code=200)

    return Starlette(routes=[Route("/upload", upload, methods=["POST"]),
                             Route("/__lbheartbeat__", lbheartbeat, methods=["GET"])])


def durable_rename(out: BinaryIO, tmp: Path, final: Path) -> None:
    """flush + fsync + close, then rename: how FSBlobStore.put_file finishes a blob."""
    with out:
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, final)


def serve_ceiling(root: Path, port: int) -> int:
    """Serve the ceiling as `crashd serve` serves crashd: uvicorn.run, one process, log level info."""
    import uvicorn

    root.mkdir(parents=True, exist_ok=True)
    uvicorn.run(ceiling_app(root), host=HOST, port=port, log_level="info")
    return 0


# -- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def target_server(kind: str, work: Path, args: argparse.Namespace, stack: contextlib.ExitStack) -> Iterator[Server]:
    """A fresh server of kind (ceiling, sqlite, postgres) on a data dir under work."""
    extra = {"serve_workers": str(args.web_processes)} if args.web_processes > 1 else {}
    if kind == "ceiling":
        yield stack.enter_context(ceiling_server(work))
    elif kind == "sqlite":
        yield stack.enter_context(crashd_server("crashd sqlite", work, **extra))
    else:
        settings = stack.enter_context(scratch_postgres_and_queue(args.postgres_url, args.redis_url))
        yield stack.enter_context(crashd_server("crashd postgres", work, **settings, **extra))


def run_target(kind: str, encoding: str, args: argparse.Namespace, template: bytearray,
               tags: Iterator[int]) -> Result:
    """Start a fresh server of kind (ceiling, sqlite, postgres), measure it, stop it."""
    warmup = build_uploads(template, args.warmup, encoding, tags)
    uploads = build_uploads(template, args.uploads, encoding, tags)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crashd-bench-")))
        server = stack.enter_context(target_server(kind, work, args, stack))
        result = asyncio.run(measure(server, encoding, warmup, uploads, args.concurrency, args.max_seconds))
        report_run(server, result)
    return result


def report_run(server: Server, result: Result) -> None:
    """Print one run's outcome and, for crashd, what is left to process at its end."""
    tally = result.tally
    print(f"  {result.target} {result.encoding}: {result.ok} ok, {len(tally.errors)} errors, "
          f"{len(tally.ids)} distinct ids, {result.seconds:.1f} s", flush=True)
    for error in sorted(set(tally.errors))[:5]:
        print(f"    error: {error}")
    if server.database_url is None:
        return
    print(f"    crashes by status when the last upload was answered: {crash_status_counts(server.database_url)}")
    if server.in_process_worker:
        drained = wait_drained(server.database_url, max_seconds=120)
        late = f"{drained:.1f} s later" if drained is not None else "not within 120 s"
        print(f"    the in-process worker caught up {late}", flush=True)


def print_table(results: list[Result]) -> None:
    """A Markdown table; `vs ceiling` is crashd uploads/s over the ceiling's, same encoding."""
    ceilings = {r.encoding: r.rate for r in results if r.target == "ceiling"}
    rows = [("target", "encoding", "uploads", "conc", "errors", "uploads/s", "p50 ms", "p99 ms",
             "srv CPU ms/up", "cli CPU ms/up", "box CPU %", "vs ceiling")]
    for r in results:
        ratio = f"{r.rate / ceilings[r.encoding]:.2f}" if r.encoding in ceilings and r.target != "ceiling" else "-"
        box = "-" if r.box_busy is None else f"{r.box_busy * 100:.0f}"
        rows.append((r.target, r.encoding, str(r.ok), str(r.concurrency), str(len(r.tally.errors)),
                     f"{r.rate:.1f}", f"{percentile(r.tally.latencies, 50) * 1000:.1f}",
                     f"{percentile(r.tally.latencies, 99) * 1000:.1f}", f"{r.per_upload_ms(r.server_cpu):.1f}",
                     f"{r.per_upload_ms(r.client_cpu):.1f}", box, ratio))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile q (0-100) of values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--client", choices=("wrk", "httpx"), default="wrk",
                        help="wrk (identity bodies, --seconds, --rounds) or this process with httpx "
                        "(--uploads, --encoding gzip too)")
    parser.add_argument("--seconds", type=float, default=15, help="wrk: timed seconds per run (15)")
    parser.add_argument("--warmup-seconds", type=float, default=5, help="wrk: untimed seconds first (5)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk: rounds over the targets (3)")
    parser.add_argument("--web-processes", type=int, default=1,
                        help="crashd serve --workers N (web processes; 1, the default)")
    parser.add_argument("--uploads", type=int, default=500, help="httpx: timed uploads per target (500)")
    parser.add_argument("--concurrency", type=int, default=16, help="uploads in flight (16)")
    parser.add_argument("--warmup", type=int, default=32, help="untimed uploads first (32)")
    parser.add_argument("--encoding", choices=("gzip", "identity", "both"), default="both",
                        help="gzip: the whole body with Content-Encoding: gzip, Crashpad's default")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite",
                        help="crashd's database; postgres also uses RQ on Redis")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="where a scratch database is created and dropped")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--max-seconds", type=float, default=300, help="limit of each timed phase")
    parser.add_argument("--serve-ceiling", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when any upload was not answered 200."""
    args = parse_args(argv)
    if args.serve_ceiling:
        return serve_ceiling(args.serve_ceiling, args.port)
    template, tags = template_dump(), itertools.count(1)
    if args.client == "wrk":
        if shutil.which("wrk") is None:
            print("wrk is not installed (Debian: apt-get install wrk); or use --client httpx", file=sys.stderr)
            return 2
        print(f"dump {DUMP_SIZE} bytes; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; wrk, "
              f"{args.concurrency} connections, {args.seconds:g} s a run, {args.rounds} rounds", flush=True)
        return run_wrk_rounds(args, template)
    plain, gzipped = minidump_upload(bytes(template))[0], build_uploads(template, 1, "gzip", tags)[0][0]
    print(f"dump {DUMP_SIZE} bytes; multipart body {len(plain)} bytes, {len(gzipped)} gzipped; "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}", flush=True)
    encodings = ("gzip", "identity") if args.encoding == "both" else (args.encoding,)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = [run_target(kind, encoding, args, template, tags)
               for encoding in encodings for kind in ("ceiling", *backends)]
    print()
    print_table(results)
    return 1 if any(r.tally.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
