"""Dashboard benchmark: the groups page, a group page and the builds comparison on PostgreSQL
with 100,000 crashes in 2,000 groups (issue 6: each under 200 ms at p95).

Run from the repository root: ``.venv/bin/python bench/dashboard.py [--crashes N] [--groups G]
[--requests R] [--keep] [--explain]``. Needs PostgreSQL on 127.0.0.1:5432 (user ``postgres``,
trust) or ``--postgres-url``. Results: docs/benchmarks.md ("Dashboard").

1. A scratch database (``crashd_bench_dashboard``, dropped at the end unless ``--keep``),
   migrated by crashd itself (so the indexes of migration 0006 are there).
2. Seeded with COPY, consistent with what the pipeline writes: G groups with skewed sizes
   (Zipf-like: the biggest has thousands of crashes, most have a handful), ~200 testers, 10
   builds, 3 platforms, crashes received over the last 16 days; then crash_groups' counts
   and the group_testers / group_builds / group_platforms rows are computed from the crashes
   by SQL (exactly what storage/groups.py's upserts keep), and checked. Tickets on ~6 % of
   the groups (open, regressed, resolved), sessions per build, missing symbols on some
   crashes. VACUUM ANALYZE, as autovacuum would after a bulk load.
3. Timed through the real ASGI app (starlette TestClient, admin bearer token): the HTML pages
   ``/``, ``/groups/<biggest>``, ``/builds?base=&target=`` when server/dashboard has them, and
   always their JSON twins ``/api/groups``, ``/api/groups/<biggest>``, ``/api/builds/compare``;
   5 warm-up requests, then R timed ones each; p50, p95 and max in milliseconds. Then, for
   the record, ``/api/triage`` and ``/api/symbols`` (R/5 requests; no target).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_db import drop_scratch, open_scratch

from schemas.settings import Settings
from server.app import build_state, create_app
from storage import queries

TOKEN = "bench-admin-token-0123456789abcdef"
BUILDS = [f"0.9.{i}" for i in range(10)]
PLATFORMS = ["Windows NT", "Linux", "Mac OS X"]
COMPONENTS = ["game", "engine", "llama_cpp", "audio", "render", None]
NOW = datetime.now(timezone.utc)


def plan_sizes(crashes: int, groups: int, rng: random.Random) -> list[int]:
    """Crashes per group: Zipf-like weights (1/rank^1.1), at least one each, summing to crashes."""
    weights = [1 / (rank + 1) ** 1.1 for rank in range(groups)]
    scale = (crashes - groups) / sum(weights)
    sizes = [1 + int(w * scale) for w in weights]
    for i in range(crashes - sum(sizes)):
        sizes[i % groups] += 1
    rng.shuffle(sizes)
    return sizes


def seed(url: str, project_id: int, crashes: int, groups: int) -> None:
    """Groups, crashes, counters, tickets, sessions and missing symbols; counters checked."""
    rng = random.Random(6)
    sizes = plan_sizes(crashes, groups, rng)
    with psycopg.connect(url) as conn:
        ids = _insert_groups(conn, project_id, groups, rng)
        _copy_crashes(conn, project_id, ids, sizes, rng)
        _derive_counters(conn)
        _insert_tickets(conn, project_id, ids, rng)
        _copy_sessions(conn, project_id, rng)
        _copy_missing(conn, rng)
        conn.commit()
        _check(conn, crashes)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _insert_groups(conn: psycopg.Connection, project_id: int, groups: int, rng: random.Random) -> list[int]:
    rows = [(project_id, f"bench::function_{i}<{rng.randrange(1000)}>", "1", rng.choice(COMPONENTS),
             f"GGML_ASSERT(n_{i} > 0) failed" if i % 7 == 0 else None, NOW, NOW, 0, 0) for i in range(groups)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO crash_groups (project_id, signature, signature_version, component, reason_text,"
                        " first_seen, last_seen, crash_count, tester_count) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
        return [r[0] for r in cur.execute("SELECT id FROM crash_groups ORDER BY id").fetchall()]


def _copy_crashes(conn: psycopg.Connection, project_id: int, ids: list[int], sizes: list[int],
                  rng: random.Random) -> None:
    columns = ("crash_id, project_id, status, received_at, updated_at, processed_at, submitted_via, build, tester_id,"
               " minidump_key, minidump_size, minidump_sha256, annotations_key, annotations, processed, signature,"
               " signature_version, component, platform, group_id")
    groups = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, signature, component FROM crash_groups")}
    with conn.cursor().copy(f"COPY crashes ({columns}) FROM STDIN") as copy:
        for group_id, size in zip(ids, sizes, strict=False):
            testers = rng.sample(range(200), k=min(200, 1 + size // 3))
            builds = BUILDS[rng.randrange(6):]
            platform = rng.choice(PLATFORMS)
            signature, component = groups[group_id]
            for _ in range(size):
                at = NOW - timedelta(seconds=rng.randrange(16 * 86400))
                crash_id = str(uuid.uuid4())
                processed = {"crash_reason": "SIGSEGV", "top_frames": [{"frame": 0, "trust": "context",
                                                                        "function": signature}]}
                copy.write_row((crash_id, project_id, "processed", at, at, at, "minidump", rng.choice(builds),
                                f"tester-{rng.choice(testers)}", f"dumps/{crash_id}", 4096, "0" * 64,
                                f"annotations/{crash_id}", "{}", json.dumps(processed), signature, "1",
                                component, platform if rng.random() < 0.9 else rng.choice(PLATFORMS), group_id))


def _derive_counters(conn: psycopg.Connection) -> None:
    """What storage/groups.py's upserts would have left, computed from the crashes."""
    conn.execute("""UPDATE crash_groups g SET crash_count = c.n, tester_count = c.t, first_seen = c.f,
                    last_seen = c.l FROM (SELECT group_id, count(*) n, count(DISTINCT tester_id) t,
                    min(received_at) f, max(received_at) l FROM crashes GROUP BY group_id) c WHERE c.group_id = g.id""")
    conn.execute("""INSERT INTO group_testers SELECT group_id, tester_id, count(*), min(received_at),
                    max(received_at) FROM crashes WHERE tester_id IS NOT NULL GROUP BY group_id, tester_id""")
    conn.execute("""INSERT INTO group_builds SELECT group_id, coalesce(build, ''), count(*), min(received_at),
                    max(received_at) FROM crashes GROUP BY group_id, coalesce(build, '')""")
    conn.execute("""INSERT INTO group_platforms SELECT group_id, coalesce(platform, ''), count(*) FROM crashes
                    GROUP BY group_id, coalesce(platform, '')""")


def _insert_tickets(conn: psycopg.Connection, project_id: int, ids: list[int], rng: random.Random) -> None:
    with conn.cursor() as cur:
        for group_id in rng.sample(ids, k=len(ids) * 6 // 100):
            state = rng.choice(["open", "open", "regressed", "resolved", "verified"])
            priority = rng.choice(["P0", "P1"])
            due = NOW + timedelta(hours=rng.randrange(-48, 72))
            ticket_id = cur.execute(
                "INSERT INTO tickets (project_id, group_id, priority, state, title, rule, testers_at_firing,"
                " crashes_at_firing, builds_at_firing, due_at, fixed_in, created_at, updated_at)"
                " VALUES (%s,%s,%s,%s,%s,'spreading',3,5,'[]',%s,%s,%s,%s) RETURNING id",
                (project_id, group_id, priority, state, f"game: group {group_id}", due,
                 BUILDS[8] if state in ("resolved", "verified") else None, NOW - timedelta(days=3), NOW)).fetchone()[0]
            cur.execute("INSERT INTO ticket_events (ticket_id, at, actor, action, details)"
                        " VALUES (%s,%s,'rule:spreading','opened','{}')", (ticket_id, NOW - timedelta(days=3)))


def _copy_sessions(conn: psycopg.Connection, project_id: int, rng: random.Random) -> None:
    with conn.cursor().copy("COPY sessions (session_id, project_id, tester_id, build, started, duration, status,"
                            " updated_at) FROM STDIN") as copy:
        for build in BUILDS[:-1]:  # the newest build has no sessions yet: its rates are unknown
            for i in range(rng.randrange(1500, 3000)):
                started = NOW - timedelta(seconds=rng.randrange(16 * 86400))
                status = "crashed" if rng.random() < 0.05 else "exited"
                copy.write_row((f"{build}-{i}", project_id, f"tester-{rng.randrange(200)}", build, started,
                                1800.0, status, started))


def _copy_missing(conn: psycopg.Connection, rng: random.Random) -> None:
    modules = [(f"lib{i}.so", f"{i:032X}0") for i in range(40)]
    crash_ids = [r[0] for r in conn.execute("SELECT crash_id FROM crashes TABLESAMPLE SYSTEM (10)")]
    with conn.cursor().copy("COPY crash_missing_symbols (crash_id, debug_file, debug_id) FROM STDIN") as copy:
        for crash_id in crash_ids:
            for module in {modules[min(int(rng.expovariate(0.2)), 39)] for _ in range(2)}:
                copy.write_row((crash_id, *module))


def _check(conn: psycopg.Connection, crashes: int) -> None:
    """Counters agree with the crashes, as the pipeline keeps them."""
    total, bad = conn.execute("""SELECT sum(crash_count), count(*) FILTER (WHERE crash_count <> (SELECT sum(b.crash_count)
        FROM group_builds b WHERE b.group_id = g.id) OR tester_count <> (SELECT count(*) FROM group_testers t
        WHERE t.group_id = g.id)) FROM crash_groups g""").fetchone()
    assert total == crashes and bad == 0, (total, bad)


def timed(client, path: str, requests: int) -> list[float]:
    """Milliseconds of each of requests GETs of path (after 5 warm-up ones)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    times = []
    for i in range(5 + requests):
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        if i >= 5:
            times.append(elapsed)
    return times


def report(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank: the 48th of 50
    return f"{name:<48} p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms"


def targets(app, biggest: int) -> list[tuple[str, str]]:
    """(label, path) of the pages to time: the HTML ones server/dashboard has, then the JSON twins."""
    compare = f"project=game&base={BUILDS[7]}&target={BUILDS[8]}"
    routes = {getattr(route, "path", None) for route in app.routes}
    html = [("/", "HTML /", "/"), ("/groups/{group_id:int}", "HTML /groups/<biggest>", f"/groups/{biggest}"),
            ("/builds", "HTML /builds (compare)", f"/builds?{compare}")]
    return [(label, path) for route, label, path in html if route in routes] + [
        ("JSON /api/groups (50, by last seen)", "/api/groups?project=game&sort=last_seen&limit=50"),
        ("JSON /api/groups/<biggest>", f"/api/groups/{biggest}"),
        ("JSON /api/builds/compare", f"/api/builds/compare?{compare}")]


def other_targets() -> list[tuple[str, str]]:
    """Pages without a speed target, timed for the record (fewer requests)."""
    return [("JSON /api/triage (board + daily report)", "/api/triage?project=game"),
            ("JSON /api/symbols", "/api/symbols?project=game")]


def explain(url: str) -> None:
    """EXPLAIN ANALYZE of the heaviest statements (the sparkline query of the first page)."""
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM crash_groups ORDER BY last_seen DESC LIMIT 50")]
        since = datetime.combine((NOW - timedelta(days=13)).date(), datetime.min.time(), tzinfo=timezone.utc)
        for line in conn.execute(
                "EXPLAIN ANALYZE SELECT group_id, date(timezone('UTC', received_at)), count(*) FROM crashes"
                " WHERE group_id = ANY(%s) AND received_at >= %s GROUP BY 1, 2", (ids, since)):
            print("   ", line[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="crashd_bench_dashboard")
    parser.add_argument("--crashes", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the database (and skip seeding if it exists)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the sparkline query")
    args = parser.parse_args()
    url = f"{args.postgres_url}/{args.database}"
    fresh = open_scratch(args.postgres_url, args.database, args.keep)
    try:
        return run(args, url, fresh)
    finally:
        if not args.keep:
            drop_scratch(args.postgres_url, args.database)


def run(args: argparse.Namespace, url: str, fresh: bool) -> int:
    from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory(prefix="crashd-bench-dashboard-") as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp), admin_token=TOKEN, sweeper_interval_seconds=3600)
        state = build_state(settings)  # migrates
        if fresh:
            project = queries.create_project(state.ctx.engine, name="game")
            started = time.perf_counter()
            seed(url, project.id, args.crashes, args.groups)
            print(f"seeded {args.crashes} crashes in {args.groups} groups in {time.perf_counter() - started:.1f} s")
        with psycopg.connect(url) as conn:
            biggest, size = conn.execute("SELECT id, crash_count FROM crash_groups ORDER BY crash_count DESC LIMIT 1").fetchone()
        print(f"biggest group: {biggest} ({size} crashes); {args.requests} requests each after 5 warm-up ones")
        if args.explain:
            explain(url)
        app = create_app(settings, state)
        with TestClient(app) as client:
            for label, path in targets(app, biggest):
                print(report(label, timed(client, path, args.requests)), flush=True)
            for label, path in other_targets():
                print(report(label, timed(client, path, max(5, args.requests // 5))), flush=True)
        state.ctx.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
