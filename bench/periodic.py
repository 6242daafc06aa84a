"""Periodic triage benchmark: one sweeper tick's rule evaluation (workers.triage_jobs.run_periodic)
over the groups seen in the last rule window, on PostgreSQL with bench/dashboard.py's data
(100,000 crashes in 2,000 groups over 16 days, tickets on ~6 % of the groups, sessions).

Run from the repository root: ``.venv/bin/python bench/periodic.py [--crashes N] [--groups G]
[--runs R]``. Needs PostgreSQL on 127.0.0.1:5432 (user ``postgres``, trust) or
``--postgres-url``. Results: docs/benchmarks.md ("Periodic triage").

The first run opens the tickets the seeded data calls for (its time is shown apart); the next R
runs change nothing and are what every later tick costs. The server runs one such tick every
CRASHD_SWEEPER_INTERVAL_SECONDS (60 s by default), in its own process without Redis, as an RQ
job with it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard import seed

from schemas.settings import Settings
from schemas.tables import utcnow
from server.app import build_state
from storage import queries, triage_queries
from workers import triage_jobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="crashd_bench_periodic")
    parser.add_argument("--crashes", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    url = f"{args.postgres_url}/{args.database}"
    with psycopg.connect(f"{args.postgres_url}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.database}"')
    try:
        with tempfile.TemporaryDirectory(prefix="crashd-bench-periodic-") as tmp:
            settings = Settings(database_url=url, data_dir=Path(tmp), admin_token="b" * 32,
                                sweeper_interval_seconds=3600)
            state = build_state(settings)  # migrates
            project = queries.create_project(state.ctx.engine, name="game")
            seed(url, project.id, args.crashes, args.groups)
            active = triage_queries.active_group_ids(state.ctx.engine, since=utcnow() - timedelta(hours=24))
            print(f"{args.crashes} crashes in {args.groups} groups; {len(active)} seen in the last 24 h")
            started = time.perf_counter()
            opened = triage_jobs.run_periodic(state.ctx)
            print(f"first tick: {time.perf_counter() - started:.2f} s, {len(opened)} ticket changes")
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                changes = triage_jobs.run_periodic(state.ctx)
                times.append(time.perf_counter() - started)
                assert not changes, changes
            print(f"later ticks ({args.runs}): median {statistics.median(times):.2f} s, "
                  f"min {min(times):.2f} s, max {max(times):.2f} s")
            state.ctx.engine.dispose()
    finally:
        with psycopg.connect(f"{args.postgres_url}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
