"""Tickets on both backends: opening and escalation by the rules (one ticket per group under
racing workers), the state machine through the API, regressions, verification by numbers
(on resolve, when sessions arrive, periodically) and the triage CLI."""

from __future__ import annotations

import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import func, select

from schemas.tables import Crash, CrashGroup, Feedback, Notification, Ticket, utcnow
from storage.db import session
from storage.groups import Grouping, assign_group
from storage.tickets import open_or_escalate
from storage.triage_queries import group_stats, group_stats_many
from triage.thresholds import DEFAULT_RULES_PATH, GroupStats, WindowStats, evaluate, load_rules, windows
from triage.tickets.transitions import rules_may_change
from workers.queue import queue_job_id
from workers.triage_jobs import PERIODIC_JOB_NAME, evaluate_group, run_periodic, tick

from conftest import Crashd, _crashd, make_settings


@pytest.fixture
def tix(backend: str, services: tuple[str | None, str | None], tmp_path: Path) -> Iterator[Crashd]:
    """crashd with a webhook configured (nothing listens there: rows stay in the outbox)."""
    pg, redis = services
    yield from _crashd(backend, make_settings(backend, tmp_path, pg, redis, webhook_url="http://127.0.0.1:9/hook"))


def crash(c: Crashd, tester: str | None, build: str | None, signature: str = "crash_here") -> int:
    """A processed crash counted in its group (as GroupRule does); returns the group id."""
    row = Crash(crash_id=str(uuid.uuid4()), project_id=c.project.id, status="processed", submitted_via="minidump",
                build=build, tester_id=tester, minidump_key="k", minidump_size=1, minidump_sha256="0" * 64,
                annotations_key="a", received_at=utcnow())
    with session(c.state.ctx.engine) as s:
        s.add(row)
        s.commit()
    return assign_group(c.state.ctx.engine, grouping=Grouping(
        row.crash_id, c.project.id, signature, "1", "game", "SIGSEGV", "Linux", row.received_at))


def ticket(c: Crashd, ticket_id: int) -> dict[str, Any]:
    response = c.client.get(f"/api/tickets/{ticket_id}", headers=c.admin)
    assert response.status_code == 200, response.text
    return response.json()


def act(c: Crashd, ticket_id: int, action: str, **body: Any) -> Any:
    return c.client.post(f"/api/tickets/{ticket_id}/{action}", json=body, headers=c.admin)


def outbox(c: Crashd, ticket_id: int) -> list[str]:
    with session(c.state.ctx.engine) as s:
        rows = s.exec(select(Notification).where(Notification.ticket_id == ticket_id).order_by(Notification.id))
        return [f"{n.backend}:{n.event}" for (n,) in rows]


def hours_from_now(value: str) -> float:
    return (datetime.fromisoformat(value) - utcnow()).total_seconds() / 3600


def test_spreading_opens_p1_and_widespread_escalates_it(tix: Crashd) -> None:
    ctx = tix.state.ctx
    for tester in ("t1", "t2", "t2"):
        group_id = crash(tix, tester, "1.0")
    assert evaluate_group(ctx, group_id) == []
    crash(tix, "t3", "1.1")
    [opened] = evaluate_group(ctx, group_id)
    assert (opened.action, opened.notifications) == ("opened", 1)
    t = ticket(tix, opened.ticket_id)
    assert (t["priority"], t["state"], t["rule"], t["title"], t["group_id"]) == (
        "P1",
        "open",
        "spreading",
        "game: crash_here",
        group_id,
    )
    assert (t["testers_at_firing"], t["crashes_at_firing"], t["builds_at_firing"]) == (3, 4, ["1.0", "1.1"])
    assert t["reason_text"] == "rule spreading (P1): 3 testers (>= 3) in 24h, 4 crashes, builds 1.0, 1.1"
    assert 71.9 < hours_from_now(t["due_at"]) <= 72
    crash(tix, "t4", "1.1")
    assert evaluate_group(ctx, group_id) == []  # 4 testers: still P1, nothing new
    crash(tix, "t5", "1.1")
    [escalated] = evaluate_group(ctx, group_id)
    assert (escalated.ticket_id, escalated.action) == (opened.ticket_id, "escalated")
    assert evaluate_group(ctx, group_id) == []
    t = ticket(tix, opened.ticket_id)
    assert (t["priority"], t["rule"], t["testers_at_firing"]) == ("P0", "widespread", 5)
    assert 23.9 < hours_from_now(t["due_at"]) <= 24
    assert [(e["action"], e["actor"]) for e in t["history"]] == [
        ("opened", "rule:spreading"),
        ("escalated", "rule:widespread"),
    ]
    assert t["history"][1]["details"]["from"] == "P1"
    assert outbox(tix, t["id"]) == ["webhook:opened", "webhook:escalated"]
    listed = tix.client.get("/api/tickets?project=game", headers=tix.admin).json()["tickets"]
    assert [(x["id"], x["priority"], x["state"], x["signature"]) for x in listed] == [
        (t["id"], "P0", "open", "crash_here")
    ]
    assert {
        "id",
        "group_id",
        "priority",
        "state",
        "due_at",
        "fixed_in",
        "title",
        "rule",
        "external_key",
        "external_url",
    } <= listed[0].keys()


def test_racing_workers_open_exactly_one_ticket(tix: Crashd) -> None:
    """12 threads fire P1 and P0 rules on one group at the same moment: one ticket, P0, one
    `opened` event and at most one `escalated`."""
    for tester in range(6):
        group_id = crash(tix, f"t{tester}", "1.0")
    stats = group_stats(tix.state.ctx.engine, group_id=group_id, windows=windows(load_rules(DEFAULT_RULES_PATH)))
    widespread, spreading = evaluate(load_rules(DEFAULT_RULES_PATH), stats)
    barrier = threading.Barrier(12)

    def fire(i: int) -> Any:
        barrier.wait()
        return open_or_escalate(
            tix.state.ctx.engine, settings=tix.settings, group_id=group_id, firing=spreading if i % 2 else widespread
        )

    with ThreadPoolExecutor(12) as pool:
        changes = [c for c in pool.map(fire, range(12)) if c is not None]
    with session(tix.state.ctx.engine) as s:
        assert s.exec(select(func.count()).select_from(Ticket)).one()[0] == 1
    actions = sorted(c.action for c in changes)
    assert actions in (["opened"], ["escalated", "opened"])
    t = ticket(tix, changes[0].ticket_id)
    assert t["priority"] == "P0"
    assert sorted(e["action"] for e in t["history"]) == actions
    assert sorted(outbox(tix, t["id"])) == sorted(f"webhook:{a}" for a in actions)


def open_ticket(c: Crashd, testers: int = 5, build: str = "1.0", signature: str = "crash_here") -> tuple[int, int]:
    for tester in range(testers):
        group_id = crash(c, f"t{tester}", build, signature)
    [opened] = evaluate_group(c.state.ctx, group_id)
    return opened.ticket_id, group_id


def test_state_machine_by_hand(tix: Crashd) -> None:
    ticket_id, _ = open_ticket(tix)
    bad = act(tix, ticket_id, "resolve")
    assert bad.status_code == 400 and "resolve needs fixed_in" in bad.json()["detail"]
    assert act(tix, ticket_id, "verify").json() == {
        "detail": f"ticket {ticket_id} is open: verify applies only to a ticket that is resolved"
    }
    resolved = act(tix, ticket_id, "resolve", fixed_in="1.1", note="null check", by="dev.anna")
    assert (
        resolved.status_code == 200 and resolved.json()["state"] == "resolved" and resolved.json()["fixed_in"] == "1.1"
    )
    assert act(tix, ticket_id, "reject", note="still crashes on 1.1", by="qa").json()["state"] == "open"
    assert act(tix, ticket_id, "resolve", fixed_in="1.2").json()["state"] == "resolved"
    assert act(tix, ticket_id, "verify", by="qa").json()["state"] == "verified"
    assert act(tix, ticket_id, "wontfix").status_code == 400
    assert act(tix, ticket_id, "reopen").json()["state"] == "open"
    other, _ = open_ticket(tix, signature="other_frame")
    assert act(tix, ticket_id, "duplicate").json() == {"detail": "duplicate needs of: the ticket this one duplicates"}
    assert act(tix, ticket_id, "duplicate", of=ticket_id).json() == {
        "detail": "a ticket cannot be a duplicate of itself"
    }
    assert act(tix, ticket_id, "duplicate", of=other + 100).json() == {
        "detail": f"no ticket {other + 100} in this ticket's project to be a duplicate of"
    }
    assert act(tix, ticket_id, "duplicate", of=other).json()["state"] == "duplicate"
    assert act(tix, ticket_id, "reopen").json()["state"] == "open"
    t = act(tix, ticket_id, "wontfix", note="third-party driver").json()
    assert t["state"] == "wontfix" and t["fixed_in"] is None
    assert [(e["action"], e["actor"]) for e in t["history"]] == [
        ("opened", "rule:widespread"),
        ("resolved", "user:dev.anna"),
        ("rejected", "user:qa"),
        ("resolved", "user:admin"),
        ("verified", "user:qa"),
        ("reopened", "user:admin"),
        ("duplicate", "user:admin"),
        ("reopened", "user:admin"),
        ("wontfix", "user:admin"),
    ]
    assert t["history"][1]["details"] == {"note": "null check", "fixed_in": "1.1", "from": "open"}
    assert t["history"][2]["details"] == {
        "note": "still crashes on 1.1",
        "from": "resolved",
        "previous_fixed_in": "1.1",
    }
    assert t["history"][6]["details"]["duplicate_of"] == other
    # Marking a ticket duplicate tells the trackers (its issue is closed with a link), as regrouping does.
    assert outbox(tix, ticket_id) == ["webhook:opened", "webhook:resolved", "webhook:resolved", "webhook:verified",
                                      "webhook:duplicate"]


def test_api_refusals(tix: Crashd) -> None:
    ticket_id, _ = open_ticket(tix)
    assert tix.client.get("/api/tickets").status_code == 401
    assert tix.client.post(f"/api/tickets/{ticket_id}/verify").status_code == 401
    assert tix.client.get("/api/tickets/999999", headers=tix.admin).status_code == 404
    assert act(tix, 999999, "verify").status_code == 404
    assert act(tix, ticket_id, "close").status_code == 404
    assert act(tix, ticket_id, "resolve", fixed_in=3).json()["detail"] == "fixed_in must be a string"
    assert act(tix, ticket_id, "resolve", fixed_in="1.1", by="a b").status_code == 400
    assert tix.client.post(f"/api/tickets/{ticket_id}/resolve", content=b"{", headers=tix.admin).status_code == 400
    assert tix.client.get("/api/tickets?state=closed", headers=tix.admin).status_code == 400
    assert tix.client.get("/api/tickets?project=nope", headers=tix.admin).status_code == 404
    assert (
        tix.client.get("/api/tickets?state=open&priority=P0", headers=tix.admin).json()["tickets"][0]["id"] == ticket_id
    )
    assert tix.client.get("/api/tickets?priority=P1", headers=tix.admin).json()["tickets"] == []
    # found by fuzzing: ids past 2**63 and Unicode digits were 500s (SQLite OverflowError, int("³"))
    huge = 10**25
    assert tix.client.get(f"/api/tickets/{huge}", headers=tix.admin).json() == {"detail": "ticket not found"}
    assert act(tix, huge, "resolve", fixed_in="1.1").status_code == 404
    assert act(tix, ticket_id, "duplicate", of=huge).json() == {"detail": "of must be a ticket id"}
    assert tix.client.get(f"/api/tickets?project={huge}", headers=tix.admin).status_code == 404
    assert tix.client.get("/api/tickets?project=%C2%B3", headers=tix.admin).status_code == 404


@pytest.mark.parametrize(
    ("state", "priority", "may"),
    [
        (None, None, True),
        ("open", "P1", True),
        ("regressed", "P1", True),
        ("open", "P0", False),
        ("regressed", "P0", False),
        ("resolved", "P1", False),
        ("verified", "P1", False),
        ("wontfix", "P1", False),
        ("duplicate", "P1", False),
    ],
)
def test_window_counts_are_skipped_when_no_rule_could_change_the_ticket(
    state: str | None, priority: str | None, may: bool
) -> None:
    """evaluate_group counts the group's recent crashes only when open_or_escalate could act."""
    assert rules_may_change(None if state is None else {"state": state, "priority": priority}) is may


def test_regression_reopens_and_keeps_history(tix: Crashd) -> None:
    ticket_id, group_id = open_ticket(tix, build="0.9.9-staging-beta1")
    assert act(tix, ticket_id, "resolve", fixed_in="0.9.9-staging-beta2").status_code == 200
    crash(tix, "t1", "0.9.9-staging-beta1")  # an old build still crashes: not a regression
    assert evaluate_group(tix.state.ctx, group_id) == []
    assert act(tix, ticket_id, "verify").status_code == 200
    crash(tix, "t9", "0.9.9-staging-beta10")
    [regressed] = evaluate_group(tix.state.ctx, group_id)
    assert (regressed.ticket_id, regressed.action) == (ticket_id, "regressed")
    assert evaluate_group(tix.state.ctx, group_id) == []
    t = ticket(tix, ticket_id)
    assert (t["state"], t["fixed_in"], t["priority"]) == ("regressed", "0.9.9-staging-beta2", "P0")
    assert [e["action"] for e in t["history"]] == ["opened", "resolved", "verified", "regressed"]
    assert t["history"][-1]["actor"] == "system:regression"
    assert t["history"][-1]["details"]["builds"] == ["0.9.9-staging-beta10"]
    assert outbox(tix, ticket_id)[-1] == "webhook:regressed"
    assert act(tix, ticket_id, "resolve", fixed_in="0.9.9-staging-beta11").json()["state"] == "resolved"


def sessions(c: Crashd, build: str, count: int) -> None:
    started = utcnow().isoformat()
    body = [
        {
            "session_id": f"{build}-{i}",
            "tester_id": f"t{i % 20}",
            "build": build,
            "started": started,
            "duration": 600,
            "status": "exited",
        }
        for i in range(count)
    ]
    response = c.client.post(f"/api/{c.project.id}/sessions/?sentry_key={c.key}", json=body)
    assert response.status_code == 200, response.text


def test_verified_by_numbers_when_sessions_arrive(tix: Crashd) -> None:
    ticket_id, group_id = open_ticket(tix, testers=6, build="1.0")
    sessions(tix, "1.0", 100)
    t = act(tix, ticket_id, "resolve", fixed_in="1.1").json()
    assert t["state"] == "resolved"  # no session of 1.1 yet: rate unknown
    sessions(tix, "1.1", 150)
    tix.drain()
    assert ticket(tix, ticket_id)["state"] == "resolved"  # 150 < 200 sessions
    sessions(tix, "1.2", 100)
    tix.drain()
    t = ticket(tix, ticket_id)
    assert t["state"] == "verified", t
    event = t["history"][-1]
    assert (event["action"], event["actor"]) == ("verified", "system:verification")
    details = event["details"]
    assert (
        details["base_crashes"],
        details["base_sessions"],
        details["target_crashes"],
        details["target_sessions"],
    ) == (6, 100, 0, 250)
    assert details["base_builds"] == ["1.0"] and details["target_builds"] == ["1.1", "1.2"]
    assert details["significant"] and details["p_value"] < 0.05
    assert outbox(tix, ticket_id)[-1] == "webhook:verified"


def test_resolving_with_sessions_in_verifies_at_once(tix: Crashd) -> None:
    ticket_id, _ = open_ticket(tix, testers=6, build="1.0")
    sessions(tix, "1.0", 100)
    sessions(tix, "1.1", 200)
    t = act(tix, ticket_id, "resolve", fixed_in="1.1").json()
    assert [e["action"] for e in t["history"]] == ["opened", "resolved", "verified"]


def test_group_stats_counts_testers_builds_and_shares(tix: Crashd) -> None:
    """The numbers the rules read, for one group and for many at once (the periodic tick)."""
    engine = tix.state.ctx.engine
    for tester in range(4):
        alpha = crash(tix, f"t{tester}", "1.0", "alpha")
    crash(tix, "t1", "1.1", "alpha")  # 1.1 has no sessions: its share is unknown, not counted
    beta = crash(tix, "t0", "1.0", "beta")
    gamma = crash(tix, None, None, "gamma")  # no tester, no build
    sessions(tix, "1.0", 40)  # testers t0..t19 played 1.0
    day, hour = timedelta(hours=24), timedelta(hours=1)
    wins = {day: True, hour: False}
    expected = {
        alpha: GroupStats(
            "game", {day: WindowStats(4, 5, ("1.0", "1.1"), 4 / 20, "1.0"), hour: WindowStats(4, 5, ("1.0", "1.1"))}
        ),
        beta: GroupStats("game", {day: WindowStats(1, 1, ("1.0",), 1 / 20, "1.0"), hour: WindowStats(1, 1, ("1.0",))}),
        gamma: GroupStats("game", {day: WindowStats(0, 1, ()), hour: WindowStats(0, 1, ())}),
    }
    for group_id, stats in expected.items():
        assert group_stats(engine, group_id=group_id, windows=wins) == stats
    assert group_stats_many(engine, group_ids=[gamma, 10**6, alpha, beta], windows=wins) == expected
    assert group_stats(engine, group_id=10**6, windows=wins) is None


def test_periodic_tick_evaluates_recent_groups(tix: Crashd) -> None:
    for tester in range(3):
        group_id = crash(tix, f"t{tester}", "1.0")
    tick(tix.state.ctx, tix.state.queue)
    if tix.settings.redis_url:
        from redis import Redis
        from rq import Queue

        queue = Queue(tix.settings.queue_name, connection=Redis.from_url(tix.settings.redis_url))
        periodic_id = queue_job_id(PERIODIC_JOB_NAME, queue.name)
        assert periodic_id in queue.job_ids
        tick(tix.state.ctx, tix.state.queue)
        assert queue.job_ids.count(periodic_id) == 1  # not twice while one waits
        tix.drain()
    listed = tix.client.get("/api/tickets", headers=tix.admin).json()["tickets"]
    assert [(t["group_id"], t["priority"]) for t in listed] == [(group_id, "P1")]


def test_periodic_tick_catches_up_openings_and_regressions(tix: Crashd) -> None:
    """What per-crash evaluation missed (a worker died after counting the crash): the tick
    opens the ticket of a group that crossed a threshold and regresses a fixed one."""
    fixed, fixed_group = open_ticket(tix, build="0.9.9-staging-beta1")
    assert act(tix, fixed, "resolve", fixed_in="0.9.9-staging-beta2").status_code == 200
    for tester in range(3):
        other_group = crash(tix, f"t{tester}", "1.0", "other_frame")
    crash(tix, "t8", "0.9.9-staging-beta3", "crash_here")  # counted, never evaluated
    changes = run_periodic(tix.state.ctx)
    assert sorted((c.action, c.ticket_id == fixed) for c in changes) == [("opened", False), ("regressed", True)]
    assert ticket(tix, fixed)["state"] == "regressed"
    listed = tix.client.get("/api/tickets?state=open", headers=tix.admin).json()["tickets"]
    assert [(t["group_id"], t["priority"]) for t in listed] == [(other_group, "P1")]
    assert run_periodic(tix.state.ctx) == []  # nothing new: nothing changes


def run_cli(c: Crashd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from server.cli import main

    for name in [n for n in os.environ if n.startswith("CRASHD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CRASHD_DATA_DIR", str(c.settings.data_dir))
    if c.settings.database_url:
        monkeypatch.setenv("CRASHD_DATABASE_URL", c.settings.database_url)
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_triage_cli(tix: Crashd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fixed, _ = open_ticket(tix, testers=6, build="1.0")
    for tester in ("a", "b", "c"):
        crash(tix, tester, "1.0", signature="other_crash")
    waiting = evaluate_group(tix.state.ctx, crash(tix, "d", "1.1", signature="slow_leak"))
    assert waiting == []
    [other] = evaluate_group(tix.state.ctx, crash(tix, "a", "1.0", signature="other_crash"))
    sessions(tix, "1.0", 100)
    sessions(tix, "1.1", 250)
    assert act(tix, fixed, "resolve", fixed_in="1.1").json()["state"] == "verified"

    report = json.loads(run_cli(tix, monkeypatch, capsys, "triage", "report", "--format", "json"))
    assert [t["id"] for t in report["open_tickets"]] == [other.ticket_id]
    assert report["open_tickets"][0]["time_left"] in ("71h left", "72h left")
    assert [g["signature"] for g in report["new_groups"]] == ["crash_here", "other_crash", "slow_leak"]
    assert [(g["signature"], g["testers"]) for g in report["top_groups"]] == [
        ("crash_here", 6),
        ("other_crash", 3),
        ("slow_leak", 1),
    ]
    assert [e["ticket_id"] for e in report["verified"]] == [fixed] and report["last_report"] is None
    text = run_cli(tix, monkeypatch, capsys, "triage", "report", "--since", "7d")
    assert "## Open P0/P1 (1)" in text and "| P1 | game: other_crash | 3 | 4 |" in text
    assert "(no earlier report)" not in text and "## Verified (0)" in text  # verified before the last report

    notes = run_cli(tix, monkeypatch, capsys, "patch-notes", "--build", "1.1")
    assert "- **game: crash_here** (ticket #%d, P0, verified): hit by t0 (1)" % fixed in notes
    assert "## Please retest on 1.1" in notes and "- t5: `crash_here`" in notes
    assert (
        json.loads(run_cli(tix, monkeypatch, capsys, "patch-notes", "--build", "9.9", "--format", "json"))["fixed"]
        == []
    )

    log = run_cli(tix, monkeypatch, capsys, "progress-log")
    assert (
        f"| `crash_here` | #{fixed} game: crash_here | P0 | verified | 1.1 | by numbers: 6/100 crashes/sessions before, 0/250"
        in log
    )
    assert f"| `other_crash` | #{other.ticket_id} game: other_crash | P1 | open |  |  |" in log


def test_time_left() -> None:
    from workers.triage_report import time_left

    now = utcnow()
    assert time_left((now + timedelta(hours=5, minutes=1)).isoformat(), now) == "5h left"
    assert time_left((now - timedelta(minutes=30)).isoformat(), now) == "overdue by 30m"
    assert time_left((now - timedelta(hours=26)).isoformat(), now) == "overdue by 26h"


def test_long_hangs_and_nar_output_feedback_open_p1_tickets(tix: Crashd) -> None:
    """The shipped rules: two testers stuck 30 s or more -> P1 (shorter hangs do not count);
    two testers reporting one NAR line -> P1, counted from feedback reports, not crashes."""
    ctx, engine = tix.state.ctx, tix.state.ctx.engine

    def hang(tester: str, seconds: float, signature: str) -> int:
        row = Crash(crash_id=str(uuid.uuid4()), project_id=tix.project.id, status="processed", submitted_via="minidump",
                    build="1.0", tester_id=tester, minidump_key="k", minidump_size=1, minidump_sha256="0" * 64,
                    annotations_key="a", received_at=utcnow(), kind="hang", hang_seconds=seconds)
        with session(engine) as s:
            s.add(row)
            s.commit()
        return assign_group(engine, grouping=Grouping(row.crash_id, tix.project.id, signature, "1", "nar", None,
                                                      "Linux", row.received_at, kind="hang"))

    hang("t1", 45.0, "hang | nar::Dialogue::wait")
    short = hang("t2", 5.0, "hang | nar::Dialogue::wait")  # two testers, one stuck 30 s or more
    assert evaluate_group(ctx, short) == []
    stats = group_stats(engine, group_id=short, windows={timedelta(hours=24): False},
                        hang_windows=[(timedelta(hours=24), 30.0)])
    assert stats is not None and stats.windows[timedelta(hours=24)].testers == 2
    assert stats.long_hangs[timedelta(hours=24), 30.0].testers == 1
    hang("u1", 31.0, "hang | nar::Memory::compact")
    frozen = hang("u2", 60.0, "hang | nar::Memory::compact")
    [opened] = evaluate_group(ctx, frozen)
    t = ticket(tix, opened.ticket_id)
    assert (t["priority"], t["rule"]) == ("P1", "long-hangs") and "2 hangs of 30 s or more" in t["reason_text"]

    feedback_group = _feedback_group(tix, "nar_output", ["p1", "p1"])
    assert evaluate_group(ctx, feedback_group) == []  # one tester twice
    _feedback_group(tix, "nar_output", ["p2"], group_id=feedback_group)
    [reported] = evaluate_group(ctx, feedback_group)
    t = ticket(tix, reported.ticket_id)
    assert (t["priority"], t["rule"], t["testers_at_firing"], t["crashes_at_firing"]) == ("P1", "nar-output", 2, 3)
    assert "3 reports" in t["reason_text"] and t["title"] == "nar_output: feedback | nar_output | the villager insults me"


def _feedback_group(c: Crashd, category: str, testers: list[str], group_id: int | None = None) -> int:
    """Feedback reports of testers in a feedback group (made when group_id is None), as
    storage/feedback.py stores them."""
    engine = c.state.ctx.engine
    with session(engine) as s:
        if group_id is None:
            group = CrashGroup(project_id=c.project.id, signature=f"feedback | {category} | the villager insults me",
                               component=category, kind="feedback", first_seen=utcnow(), last_seen=utcnow())
            s.add(group)
            s.commit()
            group_id = group.id
        for tester in testers:
            s.add(Feedback(id=str(uuid.uuid4()), project_id=c.project.id, group_id=group_id, category=category,
                           message="The villager insults me!", tester_id=tester, build="1.0", source="api",
                           received_at=utcnow()))
        group_row = s.get(CrashGroup, group_id)
        group_row.crash_count += len(testers)
        s.add(group_row)
        s.commit()
    return group_id
