"""Steady-rate benchmark: real game-client uploads at a fixed rate for minutes, and how long each
crash takes from its upload to its group.

Run from the repository root: ``.venv/bin/python bench/steady.py [--mode embedded|rq]
[--rate 100] [--seconds 300] [--workers 2]`` (``--help`` for the rest). Needs the corpus
(``$CRASHD_CORPUS``); ``--mode rq`` needs PostgreSQL and Redis as bench/grouping.py does.
Results: docs/benchmarks.md, "Steady rate".

- ``embedded``: ``crashd serve`` on its defaults (SQLite, local blobs, the worker process it
  supervises). ``rq``: ``crashd serve`` on a scratch PostgreSQL database and RQ queue, plus
  ``--workers`` ``crashd worker`` processes.
- The uploads are bench/grouping.py's: six real corpus dumps by its shares, 4 builds, 50
  testers, each dump with its own header timestamp and guid; the symbols of the corpus are in
  crashd's symbol store. The client is open-loop: upload i starts at i / rate seconds
  whether or not the earlier ones were answered (a slow server does not slow the offered
  load), so what it measures is the server at that rate, not a closed loop's equilibrium.
- Per crash, from the database: ``processed_at - received_at`` (received_at is stamped when
  the upload is stored, a few ms before the 200, so this slightly overstates "answered ->
  grouped"), p50/p95/p99 over the run and per minute (a backlog that grows shows as a p95
  that grows). Printed too: the upload latency, crashes not processed by the end, CPU ms per
  crash of the server's process tree and of the RQ workers, and the resident memory of the
  server tree (web + its worker) idle, at the end, and of each RQ worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grouping import BUILDS, CASES, install_symbols, load_dumps
from ingest import (
    REPO,
    TIMESTAMP_OFFSET,
    crashd_server,
    percentile,
    scratch_postgres_and_queue,
    server_env,
    tree_cpu,
    tree_rss_mb,
)

from uploads import minidump_upload

IN_FLIGHT = 64  # uploads in flight at most: 0.64 s of latency at 100/s before the schedule slips


def corpus_dir() -> Path:
    return Path(os.environ.get("CRASHD_CORPUS", REPO.parent / "shared" / "corpus"))


def make_body(dumps: dict[str, bytes], rng: random.Random, index: int, testers: int) -> tuple[bytes, str]:
    """One upload as bench/grouping.py plans them, built when it is sent (30,000 bodies would
    not fit in memory beforehand)."""
    names, shares = zip(*CASES, strict=False)
    case = rng.choices(names, shares)[0]
    dump = bytearray(dumps[case])
    struct.pack_into("<I", dump, TIMESTAMP_OFFSET, 1_600_000_000 + index)
    return minidump_upload(bytes(dump), prod="BenchGame", ver=rng.choice(BUILDS), bench_case=case,
                           tester_id=f"tester-{rng.randrange(testers):02d}", guid=f"steady-{os.getpid()}-{index}")


class _Closed(Exception):
    """The server had closed a kept connection before this request."""


class Connections:
    """Keep-alive HTTP/1.1 connections to one URL for POSTs, on asyncio streams: httpx cost
    this process about 8 ms of CPU per upload, 0.8 of a core at 100/s on a 2-core machine,
    which the server then did not have (as bench/ingest.py uses wrk). At most IN_FLIGHT are
    open; a connection is reused once its answer is read."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, body: bytes, content_type: str) -> int:
        """POST body; the answer's status. A kept connection that the server closed meanwhile
        (uvicorn closes one idle for 5 s) is replaced once, as browsers and httpx do. Raises
        OSError, asyncio.IncompleteReadError, ValueError (an answer that is not HTTP)."""
        request = (f"POST {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        while self.idle:
            reader, writer = self.idle.pop(0)  # the longest idle first: fewer of them age out
            try:
                return await self._exchange(reader, writer, request)
            except _Closed:
                continue
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, request)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
        try:
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise _Closed()
            status = int(status_line.split()[1])
            length, keep = 0, True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                    keep = False
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def offer(url: str, dumps: dict[str, bytes], rate: float, seconds: float,
                testers: int) -> tuple[list[float], list[str], float]:
    """Open-loop uploads at rate for seconds. Returns (latencies of the 200s, errors, seconds
    the last upload started late at most)."""
    rng, latencies, errors = random.Random(2026), [], []
    lag = 0.0
    gate = asyncio.Semaphore(IN_FLIGHT)  # the time waited here counts in the latency
    connections = Connections(url)

    async def one(body: bytes, content_type: str) -> None:
        start = time.perf_counter()
        try:
            async with gate:
                status = await asyncio.wait_for(connections.post(body, content_type), 60.0)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as exc:
            errors.append(type(exc).__name__)
            return
        if status == 200:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(str(status))

    tasks = []
    start, total = time.perf_counter(), int(rate * seconds)
    try:
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            body, content_type = make_body(dumps, rng, index, testers)
            tasks.append(asyncio.create_task(one(body, content_type)))
        await asyncio.gather(*tasks)
    finally:
        connections.close()
    return latencies, errors, lag


def crash_rows(database_url: str) -> list[tuple[str, Any, Any]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT status, received_at, processed_at FROM crashes"))]
    finally:
        engine.dispose()


def wait_drained(database_url: str, max_seconds: float) -> float:
    """Seconds until no crash is `received` or `processing` (a count a second: reading every row
    to find out took a core away from the workers)."""
    from sqlalchemy import create_engine, text

    engine, start = create_engine(database_url), time.perf_counter()
    try:
        while time.perf_counter() - start < max_seconds:
            with engine.connect() as conn:
                left = conn.execute(text("SELECT count(*) FROM crashes WHERE status IN ('received', 'processing')"))
                if not left.scalar_one():
                    break
            time.sleep(1.0)
    finally:
        engine.dispose()
    return time.perf_counter() - start


def as_seconds(value: Any) -> float:
    """A timestamp column as epoch seconds (SQLite gives strings, PostgreSQL datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return float(value.timestamp())


@contextlib.contextmanager
def rq_workers(count: int, env: dict[str, str], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = []
    for index in range(count):
        with open(logs / f"worker-{index}.log", "ab") as log:
            processes.append(subprocess.Popen([str(Path(sys.executable).parent / "crashd"), "worker"], env=env,
                                              stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def report(label: str, rows: list[tuple[str, Any, Any]], latencies: list[float], errors: list[str], lag: float,
           seconds: float, drained: float, cpu: dict[str, float], memory: dict[str, float]) -> None:
    processed = [(as_seconds(r), as_seconds(p)) for status, r, p in rows if status == "processed" and p]
    delays = [p - r for r, p in processed]
    first = min((r for r, _ in processed), default=0.0)
    print(f"\n{label}: {len(rows)} crashes stored, {len(processed)} processed, "
          f"{sum(1 for s, _, _ in rows if s not in ('processed',))} not processed "
          f"({drained:.0f} s after the last upload); {len(errors)} upload errors; client lag max {lag * 1000:.0f} ms")
    print(f"  uploads: p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms")
    print(f"  received -> processed: p50 {percentile(delays, 50):.2f} s, p95 {percentile(delays, 95):.2f} s, "
          f"p99 {percentile(delays, 99):.2f} s, max {max(delays, default=float('nan')):.2f} s")
    minutes: dict[int, list[float]] = {}
    for (received, _done), delay in zip(processed, delays, strict=True):
        minutes.setdefault(int((received - first) // 60), []).append(delay)
    print("  per minute (p50 / p95 s): " + ", ".join(
        f"{m}: {percentile(v, 50):.2f}/{percentile(v, 95):.2f}" for m, v in sorted(minutes.items())))
    for who, value in cpu.items():
        print(f"  CPU {who}: {value * 1000 / max(1, len(rows)):.1f} ms a crash")
    for who, value in memory.items():
        print(f"  RSS {who}: {value:.0f} MB")


def run(args: argparse.Namespace) -> int:
    dumps = load_dumps(args.corpus)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crashd-steady-")))
        install_symbols(args.corpus, work / "data" / "symbols")
        settings: dict[str, str] = {}
        if args.mode == "rq":
            settings = stack.enter_context(scratch_postgres_and_queue(args.postgres_url, args.redis_url))
        if args.mode == "embedded" and args.worker_processes > 1:
            settings["worker_processes"] = str(args.worker_processes)
        server = stack.enter_context(crashd_server(f"crashd {args.mode}", work, **settings))
        workers: list[subprocess.Popen[bytes]] = []
        if args.mode == "rq":
            env = server_env(data_dir=str(work / "data"), **settings)
            workers = stack.enter_context(rq_workers(args.workers, env, work))
        time.sleep(3)  # the worker processes import and connect
        memory = {"server tree idle": tree_rss_mb(server.process.pid)}
        cpu_before = tree_cpu(server.process.pid) or 0.0
        workers_before = sum(tree_cpu(w.pid) or 0.0 for w in workers)
        print(f"{args.mode}: {args.rate:g} uploads/s for {args.seconds:g} s "
              f"({f'its {args.worker_processes} worker processes' if args.mode == 'embedded' else ''}"
              f"{f'{args.workers} crashd worker' if args.mode == 'rq' else ''})", flush=True)
        client_before = time.process_time()
        latencies, errors, lag = asyncio.run(offer(server.url, dumps, args.rate, args.seconds, args.testers))
        client_cpu = time.process_time() - client_before
        assert server.database_url is not None
        drained = wait_drained(server.database_url, args.drain_seconds)
        cpu = {"server tree (web + its worker)": (tree_cpu(server.process.pid) or 0.0) - cpu_before,
               "this client": client_cpu}
        if workers:
            cpu["crashd worker processes"] = sum(tree_cpu(w.pid) or 0.0 for w in workers) - workers_before
        memory["server tree at the end"] = tree_rss_mb(server.process.pid)
        for index, worker in enumerate(workers):
            memory[f"crashd worker {index}"] = tree_rss_mb(worker.pid)
        rows = crash_rows(server.database_url)
        report(f"{args.mode}, {args.rate:g}/s for {args.seconds:g} s", rows, latencies, errors, lag, args.seconds,
               drained, cpu, memory)
        if errors:
            print(f"  upload errors: {sorted(set(errors))}")
        return 1 if errors or len(rows) != len(latencies) else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", choices=("embedded", "rq"), default="embedded")
    parser.add_argument("--rate", type=float, default=100, help="uploads a second (100)")
    parser.add_argument("--seconds", type=float, default=300, help="how long (300)")
    parser.add_argument("--workers", type=int, default=2, help="rq: crashd worker processes (2)")
    parser.add_argument("--worker-processes", type=int, default=1,
                        help="embedded: crashd serve --worker-processes (1, its default)")
    parser.add_argument("--testers", type=int, default=50)
    parser.add_argument("--drain-seconds", type=float, default=300, help="wait for the backlog at most (300)")
    parser.add_argument("--corpus", type=Path, default=corpus_dir())
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse_args(None)))
