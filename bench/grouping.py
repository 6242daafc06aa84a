"""Grouping benchmark: crashes through real ``crashd worker --burst`` processes, 1, 2 and 4 at once.

Run from the repository root: ``.venv/bin/python bench/grouping.py [--crashes N] [--workers 1,2,4]``
(``--help`` for the rest). Needs PostgreSQL on 127.0.0.1:5432 (user ``postgres``, trust) and
Redis on 127.0.0.1:6379, or ``--postgres-url``/``--redis-url``. Results and how to read them:
docs/benchmarks.md.

1. Ingest (timed on its own): ``crashd serve`` (bench/ingest.py's way) on a scratch PostgreSQL
   database, a scratch RQ queue and a temp data dir whose ``symbols/`` holds the symbol trees
   of the corpus cases used. N uploads of six real corpus dumps, 16 in flight, with ``ver``
   (4 builds), ``tester_id`` (50 testers), a distinct ``guid`` and ``bench_case`` (to check the
   groups against the plan). Each upload sets the dump's header timestamp to its own value, so
   no two uploads have one sha256 and crashd's retry dedupe (per client and dump) never merges
   two, whichever annotation names the client. No worker runs: the server only enqueues. It is
   stopped before processing, so its sweeper stays out of the timed passes.
2. First pass: the N jobs the server enqueued, run by ``--first-workers`` workers. It creates
   the groups and the on-disk symbol caches, so it does more than the rounds; shown apart.
3. One round per ``--workers`` count: every crash is enqueued again with crashd's own
   ``RQJobQueue.enqueue`` (job ``process:<crash_id>``, as ingest and the sweeper enqueue; not
   timed), then W ``crashd worker --burst`` start together and the round lasts until all have
   exited. Every round does the same work: it reprocesses N crashes into the groups they are
   already in (storage/groups.assign_group must change no count). ``crashd reprocess --all`` is
   not used: at commit 00576b9 it enqueues SQLAlchemy Row objects instead of crash ids, and
   every such job fails (see docs/benchmarks.md).
After every pass the counts are checked against the crashes table (crash_count, tester_count
and the tester, build and platform rows of each group) and against the plan (one signature per
case, crashes and distinct testers per case), and RQ's failed registry must be empty.
4. ``--probe``: where one job's time goes. Children are forked from a process that imported what
   ``crashd worker`` imports, as RQ forks its work horse for each job, and each times the stages
   of a cold job, then runs the same crash again warm.
5. ``--reference``: the same rounds with rq's ``SimpleWorker`` (runs jobs in the worker process,
   no fork). Not what ``crashd worker`` runs; it shows what forking per job costs.
Every pass reports the CPU time per crash of the workers (with their work horses), of
PostgreSQL and Redis, and of the rest of the machine (anything else running on it shows there).
crashd's processes run this checkout's code (PYTHONPATH) and, unless ``--no-bytecode-cache``,
keep .pyc files in the temp dir even when PYTHONDONTWRITEBYTECODE is set, as an installed
crashd would have them: a work horse imports the pipeline's modules again for every job.

The scratch database, the queue, its registries and every ``rq:job:process:<crash_id>`` and
``rq:results:process:<crash_id>`` key of the run, the processes and the temp dir are removed at
the end. This file is longer than our usual modules: it carries its checks and its probe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
from accuracy import corpus_dir, machine_summary
from ingest import REPO, Tally, crashd_server, machine_cpu, scratch_postgres_and_queue, send_all, server_env

sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(1, str(REPO))  # crashd's modules from this checkout, as its processes get them
from uploads import minidump_upload

# (corpus case, share of the crashes): six signatures on Linux, Windows x86 and macOS, all with
# their symbols. The last one is rare, so its group has fewer testers than the pool.
CASES = (
    ("linux-x64-generated-crashpad-segv-O0", 40.0),
    ("linux-x64-generated-crashpad-abort-O2", 25.0),
    ("win-x86-breakpad-32bit-crash-addr", 15.0),
    ("linux-x64-symbolic-crash-linux", 12.0),
    ("mac-x64-rust-inlines", 7.5),
    ("linux-x64-breakpad-overflow", 0.5),
)
BUILDS = ("1.0.0", "1.0.1", "1.1.0", "2.0.0")
TIMESTAMP_OFFSET = 20  # MINIDUMP_HEADER: signature, version, count, directory RVA, checksum, time
JOB_SAMPLE = 2000  # jobs whose RQ start/end times are read after each pass
COUNTER_TABLES = (("group_testers", "tester_id", "tester_id"),  # (table, its key, crashes' column)
                  ("group_builds", "build", "coalesce(build, '')"),
                  ("group_platforms", "platform", "coalesce(platform, '')"))


@dataclass(frozen=True)
class Planned:
    """One upload: which dump, from which tester, for which build."""

    case: str
    tester: str
    build: str
    guid: str


@dataclass(frozen=True)
class Usage:
    """CPU seconds used so far (user + system) by whom, and the machine's busy/total seconds."""

    workers: float  # this process's waited-for descendants: the workers and their work horses
    postgres: float  # every postgres process, plus exited backends (the postmaster's cutime)
    redis: float
    box_busy: float  # all CPUs, neither idle nor iowait
    box_total: float

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(a - b for a, b in zip(astuple(self), astuple(other), strict=False)))


@dataclass
class Pass:
    """One timed processing pass."""

    label: str
    workers: int
    crashes: int
    seconds: float
    usage: Usage  # during the pass
    job_ms: float  # median time inside the job function (RQ's started_at .. ended_at)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.crashes / self.seconds

    def per_crash_ms(self, cpu_seconds: float) -> str:
        return f"{cpu_seconds * 1000 / self.crashes:.1f}"


# -- the crashes ----------------------------------------------------------------------------


def make_plan(count: int, testers: int, seed: int) -> list[Planned]:
    """count uploads: a case by CASES' shares, a tester and a build at random (seeded)."""
    rng = random.Random(seed)
    names, shares = zip(*CASES, strict=False)
    return [Planned(rng.choices(names, shares)[0], f"tester-{rng.randrange(testers):02d}", rng.choice(BUILDS),
                    str(uuid.UUID(int=rng.getrandbits(128), version=4))) for _ in range(count)]


def load_dumps(corpus: Path) -> dict[str, bytes]:
    """The minidump of each case. Raises FileNotFoundError when a case has none."""
    dumps = {}
    for case, _ in CASES:
        found = sorted((corpus / case).glob("*.dmp"))
        if not found:
            raise FileNotFoundError(f"no .dmp in {corpus / case}")
        dumps[case] = found[0].read_bytes()
    return dumps


def install_symbols(corpus: Path, symbols_dir: Path) -> None:
    """Copy each case's symbols/ tree (Breakpad layout) into crashd's symbol store."""
    for case, _ in CASES:
        shutil.copytree(corpus / case / "symbols", symbols_dir, dirs_exist_ok=True)


def build_uploads(plan: list[Planned], dumps: dict[str, bytes]) -> list[tuple[bytes, dict[str, str]]]:
    """One multipart body per planned crash; each dump gets its own header timestamp."""
    uploads = []
    for index, crash in enumerate(plan):
        dump = bytearray(dumps[crash.case])
        struct.pack_into("<I", dump, TIMESTAMP_OFFSET, 1_700_000_000 + index)
        body, content_type = minidump_upload(bytes(dump), prod="BenchGame", ver=crash.build, guid=crash.guid,
                                             tester_id=crash.tester, bench_case=crash.case)
        uploads.append((body, {"content-type": content_type}))
    return uploads


async def upload_all(url: str, uploads: list[tuple[bytes, dict[str, str]]], concurrency: int) -> tuple[Tally, float]:
    """POST every upload, concurrency in flight; returns the tally and the seconds taken."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        start = time.perf_counter()
        tally = await send_all(client, url, uploads, concurrency)
        return tally, time.perf_counter() - start


# -- the checks -----------------------------------------------------------------------------


def db_rows(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one read-only query."""
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return list(conn.execute(sql, params))


def mismatch_queries() -> dict[str, str]:
    """What must return no row: each query lists the rows where crashd's counts are wrong."""
    queries = {
        "crash not processed in this pass":
            "SELECT crash_id, status FROM crashes WHERE status <> 'processed' OR processed_at IS NULL"
            " OR processed_at < %(since)s",
        "crash without a group, or not of its group's signature":
            "SELECT c.crash_id, c.signature, g.signature FROM crashes c LEFT JOIN crash_groups g"
            " ON g.id = c.group_id WHERE g.id IS NULL OR g.signature IS DISTINCT FROM c.signature",
        "group crash_count/tester_count differ from its crashes":
            "WITH truth AS (SELECT group_id, count(*) AS crashes, count(DISTINCT tester_id) AS testers"
            " FROM crashes GROUP BY group_id)"
            " SELECT g.id, g.crash_count, t.crashes, g.tester_count, t.testers FROM crash_groups g"
            " FULL JOIN truth t ON t.group_id = g.id"
            " WHERE g.crash_count IS DISTINCT FROM coalesce(t.crashes, 0)"
            " OR g.tester_count IS DISTINCT FROM coalesce(t.testers, 0)",
    }
    for table, key, column in COUNTER_TABLES:
        queries[f"{table} differ from the crashes"] = (
            f"WITH truth AS (SELECT group_id, {column} AS key, count(*) AS n FROM crashes"
            f" WHERE {column} IS NOT NULL GROUP BY 1, 2)"
            f" SELECT coalesce(r.group_id, t.group_id), coalesce(r.{key}, t.key), r.crash_count, t.n"
            f" FROM {table} r FULL JOIN truth t ON t.group_id = r.group_id AND t.key = r.{key}"
            f" WHERE r.crash_count IS DISTINCT FROM t.n")
    return queries


def check_counts(database_url: str, plan: list[Planned], since: Any, signatures: dict[str, str]) -> list[str]:
    """Problems with the groups after a pass (empty: every count is exact). signatures maps
    each case to its signature; filled on the first call, compared on the next ones."""
    problems = []
    for name, sql in mismatch_queries().items():
        rows = db_rows(database_url, sql, since=since)
        if rows:
            problems.append(f"{name}: {len(rows)} rows, e.g. {rows[:3]}")
    seen: dict[str, set[str]] = {}
    for case, signature in db_rows(database_url, "SELECT DISTINCT annotations->>'bench_case', signature FROM crashes"):
        seen.setdefault(case, set()).add(signature)
    for case, found in sorted(seen.items()):
        if len(found) != 1:
            problems.append(f"{case}: {len(found)} signatures {sorted(found)}")
        elif signatures.setdefault(case, next(iter(found))) not in found:
            problems.append(f"{case}: signature changed from {signatures[case]!r} to {sorted(found)}")
    groups = {sig: (crashes, testers) for sig, crashes, testers in db_rows(
        database_url, "SELECT signature, crash_count, tester_count FROM crash_groups WHERE crash_count > 0")}
    if sum(crashes for crashes, _ in groups.values()) != len(plan):
        problems.append(f"groups count {sum(c for c, _ in groups.values())} crashes, not {len(plan)}")
    for signature, (crashes, testers) in sorted(groups.items()):
        planned = [p for p in plan if signatures.get(p.case) == signature]
        expected = (len(planned), len({p.tester for p in planned}))
        if (crashes, testers) != expected:
            problems.append(f"group {signature!r}: {crashes} crashes, {testers} testers; planned {expected}")
    return problems


def group_summary(database_url: str) -> list[tuple[Any, ...]]:
    """(signature, crashes, testers, builds, platforms) of each group."""
    return db_rows(database_url, (
        "SELECT g.signature, g.crash_count, g.tester_count,"
        " (SELECT count(*) FROM group_builds b WHERE b.group_id = g.id),"
        " (SELECT string_agg(platform, ',') FROM group_platforms p WHERE p.group_id = g.id)"
        " FROM crash_groups g ORDER BY g.crash_count DESC"))


# -- the queue and the workers --------------------------------------------------------------


@contextlib.contextmanager
def child_environment(pycache: Path | None) -> Iterator[None]:
    """While inside, processes started from here run crashd from this checkout (PYTHONPATH,
    whatever the venv's editable install points at) and, with pycache, keep compiled bytecode
    there (PYTHONPYCACHEPREFIX) even where PYTHONDONTWRITEBYTECODE is set: a work horse imports
    the pipeline's modules for every job, and without .pyc files it compiles them every time,
    which an installed crashd would not do."""
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    if pycache is not None:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(pycache)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)



@contextlib.contextmanager
def rq_keys_removed(redis_url: str, queue_name: str, crash_ids: set[str]) -> Iterator[None]:
    """On exit, delete the job and result keys of crash_ids and every key named after the
    queue (its registries, its intermediate queue's first_seen marks): Queue.delete(delete_jobs=
    True) only removes jobs still waiting. The queue's name is unique to the run."""
    from redis import Redis

    try:
        yield
    finally:
        with Redis.from_url(redis_url) as redis:
            keys = [f"rq:{kind}:process:{crash_id}" for crash_id in crash_ids for kind in ("job", "results")]
            keys += [key.decode() for key in redis.scan_iter(match=f"*{queue_name}*", count=1000)]
            for start in range(0, len(keys), 1000):
                redis.delete(*keys[start:start + 1000])


def queue_state(redis_url: str, queue_name: str) -> tuple[int, int]:
    """(jobs waiting in the queue, jobs in its failed registry)."""
    from redis import Redis
    from rq import Queue
    from rq.registry import FailedJobRegistry

    with Redis.from_url(redis_url) as redis:
        queue = Queue(queue_name, connection=redis)
        return queue.count, FailedJobRegistry(queue=queue).count


def job_milliseconds(redis_url: str, crash_ids: list[str]) -> list[float]:
    """Time inside the job function (RQ's started_at .. ended_at) of up to JOB_SAMPLE jobs."""
    from redis import Redis
    from rq.utils import utcparse

    sample = random.Random(1).sample(crash_ids, min(JOB_SAMPLE, len(crash_ids)))
    with Redis.from_url(redis_url) as redis:
        pipe = redis.pipeline()
        for crash_id in sample:
            pipe.hmget(f"rq:job:process:{crash_id}", "started_at", "ended_at")
        stamps = pipe.execute()
    return [(utcparse(end.decode()) - utcparse(begin.decode())).total_seconds() * 1000
            for begin, end in stamps if begin and end]


def crashd(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "crashd"), *args]


def usage_now() -> Usage:
    """CPU seconds so far of the workers (RUSAGE_CHILDREN: every waited-for descendant, so the
    work horses too), of PostgreSQL and Redis (from /proc; other clients of theirs included)
    and of the whole machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    services = {"postgres": 0, "redis": 0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process exited meanwhile
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        service = ("postgres" if name in ("postgres", "postmaster")
                   else "redis" if name.startswith("redis-server") else None)
        if service:
            fields = text.rsplit(")", 1)[1].split()
            services[service] += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    tick = os.sysconf("SC_CLK_TCK")
    busy, total = machine_cpu() or (0, 0)
    return Usage(children.ru_utime + children.ru_stime, services["postgres"] / tick, services["redis"] / tick,
                 busy / tick, total / tick)


def run_workers(command: list[str], count: int, env: dict[str, str], logs: Path,
                max_seconds: float) -> tuple[float, Usage]:
    """Start count copies of command at once and wait for all. Returns the seconds and the CPU
    used meanwhile. Raises RuntimeError on a non-zero exit or when they are not done within
    max_seconds (they are killed then)."""
    before, start = usage_now(), time.perf_counter()
    processes = []
    for index in range(count):
        with open(logs / f"worker-{index}.log", "ab") as log:
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
    try:
        for process in processes:
            process.wait(timeout=max(1.0, max_seconds - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
            process.wait()
        raise RuntimeError(f"{count} workers not done within {max_seconds} s (logs in {logs})") from None
    seconds, usage = time.perf_counter() - start, usage_now() - before
    if any(p.returncode for p in processes):
        raise RuntimeError(f"a worker exited {[p.returncode for p in processes]}; logs in {logs}")
    return seconds, usage


def enqueue_all(settings: dict[str, str], crash_ids: set[str]) -> float:
    """Enqueue ``process:<crash_id>`` for every crash with crashd's RQJobQueue (what ingest and
    the sweeper call); returns the seconds taken."""
    from schemas.settings import Settings
    from workers.queue import RQJobQueue

    queue = RQJobQueue(Settings(redis_url=settings["redis_url"], queue_name=settings["queue_name"]))
    start = time.perf_counter()
    try:
        for crash_id in sorted(crash_ids):
            queue.enqueue(crash_id)
    finally:
        queue.close()
    return time.perf_counter() - start


# -- the run --------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every pass needs: settings, the plan and the crashes' ids."""

    args: argparse.Namespace
    env: dict[str, str]
    settings: dict[str, str]
    database_url: str
    logs: Path
    plan: list[Planned]
    crash_ids: set[str]
    signatures: dict[str, str] = field(default_factory=dict)

    def timed_pass(self, label: str, command: list[str], workers: int, enqueue: bool) -> Pass:
        """Optionally re-enqueue every crash, run the workers, check the counts."""
        redis_url, queue_name = self.settings["redis_url"], self.settings["queue_name"]
        if enqueue:
            seconds = enqueue_all(self.settings, self.crash_ids)
            print(f"  {len(self.crash_ids)} jobs enqueued in {seconds:.1f} s", flush=True)
        waiting, failed_before = queue_state(redis_url, queue_name)
        if waiting != len(self.crash_ids):
            raise RuntimeError(f"{waiting} jobs waiting, expected {len(self.crash_ids)}")
        since = db_rows(self.database_url, "SELECT now()")[0][0]
        seconds, usage = run_workers(command, workers, self.env, self.logs, self.args.max_seconds)
        waiting, failed = queue_state(redis_url, queue_name)
        problems = check_counts(self.database_url, self.plan, since, self.signatures)
        if waiting or failed > failed_before:
            problems.append(f"after the pass: {waiting} jobs waiting, {failed - failed_before} more failed")
        jobs = job_milliseconds(redis_url, sorted(self.crash_ids))
        result = Pass(label, workers, len(self.crash_ids), seconds, usage,
                      statistics.median(jobs) if jobs else float("nan"), problems)
        print(f"  {label}, {workers} workers: {seconds:.1f} s, {result.rate:.1f} crashes/s, "
              f"counts {'exact' if not problems else 'WRONG'}", flush=True)
        for problem in problems:
            print(f"    problem: {problem}", flush=True)
        return result


def ingest(args: argparse.Namespace, work: Path, settings: dict[str, str], plan: list[Planned],
           crash_ids: set[str]) -> None:
    """Serve, upload every planned crash (timed), stop the server. Raises RuntimeError
    when an upload was not answered 200 or two answers carry one crash id."""
    corpus = args.corpus
    install_symbols(corpus, work / "data" / "symbols")
    uploads = build_uploads(plan, load_dumps(corpus))
    size = sum(len(body) for body, _ in uploads)
    print(f"ingest: {len(uploads)} uploads ({size / len(uploads) / 1024:.0f} KB on average), "
          f"{args.concurrency} in flight, no worker", flush=True)
    with crashd_server("crashd postgres", work, **settings) as server:
        tally, seconds = asyncio.run(upload_all(server.url, uploads, args.concurrency))
    crash_ids.update(tally.ids)
    print(f"  {len(tally.latencies)} answered 200 in {seconds:.1f} s ({len(tally.latencies) / seconds:.1f} "
          f"uploads/s), {len(tally.errors)} errors, {len(tally.ids)} distinct crash ids", flush=True)
    if tally.errors or len(tally.ids) != len(plan):
        raise RuntimeError(f"ingest: {sorted(set(tally.errors))[:5]}; {len(tally.ids)} ids for {len(plan)} uploads")


def startup_seconds(bench: Bench) -> float:
    """Seconds for one ``crashd worker --burst`` to start and exit on an empty queue."""
    return run_workers(crashd("worker", "--burst"), 1, bench.env, bench.logs, 120)[0]


def run_probe(bench: Bench, forks: int) -> list[dict[str, float]]:
    """Run ``--probe-child`` on one crash per case; returns its per-fork stage times."""
    ids = [row[0] for row in db_rows(bench.database_url, (
        "SELECT DISTINCT ON (annotations->>'bench_case') crash_id FROM crashes"
        " ORDER BY annotations->>'bench_case', received_at"))]
    out = subprocess.run([sys.executable, __file__, "--probe-child", str(forks), *ids], env=bench.env, cwd=REPO,
                         check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_passes(passes: list[Pass]) -> None:
    """A Markdown table; `vs 1 worker` compares rounds of the same worker kind. CPU ms per
    crash: the workers with their horses, PostgreSQL, Redis, and the rest of the machine
    (this script, the kernel's own threads, and anything else running on the box)."""
    one = {p.label: p.rate for p in passes if p.workers == 1}
    rows = [("pass", "workers", "crashes", "seconds", "crashes/s", "vs 1 worker", "job fn ms p50",
             "CPU ms/crash: workers", "PostgreSQL", "Redis", "rest of box", "box CPU %", "counts")]
    for p in passes:
        u = p.usage
        ratio = f"{p.rate / one[p.label]:.2f}" if p.label in one else "-"
        rest = u.box_busy - u.workers - u.postgres - u.redis
        busy = f"{100 * u.box_busy / u.box_total:.0f}" if u.box_total else "-"
        rows.append((p.label, str(p.workers), str(p.crashes), f"{p.seconds:.1f}", f"{p.rate:.1f}", ratio,
                     f"{p.job_ms:.1f}", p.per_crash_ms(u.workers), p.per_crash_ms(u.postgres),
                     p.per_crash_ms(u.redis), p.per_crash_ms(rest), busy, "exact" if not p.problems else "WRONG"))
    print_table(rows)


def print_probe(samples: list[dict[str, float]]) -> None:
    """Median, min and max of each stage of a cold job over the forks."""
    rows = [("stage of one forked job", "median ms", "min ms", "max ms")]
    for stage in samples[0]:
        values = [s[stage] * 1000 for s in samples]
        rows.append((stage, f"{statistics.median(values):.1f}", f"{min(values):.1f}", f"{max(values):.1f}"))
    print_table(rows)


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def run(args: argparse.Namespace) -> int:
    """Ingest, the first pass, the rounds, the probe; print the tables. 1 when a count was wrong."""
    plan = make_plan(args.crashes, args.testers, args.seed)
    crash_ids: set[str] = set()
    passes: list[Pass] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crashd-bench-grouping-")))
        stack.enter_context(child_environment(work / "pycache" if args.bytecode_cache else None))
        settings = stack.enter_context(scratch_postgres_and_queue(args.postgres_url, args.redis_url))
        stack.enter_context(rq_keys_removed(args.redis_url, settings["queue_name"], crash_ids))
        logs = work / "logs"
        logs.mkdir()
        ingest(args, work, settings, plan, crash_ids)
        bench = Bench(args, server_env(data_dir=str(work / "data"), **settings), settings,
                      settings["database_url"], logs, plan, crash_ids)
        worker, simple = crashd("worker", "--burst"), [sys.executable, __file__, "--simple-worker"]
        passes.append(bench.timed_pass("first pass", worker, args.first_workers, enqueue=False))
        print(f"one crashd worker starting and exiting on an empty queue: {startup_seconds(bench):.2f} s")
        for count in args.workers:
            passes.append(bench.timed_pass("crashd worker", worker, count, enqueue=True))
        for count in args.reference:
            passes.append(bench.timed_pass("SimpleWorker (reference)", simple, count, enqueue=True))
        probe = run_probe(bench, args.probe) if args.probe else []
        if probe:  # the probe reprocessed some crashes: the counts must still be exact
            since = db_rows(bench.database_url, "SELECT min(processed_at) FROM crashes")[0][0]
            passes[-1].problems += check_counts(bench.database_url, plan, since, bench.signatures)
        summary = group_summary(bench.database_url)
    print()
    print_passes(passes)
    print()
    print_table([("signature", "crashes", "testers", "builds", "platforms"),
                 *((str(s), str(c), str(t), str(b), str(p)) for s, c, t, b, p in summary)])
    if probe:
        print()
        print_probe(probe)
    return 1 if any(p.problems for p in passes) else 0


# -- inside child processes -----------------------------------------------------------------


def simple_worker() -> int:
    """rq's SimpleWorker on crashd's queue, burst: ``crashd worker`` without the fork per job."""
    from redis import Redis
    from rq import Queue, SimpleWorker

    from schemas.settings import Settings

    settings = Settings()
    redis = Redis.from_url(settings.redis_url or "")
    SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(burst=True,
                                                                                      with_scheduler=False)
    return 0


def probe_child(forks: int, crash_ids: list[str]) -> int:
    """Fork forks times, as RQ forks a work horse; each child times a cold job's stages and
    writes them as JSON to a pipe. Prints the list of stage timings as one JSON line."""
    from redis import Redis  # noqa: F401 - what `crashd worker` has done when it forks
    from rq import Queue, Worker  # noqa: F401

    import server.cli  # noqa: F401
    from schemas.settings import Settings
    from storage.db import make_engine, migrate

    engine = make_engine(Settings())
    migrate(engine)
    engine.dispose()

    samples = []
    for index in range(forks):
        read, write = os.pipe()
        forked_at = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                stages = cold_job(crash_ids[index % len(crash_ids)], forked_at)
            except BaseException as exc:  # noqa: BLE001 - report, never return into the parent's loop
                stages = {"error": repr(exc)}
            os.write(write, json.dumps(stages).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            stages = json.loads(pipe.read())
        os.waitpid(pid, 0)
        if "error" in stages:
            raise RuntimeError(stages["error"])
        stages["fork .. child exited (whole job)"] = time.perf_counter() - forked_at
        samples.append(stages)
    print(json.dumps(samples))
    return 0


def cold_job(crash_id: str, forked_at: float) -> dict[str, float]:
    """In a fresh fork: the seconds of each stage of a first job, then of the same job warm."""
    stages: dict[str, float] = {"fork .. child running": time.perf_counter() - forked_at}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage], clock = now - clock, now

    from workers import jobs, pipeline  # noqa: F401 - RQ imports the job function's module

    lap("import workers.jobs, workers.pipeline")
    import storage.groups  # noqa: F401 - what the rules import on first use
    import symbolicator.minidump
    import symbolicator.process
    import symbolicator.report
    import triage.components
    import triage.signature.generator  # noqa: F401

    lap("import the rules' modules (symbolicator, triage)")
    ctx = jobs.current_context()
    lap("Settings, engine, blob store (jobs.current_context)")
    with ctx.engine.connect():
        pass
    lap("first PostgreSQL connection")
    from storage import queries

    crash = queries.get_crash(ctx.engine, crash_id=crash_id)
    dump = symbolicator.minidump.read_minidump(ctx.blobs.read_bytes(crash.minidump_key))
    lap("read the crash row and dump")
    for module in dump.modules:
        ctx.symbols.status(module)
    lap("symbol provider: look up and open every module's symbols")
    jobs.process_crash(crash_id)
    lap("first process_crash (symbols already open)")
    jobs.process_crash(crash_id)
    lap("same crash again, warm")
    return stages


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def counts(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part.strip()]

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--crashes", type=int, default=10_000, help="crashes uploaded and processed (10000)")
    parser.add_argument("--workers", type=counts, default=[1, 2, 4], help="worker counts, one round each (1,2,4)")
    parser.add_argument("--first-workers", type=int, default=2, help="workers of the first pass, not a round (2)")
    parser.add_argument("--reference", type=counts, default=[], help="SimpleWorker rounds, e.g. 1,2 (none)")
    parser.add_argument("--probe", type=int, default=20, help="forked cold jobs to time stage by stage (20; 0: none)")
    parser.add_argument("--testers", type=int, default=50, help="distinct tester_id values (50)")
    parser.add_argument("--concurrency", type=int, default=16, help="uploads in flight during ingest (16)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--bytecode-cache", action=argparse.BooleanOptionalAction, default=True,
                        help="crashd processes keep .pyc files in the temp dir (default; --no-bytecode-cache:"
                             " as the environment says, e.g. PYTHONDONTWRITEBYTECODE)")
    parser.add_argument("--corpus", type=Path, default=corpus_dir(), help="the corpus ($CRASHD_CORPUS)")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="where a scratch database is created and dropped")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--max-seconds", type=float, default=1800, help="limit of each pass (1800)")
    parser.add_argument("--simple-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-child", type=int, metavar="FORKS", help=argparse.SUPPRESS)
    parser.add_argument("crash_ids", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.simple_worker:
        return simple_worker()
    if args.probe_child:
        return probe_child(args.probe_child, args.crash_ids)
    print(f"{machine_summary()}; {len(CASES)} corpus cases, {args.testers} testers, {len(BUILDS)} builds", flush=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
