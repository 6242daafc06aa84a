"""Search benchmark (issue 17): crash searches and facets at 1,000,000 crashes, through the
real ASGI app, on PostgreSQL and on SQLite; target p95 <= 200 ms for a search and a facet.

Run from the repository root: ``.venv/bin/python bench/search.py [--crashes N] [--requests R]
[--backend postgres|sqlite|both] [--keep] [--explain]``. Needs PostgreSQL on 127.0.0.1:5432
(user ``postgres``, trust) or ``--postgres-url``. Results: docs/benchmarks.md ("Search").

1. A scratch database (PostgreSQL ``crashd_bench_search``; SQLite ``<tmp>/crashd.db``, or
   ``--sqlite-dir`` to keep it), migrated by crashd itself, so ``crash_fields`` and its
   index are migration 0018's.
2. Seeded in bulk (COPY / executemany), shaped like a closed test's crashes: 2,000 groups of
   Zipf-like sizes, 30 builds over 60 days, 5,000 testers; seven annotations per crash (gpu
   from 60 models, skewed; driver_version from 300; nar_model 6; locale 20; ram_gb;
   install_id per tester; a unique session_id) and the fields processing writes (signature,
   platform, component, build, tester_id, kind, os_version, cpu, cpu_info, stack modules):
   ~19 crash_fields rows per crash, exactly what storage/search_index.field_rows makes of such
   a crash.
3. Timed: each query R times after 3 warm-up ones, rotating its values; p50, p95, max.
4. The comparator (PostgreSQL): the same annotations as a JSONB column with a GIN index
   (``jsonb_path_ops``), the other way the issue names, for an equality search, a prefix
   search and a facet, in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_db import drop_scratch, open_scratch

from schemas.settings import Settings
from server.app import build_state, create_app
from storage import queries
from storage.search_index import field_rows

TOKEN = "bench-admin-token-0123456789abcdef"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAYS = 60
BUILDS = [f"1.{i // 10}.{i % 10}" for i in range(30)]  # 1.0.0 .. 1.2.9, one every two days
GPUS = [f"NVIDIA GeForce RTX {n}" for n in (3060, 3070, 4060, 4070, 2060, 3080, 4090, 2070, 1660, 3050)] + [
    f"AMD Radeon RX {n}" for n in (6600, 6700, 7600, 7800, 580, 5700)] + [f"Intel Arc A{n}" for n in (380, 750, 770)] + [
    f"GPU model {i}" for i in range(41)]
DRIVERS = [f"{v}.{d:02d}" for v in range(470, 570, 5) for d in range(15)]  # 300
NAR_MODELS = ["nar-7b", "nar-7b-q4", "nar-3b", "nar-13b-q5", "nar-1b", "nar-7b-instruct"]
LOCALES = ["en-US", "de-DE", "fr-FR", "ja-JP", "ko-KR", "zh-CN", "pt-BR", "es-ES", "ru-RU", "pl-PL", "it-IT",
           "tr-TR", "nl-NL", "sv-SE", "en-GB", "cs-CZ", "uk-UA", "th-TH", "vi-VN", "id-ID"]
OS_VERSIONS = [f"10.0.{b}" for b in (19041, 19042, 19043, 19044, 19045, 22000, 22621, 22631, 26100)] * 4 + [
    "6.8.0-49-generic", "14.6.1", "6.1.0-28-amd64", "15.1"]
CPUS = [f"GenuineIntel family 6 model {m} stepping {s}" for m in (151, 154, 165, 183) for s in range(4)] + [
    f"AuthenticAMD family 25 model {m} stepping {s}" for m in (33, 68, 80, 97, 116) for s in range(3)]
MODULES = ["game.exe", "nar.dll", "ggml.dll", "llama.dll", "zklogin.dll", "d3d12.dll", "nvwgf2umx.dll",
           "amdxc64.dll", "kernelbase.dll", "ntdll.dll", "ucrtbase.dll", "vcruntime140.dll"] + [
    f"plugin{i}.dll" for i in range(38)]
COMPONENTS = ["game", "nar_ffi", "llama_cpp", "zklogin", "render", None]


def zipf(rng: random.Random, n: int, s: float = 1.1) -> Callable[[], int]:
    """A sampler of 0..n-1 with weights 1/(rank+1)^s."""
    weights = [1 / (rank + 1) ** s for rank in range(n)]
    population = list(range(n))
    return lambda: rng.choices(population, weights)[0]


def groups_plan(groups: int) -> list[tuple[str, str | None, str]]:
    """(signature, component, platform) per group."""
    rng = random.Random(17)
    return [(f"{rng.choice(['nar', 'ggml', 'game', 'zk'])}::step_{i} | frame_{rng.randrange(500)}",
             rng.choice(COMPONENTS), rng.choices(["Windows NT", "Linux", "Mac OS X"], [85, 10, 5])[0])
            for i in range(groups)]


def crashes(total: int, plan: list[tuple[str, str | None, str]]) -> Iterator[dict[str, Any]]:
    """The crash rows (as the pipeline leaves them: processed, summary with OS/CPU/modules)."""
    rng = random.Random(1)
    group, gpu, driver, module = zipf(rng, len(plan)), zipf(rng, len(GPUS)), zipf(rng, len(DRIVERS), 0.8), \
        zipf(rng, len(MODULES), 0.7)
    for i in range(total):
        g = group()
        signature, component, platform = plan[g]
        at = NOW - timedelta(seconds=rng.randrange(DAYS * 86400))
        age = (NOW - at).days
        build = BUILDS[max(0, min(len(BUILDS) - 1, (DAYS - age) // 2 - rng.randrange(3)))]
        tester = rng.randrange(5000)
        crash_id = f"{i:08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
        annotations = {"gpu": GPUS[gpu()], "driver_version": DRIVERS[driver()], "nar_model": rng.choice(NAR_MODELS),
                       "locale": LOCALES[tester % len(LOCALES)], "ram_gb": rng.choice([8, 16, 16, 32, 64]),
                       "install_id": f"install-{tester:05d}", "session_id": f"{rng.getrandbits(64):016x}"}
        stack = ["game.exe", *(MODULES[module()] for _ in range(2))]
        processed = {"os": platform, "os_version": rng.choice(OS_VERSIONS), "cpu_arch": "amd64",
                     "cpu_info": rng.choice(CPUS), "stack_modules": list(dict.fromkeys(stack))}
        yield {"crash_id": crash_id, "project_id": 1, "received_at": at, "build": build,
               "tester_id": f"tester-{tester}", "annotations": annotations, "processed": processed,
               "signature": signature, "component": component, "platform": platform, "group_id": g + 1,
               "kind": "hang" if i % 25 == 0 else "crash"}


CRASH_COLUMNS = ("crash_id", "project_id", "status", "received_at", "updated_at", "processed_at", "submitted_via",
                 "build", "tester_id", "annotations_key", "annotations", "processed", "signature", "component",
                 "platform", "group_id", "kind", "attempts")
FIELD_COLUMNS = ("crash_id", "field", "value", "project_id", "received_at", "group_id")
INDEXES = ["CREATE INDEX ix_crash_fields_search ON crash_fields (project_id, field, value, received_at, crash_id,"
           " group_id)", "CREATE INDEX ix_crash_fields_group ON crash_fields (group_id, field, received_at, crash_id,"
           " project_id, value)"]


def crash_row(c: dict[str, Any], at: Any) -> tuple[Any, ...]:
    return (c["crash_id"], 1, "processed", at, at, at, "minidump", c["build"], c["tester_id"],
            f"annotations/{c['crash_id']}", json.dumps(c["annotations"]), json.dumps(c["processed"]),
            c["signature"], c["component"], c["platform"], c["group_id"], c["kind"], 0)


def seed_postgres(url: str, total: int, plan: list[tuple[str, str | None, str]]) -> None:
    with psycopg.connect(url) as conn:
        _insert_groups_pg(conn, plan)
        conn.execute("DROP INDEX ix_crash_fields_search")
        conn.execute("DROP INDEX ix_crash_fields_group")
        conn.execute("ALTER TABLE crash_fields DROP CONSTRAINT crash_fields_pkey")
        # One COPY at a time on a connection: the crashes, then the same crashes again (the
        # generator is seeded) for their fields.
        with conn.cursor().copy(f"COPY crashes ({', '.join(CRASH_COLUMNS)}) FROM STDIN") as copy:
            for c in crashes(total, plan):
                copy.write_row(crash_row(c, c["received_at"]))
        with conn.cursor().copy(f"COPY crash_fields ({', '.join(FIELD_COLUMNS)}) FROM STDIN") as copy:
            for c in crashes(total, plan):
                for r in field_rows(c):
                    copy.write_row((r["crash_id"], r["field"], r["value"], 1, r["received_at"], r["group_id"]))
        started = time.perf_counter()
        conn.execute("ALTER TABLE crash_fields ADD PRIMARY KEY (crash_id, field, value)")
        for index in INDEXES:
            conn.execute(index)
        print(f"  postgres: crash_fields indexes built in {time.perf_counter() - started:.0f} s")
        conn.execute(VALUES_FILL)
        _derive(conn)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _insert_groups_pg(conn: psycopg.Connection, plan: list[tuple[str, str | None, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO crash_groups (id, project_id, signature, signature_version, component, first_seen,"
                        " last_seen, crash_count, tester_count, kind) VALUES (%s, 1, %s, '1', %s, %s, %s, 0, 0, 'crash')",
                        [(i + 1, s, comp, NOW, NOW) for i, (s, comp, _) in enumerate(plan)])


# field_values as storage/search_index.add_values leaves it: every distinct (project, field, value).
VALUES_FILL = "INSERT INTO field_values (project_id, field, value) SELECT DISTINCT project_id, field, value FROM crash_fields"
DERIVE = ["""UPDATE crash_groups SET crash_count = (SELECT count(*) FROM crashes c WHERE c.group_id = crash_groups.id),
             tester_count = (SELECT count(DISTINCT tester_id) FROM crashes c WHERE c.group_id = crash_groups.id),
             first_seen = coalesce((SELECT min(received_at) FROM crashes c WHERE c.group_id = crash_groups.id), first_seen),
             last_seen = coalesce((SELECT max(received_at) FROM crashes c WHERE c.group_id = crash_groups.id), last_seen)""",
          """INSERT INTO group_builds (group_id, build, crash_count, first_seen, last_seen) SELECT group_id, build,
             count(*), min(received_at), max(received_at) FROM crashes GROUP BY group_id, build"""]


def _derive(conn: Any) -> None:
    """The counters storage/groups.py keeps, computed from the crashes."""
    for statement in DERIVE:
        conn.execute(statement)


def seed_sqlite(path: Path, total: int, plan: list[tuple[str, str | None, str]]) -> None:
    def ts(at: datetime) -> str:  # SQLAlchemy's SQLite DateTime format (UTC, naive)
        return at.strftime("%Y-%m-%d %H:%M:%S.%f")

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executemany("INSERT INTO crash_groups (id, project_id, signature, signature_version, component, first_seen,"
                     " last_seen, crash_count, tester_count, kind) VALUES (?, 1, ?, '1', ?, ?, ?, 0, 0, 'crash')",
                     [(i + 1, s, comp, ts(NOW), ts(NOW)) for i, (s, comp, _) in enumerate(plan)])
    conn.execute("DROP INDEX ix_crash_fields_search")
    conn.execute("DROP INDEX ix_crash_fields_group")
    # crash_fields' primary key is the table's own index in SQLite (WITHOUT ROWID is not used):
    # rows go in unsorted, the index is built after.
    crash_sql = f"INSERT INTO crashes ({', '.join(CRASH_COLUMNS)}) VALUES ({', '.join('?' * len(CRASH_COLUMNS))})"
    field_sql = f"INSERT INTO crash_fields ({', '.join(FIELD_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"
    batch_c: list[tuple[Any, ...]] = []
    batch_f: list[tuple[Any, ...]] = []
    for c in crashes(total, plan):
        at = ts(c["received_at"])
        batch_c.append(crash_row(c, at))
        batch_f.extend((r["crash_id"], r["field"], r["value"], 1, at, r["group_id"]) for r in field_rows(c))
        if len(batch_c) >= 20000:
            conn.executemany(crash_sql, batch_c)
            conn.executemany(field_sql, batch_f)
            batch_c, batch_f = [], []
    conn.executemany(crash_sql, batch_c)
    conn.executemany(field_sql, batch_f)
    started = time.perf_counter()
    for index in INDEXES:
        conn.execute(index)
    print(f"  sqlite: crash_fields indexes built in {time.perf_counter() - started:.0f} s")
    conn.execute(VALUES_FILL)
    for statement in DERIVE:
        conn.execute(statement)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def queries_to_time(biggest: int) -> list[tuple[str, str, list[str]]]:
    """(label, kind, paths): each path is one request; paths rotate over values."""
    gpus = [quote(g) for g in GPUS[:5]]
    rare = [quote(d) for d in DRIVERS[-5:]]
    facet_fields = "&".join(f"field={f}" for f in
                            ("annotations.gpu", "annotations.driver_version", "os_version", "cpu", "build"))
    base = "/api/crashes?project=game"
    return [
        ("search annotations.gpu = <popular>", "search", [f"{base}&annotations.gpu={g}" for g in gpus]),
        ("search annotations.driver_version = <rare>", "search", [f"{base}&annotations.driver_version={d}" for d in rare]),
        ("search annotations.driver_version = ^5<d> (prefix)", "search",
         [f"{base}&annotations.driver_version=^5{d}" for d in range(5)]),
        ("search signature ~ <substring>", "search", [f"{base}&signature=~step_{n}%20" for n in (1, 12, 123, 7, 42)]),
        ("search build = <b> AND annotations.gpu = <g>", "search",
         [f"{base}&build={b}&annotations.gpu={g}" for b, g in zip(BUILDS[-5:], gpus, strict=True)]),
        ("search annotations.nar_model != <m> AND build = <b>", "search",
         [f"{base}&annotations.nar_model=!{m}&build={b}" for m, b in zip(NAR_MODELS, BUILDS[-5:], strict=False)]),
        ("search received >= 24h AND annotations.gpu = <g>", "search",
         [f"{base}&received=%3E%3D24h&annotations.gpu={g}" for g in gpus]),
        ("search module = <m>", "search", [f"{base}&module={m}" for m in MODULES[1:6]]),
        ("search, newest 50 of all (no condition)", "search", [base]),
        ("facet annotations.gpu (all crashes, exact)", "facet", ["/api/facets?project=game&field=annotations.gpu"]),
        ("facet build where annotations.gpu = <g> (exact)", "facet",
         [f"/api/facets?project=game&field=build&annotations.gpu={g}" for g in gpus]),
        ("facet 5 default fields of the biggest group (exact)", "facet",
         [f"/api/facets?project=game&group={biggest}&{facet_fields}"]),
        ("facet annotations.gpu, latest 10,000 (search page)", "facet",
         ["/api/facets?project=game&field=annotations.gpu&latest=10000"]),
        ("facet build where gpu = <g>, latest 10,000", "facet",
         [f"/api/facets?project=game&field=build&annotations.gpu={g}&latest=10000" for g in gpus]),
        ("facet 5 fields of the biggest group, latest 10,000 (page)", "facet",
         [f"/api/facets?project=game&group={biggest}&{facet_fields}&latest=10000"]),
        ("groups having crashes with annotations.gpu = <g>", "search",
         [f"/api/groups?project=game&annotations.gpu={g}&limit=50" for g in gpus]),
    ]


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def time_queries(settings: Settings, biggest: int, requests: int) -> list[tuple[str, str, list[float], int]]:
    from starlette.testclient import TestClient

    results = []
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for label, kind, paths in queries_to_time(biggest):
            times, total = [], 0
            for i in range(3 + requests):
                path = paths[i % len(paths)]
                start = time.perf_counter()
                response = client.get(path, headers=headers)
                elapsed = (time.perf_counter() - start) * 1000
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
                if i >= 3:
                    times.append(elapsed)
                    total = response.json().get("total", 0)
            results.append((label, kind, times, total))
    return results


def print_results(backend: str, results: list[tuple[str, str, list[float], int]]) -> None:
    print(f"\n{backend}: p50 / p95 / max in ms (target: p95 <= 200 ms); 'matched' is the last request's total")
    for label, _kind, times, total in results:
        verdict = "ok" if p95(times) <= 200 else "OVER"
        print(f"  {label:<58} {statistics.median(times):7.1f} {p95(times):7.1f} {max(times):7.1f}"
              f"   matched {total:>8}  {verdict}")


def jsonb_comparator(url: str, requests: int) -> None:
    """The annotations as JSONB with a GIN index: equality (containment), prefix and a facet,
    each against the same question asked of crash_fields, straight SQL on both sides."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('bench_annotations_jsonb')").fetchone()[0]:
            started = time.perf_counter()
            conn.execute("CREATE TABLE bench_annotations_jsonb AS SELECT crash_id, project_id, received_at,"
                         " annotations::jsonb AS annotations FROM crashes")
            conn.execute("CREATE INDEX ON bench_annotations_jsonb USING gin (annotations jsonb_path_ops)")
            conn.execute("CREATE INDEX ON bench_annotations_jsonb (project_id, received_at)")
            conn.execute("VACUUM ANALYZE bench_annotations_jsonb")
            print(f"\n  jsonb copy + GIN index built in {time.perf_counter() - started:.0f} s")
        sizes = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('bench_annotations_jsonb')),"
                             " pg_size_pretty(pg_total_relation_size('crash_fields'))").fetchone()
        print(f"\nPostgreSQL comparator, straight SQL (size with indexes: jsonb+GIN {sizes[0]},"
              f" crash_fields {sizes[1]} for all fields):")
        gpu = GPUS[0]
        pairs = [
            ("equality: newest 50 + count, gpu = <popular>",
             ("SELECT crash_id FROM bench_annotations_jsonb WHERE annotations @> %s ORDER BY received_at DESC LIMIT 50",
              "SELECT count(*) FROM bench_annotations_jsonb WHERE annotations @> %s"), (json.dumps({"gpu": gpu}),),
             ("SELECT crash_id FROM crash_fields WHERE project_id = 1 AND field = 'annotations.gpu' AND value = %s"
              " ORDER BY received_at DESC LIMIT 50",
              "SELECT count(*) FROM crash_fields WHERE project_id = 1 AND field = 'annotations.gpu' AND value = %s"),
             (gpu,)),
            ("prefix: count, driver_version ^52",
             ("SELECT count(*) FROM bench_annotations_jsonb WHERE annotations->>'driver_version' LIKE '52%%'",),
             (), ("SELECT count(*) FROM crash_fields WHERE project_id = 1 AND field = 'annotations.driver_version'"
                  " AND value >= '52' AND value < '52\U0010ffff'",), ()),
            ("facet: top 10 gpu of all crashes",
             ("SELECT annotations->>'gpu', count(*) FROM bench_annotations_jsonb WHERE project_id = 1 GROUP BY 1"
              " ORDER BY 2 DESC LIMIT 10",), (),
             ("SELECT value, count(*) FROM crash_fields WHERE project_id = 1 AND field = 'annotations.gpu'"
              " GROUP BY 1 ORDER BY 2 DESC LIMIT 10",), ()),
        ]
        for label, jsonb_sql, jsonb_args, kv_sql, kv_args in pairs:
            jsonb = _time_sql(conn, jsonb_sql, jsonb_args, requests)
            kv = _time_sql(conn, kv_sql, kv_args, requests)
            print(f"  {label:<46} jsonb+GIN p95 {p95(jsonb):7.1f} ms   crash_fields p95 {p95(kv):7.1f} ms"
                  f"   ratio {p95(jsonb) / p95(kv):5.1f}x")


def _time_sql(conn: psycopg.Connection, statements: tuple[str, ...], args: tuple[Any, ...], requests: int) -> list[float]:
    times = []
    for i in range(2 + requests):
        start = time.perf_counter()
        for sql in statements:
            conn.execute(sql, args).fetchall()
        if i >= 2:
            times.append((time.perf_counter() - start) * 1000)
    return times


def run_postgres(args: argparse.Namespace, plan: list[tuple[str, str | None, str]]) -> None:
    url = f"{args.postgres_url}/{args.database}"
    fresh = open_scratch(args.postgres_url, args.database, args.keep)
    try:
        with tempfile.TemporaryDirectory(prefix="crashd-bench-search-") as tmp:
            settings = Settings(database_url=url, data_dir=Path(tmp), admin_token=TOKEN, sweeper_interval_seconds=3600)
            state = build_state(settings)  # migrates
            if fresh:
                queries.create_project(state.ctx.engine, name="game")
                started = time.perf_counter()
                seed_postgres(url, args.crashes, plan)
                print(f"postgres: seeded {args.crashes} crashes in {time.perf_counter() - started:.0f} s")
            state.ctx.engine.dispose()
            with psycopg.connect(url) as conn:
                biggest = conn.execute("SELECT id FROM crash_groups ORDER BY crash_count DESC LIMIT 1").fetchone()[0]
                rows = conn.execute("SELECT count(*) FROM crash_fields").fetchone()[0]
            print(f"postgres: {rows} crash_fields rows")
            print_results("PostgreSQL", time_queries(settings, biggest, args.requests))
            jsonb_comparator(url, args.requests)
    finally:
        if not args.keep:
            drop_scratch(args.postgres_url, args.database)


def run_sqlite(args: argparse.Namespace, plan: list[tuple[str, str | None, str]]) -> None:
    with tempfile.TemporaryDirectory(prefix="crashd-bench-search-") as tmp:
        data_dir = Path(args.sqlite_dir) if args.sqlite_dir else Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = not (data_dir / "crashd.db").exists()
        settings = Settings(data_dir=data_dir, admin_token=TOKEN, sweeper_interval_seconds=3600)
        state = build_state(settings)  # migrates
        if fresh:
            queries.create_project(state.ctx.engine, name="game")
            state.ctx.engine.dispose()
            started = time.perf_counter()
            seed_sqlite(data_dir / "crashd.db", args.crashes, plan)
            print(f"sqlite: seeded {args.crashes} crashes in {time.perf_counter() - started:.0f} s")
        conn = sqlite3.connect(data_dir / "crashd.db")
        biggest = conn.execute("SELECT id FROM crash_groups ORDER BY crash_count DESC LIMIT 1").fetchone()[0]
        conn.close()
        print_results("SQLite", time_queries(settings, biggest, args.requests))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="crashd_bench_search")
    parser.add_argument("--sqlite-dir", help="keep the SQLite database here (reused when it exists)")
    parser.add_argument("--crashes", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database (reused when it exists)")
    args = parser.parse_args()
    plan = groups_plan(args.groups)
    print(f"{args.crashes} crashes, {args.groups} groups, {args.requests} timed requests per query;"
          f" {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    if args.backend in ("postgres", "both"):
        run_postgres(args, plan)
    if args.backend in ("sqlite", "both"):
        run_sqlite(args, plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
