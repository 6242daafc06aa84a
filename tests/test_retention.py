"""Retention: `crashd prune` and CRASHD_RETENTION_DAYS delete old crashes whole (rows, blobs),
count them out of their groups and delete old sessions, on SQLite and on PostgreSQL + RQ."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import distinct, func, select, update

from schemas.tables import utcnow
from server import cli
from storage.blobs import day_key
from storage.groups import BUILDS, CRASHES, GROUPS, MISSING, PLATFORMS, TESTERS
from storage.retention import ATTACHMENTS, FINGERPRINTS, SESSIONS
from workers import retention

from conftest import Crashd
from dashboard_world import BETA1, World, seed

OLD = ("tick0", "tick1", "tick2", "parser")  # aged to 100 days; World::tick keeps tick3, tick-beta2
OLD_SESSIONS = 100  # BETA1's sessions, aged to 100 days too; BETA2's 250 stay


@pytest.fixture
def world(crashd: Crashd) -> World:
    """The dashboard world with OLD received 100 days ago (their processed reports, whose keys
    follow the day received, moved along)."""
    world = seed(crashd)
    ctx, then = crashd.state.ctx, utcnow() - timedelta(days=100)
    for name in OLD:
        crash_id = world.crashes[name]
        received = crashd.crash(crash_id)["received_at"]
        report = day_key("processed", datetime.fromisoformat(received), f"{crash_id}.json")
        with ctx.blobs.open(report) as handle:
            ctx.blobs.put_bytes(day_key("processed", then, f"{crash_id}.json"), handle.read())
        ctx.blobs.delete(report)
    with ctx.engine.begin() as conn:
        conn.execute(update(CRASHES).where(CRASHES.c.crash_id.in_([world.crashes[n] for n in OLD]))
                     .values(received_at=then))
        assert conn.execute(update(SESSIONS).where(SESSIONS.c.build == BETA1).values(started=then)).rowcount == 100
    return world


def session_count(crashd: Crashd) -> int:
    with crashd.state.ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(SESSIONS)).scalar_one()


def rows(crashd: Crashd, table: Any, crash_ids: list[str]) -> int:
    with crashd.state.ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(table.c.crash_id.in_(crash_ids))).scalar_one()


def blobs_of(crashd: Crashd, crash_ids: list[str]) -> list[str]:
    return [str(p) for p in crashd.blob_files() if any(c in str(p) for c in crash_ids)]


def assert_counts_match_crashes(crashd: Crashd) -> None:
    """Every group's counters say what the crashes table says."""
    with crashd.state.ctx.engine.connect() as conn:
        for group in conn.execute(select(GROUPS)).all():
            of_group = CRASHES.c.group_id == group.id
            crashes, testers = conn.execute(select(func.count(), func.count(distinct(CRASHES.c.tester_id)))
                                            .where(of_group)).one()
            assert (group.crash_count, group.tester_count) == (crashes, testers), group.signature
            for table, column in ((BUILDS, "build"), (PLATFORMS, "platform"), (TESTERS, "tester_id")):
                counted = dict(conn.execute(select(table.c[column], table.c.crash_count)
                                            .where(table.c.group_id == group.id)).all())
                value = func.coalesce(CRASHES.c[column], "")
                actual = dict(conn.execute(select(value, func.count()).where(of_group, CRASHES.c[column].isnot(None)
                                                                             if column == "tester_id" else True)
                                           .group_by(value)).all())
                assert counted == actual, (group.signature, column)


def test_prune_deletes_old_crashes_whole_and_keeps_counts_exact(crashd: Crashd, world: World) -> None:
    old = [world.crashes[n] for n in OLD]
    kept = [c for n, c in world.crashes.items() if n not in OLD]
    assert rows(crashd, ATTACHMENTS, old) == 2 and rows(crashd, FINGERPRINTS, old) == 4  # tick0 and parser logs
    assert blobs_of(crashd, old) and blobs_of(crashd, kept)
    kept_blobs = blobs_of(crashd, kept)
    tick = crashd.client.get(f"/api/groups/{world.groups['World::tick']}", headers=crashd.admin).json()
    assert (tick["crash_count"], tick["tester_count"]) == (5, 4)

    before = utcnow() - timedelta(days=90)
    dry = retention.prune(crashd.state.ctx, before=before, dry_run=True)
    assert (dry.crashes, dry.sessions, dry.blobs) == (4, OLD_SESSIONS, 0) and rows(crashd, CRASHES, old) == 4
    assert session_count(crashd) == 350
    done = retention.prune(crashd.state.ctx, before=before)
    assert (done.crashes, done.sessions, done.blobs_failed) == (4, OLD_SESSIONS, 0)
    assert done.blobs >= 4 * 2  # dump and report each (the annotations are in the row)
    assert session_count(crashd) == 250

    for table in (CRASHES, ATTACHMENTS, FINGERPRINTS, MISSING):
        assert rows(crashd, table, old) == 0, table.name
    assert blobs_of(crashd, old) == []
    assert blobs_of(crashd, kept) == kept_blobs and rows(crashd, CRASHES, kept) == len(kept)
    assert_counts_match_crashes(crashd)
    tick = crashd.client.get(f"/api/groups/{world.groups['World::tick']}", headers=crashd.admin).json()
    assert (tick["crash_count"], tick["tester_count"]) == (2, 2)  # tick3 (tester-3), tick-beta2 (tester-1)
    assert {b["build"]: b["crash_count"] for b in tick["builds"]} == {"1.0.0-beta1": 1, "1.0.0-beta2": 1}
    assert tick["ticket"] is not None  # groups and tickets stay
    listed = crashd.client.get("/api/groups?project=game", headers=crashd.admin).json()["groups"]
    parser = world.groups["Parser::parse<T>alert<T>"]
    assert parser not in [g["id"] for g in listed]  # emptied: no longer listed, but still there
    emptied = crashd.client.get(f"/api/groups/{parser}", headers=crashd.admin).json()
    assert (emptied["crash_count"], emptied["crashes"], emptied["representative_crash"]) == (0, [], None)
    assert crashd.client.get(f"/api/crashes/{old[0]}", headers=crashd.admin).status_code == 404
    assert retention.prune(crashd.state.ctx, before=before).crashes == 0  # nothing left to do


def test_prune_limit_and_project(crashd: Crashd, world: World) -> None:
    before = utcnow() - timedelta(days=90)
    assert retention.prune(crashd.state.ctx, before=before, project_id=crashd.project.id + 1).crashes == 0
    three = retention.prune(crashd.state.ctx, before=before, limit=3)
    assert (three.crashes, three.sessions) == (3, 30)  # a tick's batch: crashes, and 10x as many sessions
    rest = retention.prune(crashd.state.ctx, before=before, project_id=crashd.project.id)
    assert (rest.crashes, rest.sessions) == (1, OLD_SESSIONS - 30)
    assert_counts_match_crashes(crashd)


def run_prune(crashd: Crashd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              *argv: str, **env: str) -> tuple[int, str, str]:
    """`crashd prune ...` against crashd's database and blobs."""
    monkeypatch.setenv("CRASHD_DATA_DIR", str(crashd.settings.data_dir))
    if crashd.settings.database_url:
        monkeypatch.setenv("CRASHD_DATABASE_URL", crashd.settings.database_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["crashd"])
    capsys.readouterr()
    status = cli.main(["prune", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_crashd_prune_command(crashd: Crashd, world: World, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_prune(crashd, monkeypatch, capsys)
    assert status == 2 and "--older-than 90d, or set CRASHD_RETENTION_DAYS" in err
    assert run_prune(crashd, monkeypatch, capsys, "--older-than", "soon")[0] == 2
    assert run_prune(crashd, monkeypatch, capsys, "--older-than", "90d", "--project", "nope")[0] == 2
    status, out, _ = run_prune(crashd, monkeypatch, capsys, "--older-than", "90d", "--dry-run")
    assert status == 0 and out.startswith(f"would delete 4 crashes and {OLD_SESSIONS} sessions from before ")
    status, out, _ = run_prune(crashd, monkeypatch, capsys, "--json", "--project", "game",
                               CRASHD_RETENTION_DAYS="95")
    assert status == 0
    summary = json.loads(out)
    assert (summary["crashes"], summary["sessions"], summary["dry_run"], summary["blobs_failed"]) == (
        4, OLD_SESSIONS, False, 0)
    assert rows(crashd, CRASHES, [world.crashes[n] for n in OLD]) == 0
    assert_counts_match_crashes(crashd)


def test_the_sweeper_tick_applies_retention_days(crashd: Crashd, world: World) -> None:
    ctx = crashd.state.ctx
    assert retention.tick(ctx) is None  # unset: keep everything
    assert rows(crashd, CRASHES, [world.crashes[n] for n in OLD]) == 4
    ctx.settings.retention_days = 90
    try:
        pruned = retention.tick(ctx)
    finally:
        ctx.settings.retention_days = None
    assert pruned is not None and (pruned.crashes, pruned.sessions) == (4, OLD_SESSIONS)
    assert rows(crashd, CRASHES, list(world.crashes.values())) == len(world.crashes) - 4
