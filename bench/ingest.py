"""Ingest benchmark: concurrent 400 KB minidump uploads against crashd and against a ceiling.

Run from the repository root: ``.venv/bin/python bench/ingest.py [--uploads N] [--concurrency C]``
(``--help`` for the rest). Results and how to read them: docs/benchmarks.md.

Each target gets a fresh server on 127.0.0.1 (one uvicorn process, as ``crashd serve`` runs),
a warm-up, then N uploads with C in flight. Every upload is a distinct dump (its header
timestamp changes) with a distinct ``guid``, so crashd's retry dedupe never short-cuts one.
Targets:
- ``crashd sqlite``: ``crashd serve`` with its defaults, SQLite + the in-process worker.
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
    in_process_worker: bool = False


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
        server_before, client_before, box_before = process_cpu(pid), time.process_time(), machine_cpu()
        start = time.perf_counter()
        tally = await asyncio.wait_for(send_all(client, server.url, uploads, concurrency), max_seconds)
        seconds = time.perf_counter() - start
        server_after, client_after, box_after = process_cpu(pid), time.process_time(), machine_cpu()
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    box_busy = None
    if box_before and box_after and box_after[1] > box_before[1]:
        box_busy = (box_after[0] - box_before[0]) / (box_after[1] - box_before[1])
    return Result(server.label, encoding, concurrency, seconds, tally, server_cpu,
                  client_after - client_before, box_busy)


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of pid (all its threads) from /proc; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_cpu() -> tuple[int, int] | None:
    """(busy, total) ticks of all CPUs from /proc/stat (busy: neither idle nor iowait)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


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
    """``crashd serve`` on a data dir under work; crashd holds more settings (database_url=...)."""
    port, bin_dir = free_port(), Path(sys.executable).parent
    env = server_env(data_dir=str(work / "data"), **crashd)
    # the CLI refuses a database that does not exist yet (docs: friction 1 of issue 17): make it
    subprocess.run([str(bin_dir / "crashd"), "migrate"], env=env, cwd=REPO, check=True, capture_output=True,
                   timeout=60)
    created = subprocess.run([str(bin_dir / "crashd"), "project", "create", "bench", "--json",
                              "--base-url", f"http://{HOST}:{port}"],
                             env=env, cwd=REPO, check=True, capture_output=True, text=True, timeout=60)
    url = json.loads(created.stdout)["minidump_url"]
    process = start([str(bin_dir / "crashd"), "serve", "--host", HOST, "--port", str(port)],
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


def run_target(kind: str, encoding: str, args: argparse.Namespace, template: bytearray,
               tags: Iterator[int]) -> Result:
    """Start a fresh server of kind (ceiling, sqlite, postgres), measure it, stop it."""
    warmup = build_uploads(template, args.warmup, encoding, tags)
    uploads = build_uploads(template, args.uploads, encoding, tags)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crashd-bench-")))
        if kind == "ceiling":
            server = stack.enter_context(ceiling_server(work))
        elif kind == "sqlite":
            server = stack.enter_context(crashd_server("crashd sqlite", work))
        else:
            settings = stack.enter_context(scratch_postgres_and_queue(args.postgres_url, args.redis_url))
            server = stack.enter_context(crashd_server("crashd postgres", work, **settings))
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
    parser.add_argument("--uploads", type=int, default=500, help="timed uploads per target (500)")
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
