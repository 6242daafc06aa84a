"""Crash groups: exact counts under concurrency, moving crashes between groups."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, text

from schemas.settings import Settings
from schemas.tables import Crash
from storage import groups, queries
from storage.db import make_engine, migrate, session
from storage.groups import Grouping, assign_group

from conftest import _reset_postgres

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    url = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    engine = make_engine(Settings(data_dir=tmp_path, database_url=url))
    migrate(engine)
    if url:
        _reset_postgres(url)
    yield engine
    engine.dispose()


def add_crashes(engine, project_id: int, specs: list[tuple[str | None, str | None]]) -> list[str]:
    """Insert crash rows with (build, tester_id); returns their ids."""
    ids = []
    with session(engine) as s:
        for i, (build, tester) in enumerate(specs):
            crash_id = str(uuid.uuid4())
            s.add(Crash(crash_id=crash_id, project_id=project_id, submitted_via="minidump", build=build,
                        tester_id=tester, minidump_key="k", minidump_size=1, minidump_sha256="0" * 64,
                        annotations_key="a", received_at=T0 + timedelta(minutes=i), updated_at=T0))
            ids.append(crash_id)
        s.commit()
    return ids


def grouping(crash_id: str, project_id: int, signature: str, minute: int = 0, platform: str = "Linux") -> Grouping:
    return Grouping(crash_id=crash_id, project_id=project_id, signature=signature, signature_version="t",
                    component="game", reason_text=None, platform=platform, seen_at=T0 + timedelta(minutes=minute))


def test_counts_testers_builds_platforms(engine) -> None:
    project = queries.create_project(engine, name="g")
    ids = add_crashes(engine, project.id, [("1.0", "t1"), ("1.0", "t1"), ("1.1", "t2"), (None, None)])
    group_ids = {assign_group(engine, grouping=grouping(c, project.id, "crash_here", i)) for i, c in enumerate(ids)}
    assert len(group_ids) == 1
    group = groups.get_group(engine, group_id=group_ids.pop())
    assert (group["crash_count"], group["tester_count"]) == (4, 2)
    assert {b["build"]: b["crash_count"] for b in group["builds"]} == {"1.0": 2, "1.1": 1, "": 1}
    assert group["platforms"] == {"Linux": 4}
    assert queries.as_utc(group["first_seen"]) == T0 and queries.as_utc(group["last_seen"]) == T0 + timedelta(minutes=3)


def test_same_signature_again_counts_once(engine) -> None:
    project = queries.create_project(engine, name="g")
    (crash_id,) = add_crashes(engine, project.id, [("1.0", "t1")])
    first = assign_group(engine, grouping=grouping(crash_id, project.id, "sig"))
    assert assign_group(engine, grouping=grouping(crash_id, project.id, "sig")) == first
    group = groups.get_group(engine, group_id=first)
    assert (group["crash_count"], group["tester_count"]) == (1, 1)


def test_moving_a_crash_updates_both_groups(engine) -> None:
    project = queries.create_project(engine, name="g")
    a, b = add_crashes(engine, project.id, [("1.0", "t1"), ("1.0", "t2")])
    old = assign_group(engine, grouping=grouping(a, project.id, "game.exe@0x1234"))
    assign_group(engine, grouping=grouping(b, project.id, "game.exe@0x1234"))
    new = assign_group(engine, grouping=grouping(a, project.id, "crash_here | main"))
    old_group, new_group = groups.get_group(engine, group_id=old), groups.get_group(engine, group_id=new)
    assert (old_group["crash_count"], old_group["tester_count"]) == (1, 1)
    assert {x["build"]: x["crash_count"] for x in old_group["builds"]} == {"1.0": 1}
    assert (new_group["crash_count"], new_group["tester_count"]) == (1, 1)
    assert groups.group_crash_ids(engine, group_id=new) == [a]
    total = sum(g["crash_count"] for g in groups.list_groups(engine, project_id=project.id))
    assert total == 2  # never counted in two groups


def test_concurrent_assignment_is_exact(engine) -> None:
    """8 threads assign 200 crashes of one signature (20 testers, 4 builds) at once."""
    project = queries.create_project(engine, name="g")
    specs = [(f"1.{i % 4}", f"tester-{i % 20}") for i in range(200)]
    ids = add_crashes(engine, project.id, specs)
    errors: list[BaseException] = []

    def work(chunk: list[str]) -> None:
        try:
            for crash_id in chunk:
                assign_group(engine, grouping=grouping(crash_id, project.id, "contended | signature"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    (row,) = groups.list_groups(engine, project_id=project.id)
    group = groups.get_group(engine, group_id=row["id"])
    assert (group["crash_count"], group["tester_count"]) == (200, 20)
    assert {b["build"]: b["crash_count"] for b in group["builds"]} == {f"1.{i}": 50 for i in range(4)}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM group_testers")).scalar_one() == 20


def test_concurrent_moves_between_two_groups_stay_exact(engine) -> None:
    """Crashes moving A->B while others move B->A (a deadlock risk on PostgreSQL)."""
    project = queries.create_project(engine, name="g")
    ids = add_crashes(engine, project.id, [("1.0", f"t{i}") for i in range(60)])
    for i, crash_id in enumerate(ids):
        assign_group(engine, grouping=grouping(crash_id, project.id, "A" if i % 2 else "B"))

    def work(chunk: list[tuple[int, str]]) -> None:
        for i, crash_id in chunk:
            assign_group(engine, grouping=grouping(crash_id, project.id, "B" if i % 2 else "A"))

    pairs = list(enumerate(ids))
    threads = [threading.Thread(target=work, args=(pairs[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = {g["signature"]: (g["crash_count"], g["tester_count"]) for g in groups.list_groups(engine, project_id=project.id)}
    assert counts == {"A": (30, 30), "B": (30, 30)}


def test_list_filters(engine) -> None:
    project = queries.create_project(engine, name="g")
    ids = add_crashes(engine, project.id, [("1.0", "t1"), ("2.0", "t2"), ("2.0", "t3")])
    assign_group(engine, grouping=grouping(ids[0], project.id, "old"))
    for crash_id in ids[1:]:
        assign_group(engine, grouping=Grouping(crash_id=crash_id, project_id=project.id, signature="nar::tell",
                                               signature_version="t", component="nar_ffi", reason_text="panicked",
                                               platform="Windows NT", seen_at=T0 + timedelta(days=2)))
    assert [g["signature"] for g in groups.list_groups(engine, project_id=project.id)] == ["nar::tell", "old"]
    assert [g["signature"] for g in groups.list_groups(engine, component="nar_ffi")] == ["nar::tell"]
    assert [(g["signature"], g["build_crash_count"]) for g in groups.list_groups(engine, build="2.0")] == [("nar::tell", 2)]
    assert [g["signature"] for g in groups.list_groups(engine, since=T0 + timedelta(days=1))] == ["nar::tell"]


def test_reprocessing_without_a_reason_keeps_the_groups_reason(engine) -> None:
    """Counted again in its group, a crash sets the group's component, and its reason when it has one."""
    project = queries.create_project(engine, name="g")
    (crash_id,) = add_crashes(engine, project.id, [("1.0", "t1")])
    placed = Grouping(crash_id=crash_id, project_id=project.id, signature="sig", signature_version="t",
                      component="game", reason_text="panicked", platform="Linux", seen_at=T0)
    group_id = assign_group(engine, grouping=placed)
    assign_group(engine, grouping=replace(placed, component="nar_ffi", reason_text=None))
    group = groups.get_group(engine, group_id=group_id)
    assert (group["component"], group["reason_text"], group["crash_count"]) == ("nar_ffi", "panicked", 1)
    assign_group(engine, grouping=replace(placed, reason_text="SIGSEGV"))
    assert groups.get_group(engine, group_id=group_id)["reason_text"] == "SIGSEGV"


def test_a_redirected_signature_counts_in_its_target(engine) -> None:
    """A signature merged into another group (group_redirects) counts there: its crashes,
    testers, builds, platforms, the earliest time seen and the most severe kind."""
    project = queries.create_project(engine, name="g")
    first, merged = add_crashes(engine, project.id, [("1.0", "t1"), ("2.0", "t2")])
    target = assign_group(engine, grouping=replace(grouping(first, project.id, "A", minute=10), kind="error"))
    with engine.begin() as conn:
        conn.execute(groups.REDIRECTS.insert().values(project_id=project.id, signature="B", group_id=target,
                                                      actor="t", created_at=T0))
    placed = replace(grouping(merged, project.id, "B", minute=5, platform="Windows NT"), kind="crash",
                     component="other")
    assert assign_group(engine, grouping=placed) == target
    assert assign_group(engine, grouping=placed) == target  # counted once
    group = groups.get_group(engine, group_id=target)
    assert (group["crash_count"], group["tester_count"], group["kind"], group["component"]) == (2, 2, "crash", "game")
    assert queries.as_utc(group["first_seen"]) == T0 + timedelta(minutes=5)
    assert queries.as_utc(group["last_seen"]) == T0 + timedelta(minutes=10)
    assert {b["build"]: b["crash_count"] for b in group["builds"]} == {"1.0": 1, "2.0": 1}
    assert group["platforms"] == {"Linux": 1, "Windows NT": 1}


def test_placing_a_crash_reuses_its_statements(engine) -> None:
    """place() executes statements built once (storage/groups.py, "statements built once"):
    a statement built for each call cost the worker more CPU than its SQL. The second new
    crash, and the second move, run the very statement objects the first one ran."""
    project = queries.create_project(engine, name="g")
    ids = add_crashes(engine, project.id, [("1.0", f"t{i}") for i in range(5)])
    executed: list[int] = []

    def record(_conn, clause, *_args) -> None:
        if not isinstance(clause, str):
            executed.append(id(clause))

    def statements(crash_id: str, signature: str) -> list[int]:
        executed.clear()
        assign_group(engine, grouping=grouping(crash_id, project.id, signature))
        return list(executed)

    event.listen(engine, "before_execute", record)
    try:
        assert statements(ids[0], "A") == statements(ids[1], "A")  # new crashes (and a new tester)
        assign_group(engine, grouping=grouping(ids[2], project.id, "A"))
        assert statements(ids[3], "C") == statements(ids[4], "D")  # new crashes in new groups
        assert statements(ids[0], "B") == statements(ids[1], "B")  # moves (one tester less in A)
        assert statements(ids[0], "B") == statements(ids[1], "B")  # counted in the same group again
    finally:
        event.remove(engine, "before_execute", record)
