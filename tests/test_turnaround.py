"""Turnaround (docs/triage.md, Turnaround) on both backends: each ticket's opened, resolved,
deployed (a staging release, else the build's first session or crash) and verified times;
hours to deploy against the due time; the summary per priority; GET /api/turnaround; the
progress log's section, the board's block, the daily report's P0s resolved but not deployed;
and the builds page comparing the latest staging deploy with the one before by itself."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from test_dashboard_pages import signed_in

from schemas.tables import Crash, CrashGroup, Project, Release, Ticket, TicketEvent, utcnow
from storage import queries, sessions, turnaround, users
from storage.db import session
from triage.turnaround import AutoPair, pick_pair, summary_line
from workers.triage_report import build_report, progress_log, render_progress_log, render_report

from conftest import Crashd

T0 = utcnow().replace(microsecond=0) - timedelta(days=5)
H = timedelta(hours=1)
BETA = "0.9.9-staging-beta"


def add_ticket(c: Crashd, title: str, *, opened: datetime, priority: str = "P0", state: str = "open",
               fixed_in: str | None = None, due: float = 24, restricted: bool = False,
               project_id: int | None = None) -> int:
    pid = project_id or c.project.id
    assert pid is not None
    with session(c.state.ctx.engine) as s:
        group = None
        if not restricted:
            group = CrashGroup(project_id=pid, signature=title, first_seen=opened, last_seen=opened, crash_count=1,
                               tester_count=1)
            s.add(group)
            s.flush()
        ticket = Ticket(project_id=pid, group_id=group.id if group else None, restricted=restricted,
                        priority=priority, state=state, title=title, rule="widespread", due_at=opened + due * H,
                        fixed_in=fixed_in, created_at=opened, updated_at=opened)
        s.add(ticket)
        s.flush()
        assert ticket.id is not None
        s.add(TicketEvent(ticket_id=ticket.id, at=opened, actor="rule:widespread", action="opened"))
        s.commit()
        return ticket.id


def add_event(c: Crashd, ticket_id: int, action: str, at: datetime) -> None:
    with session(c.state.ctx.engine) as s:
        s.add(TicketEvent(ticket_id=ticket_id, at=at, actor="user:qa", action=action))
        s.commit()


def add_release(c: Crashd, version: str, at: datetime, environment: str = "staging",
                project_id: int | None = None) -> None:
    with session(c.state.ctx.engine) as s:
        s.add(Release(project_id=project_id or c.project.id, version=version, environment=environment, deployed_at=at))
        s.commit()


def add_sessions(c: Crashd, build: str, count: int, started: datetime) -> None:
    assert c.project.id is not None
    sessions.upsert_sessions(c.state.ctx.engine, project_id=c.project.id, sessions=[
        {"session_id": uuid.uuid4().hex, "started": started + timedelta(minutes=i), "status": "exited",
         "build": build, "tester_id": f"t{i % 7}"} for i in range(count)])


def add_crash(c: Crashd, build: str, at: datetime) -> None:
    assert c.project.id is not None
    with session(c.state.ctx.engine) as s:
        s.add(Crash(crash_id=str(uuid.uuid4()), project_id=c.project.id, received_at=at, updated_at=at,
                    submitted_via="minidump", build=build, status="processed",
                    annotations_key=f"annotations/{uuid.uuid4()}"))
        s.commit()


def other_project(c: Crashd) -> Project:
    return queries.create_project(c.state.ctx.engine, name="other")


def loop(c: Crashd) -> dict[str, int]:
    """Six tickets at controlled times (hours after T0):
    a: P0 opened 0, resolved 10 in beta2, staging deploy of beta2 at 19, verified 40 (on time, 19 h);
    b: P0 opened 1, fixed in beta3 never deployed: first session 31, first crash 33 (late, 30 h);
    c: P0 opened 2, fixed in beta4: only a crash at 12 (first_crash, on time, 10 h);
    d: P0 opened 3, still open (overdue); e: P1 opened 50 (due 122: not yet due); f: P0 wontfix."""
    ids = {
        "a": add_ticket(c, "game: null_render", opened=T0, state="verified", fixed_in=f"{BETA}2"),
        "b": add_ticket(c, "game: audio_race", opened=T0 + H, state="resolved", fixed_in=f"{BETA}3"),
        "c": add_ticket(c, "game: save_crash", opened=T0 + 2 * H, state="resolved", fixed_in=f"{BETA}4"),
        "d": add_ticket(c, "game: open_one", opened=T0 + 3 * H),
        "e": add_ticket(c, "game: p1_thing", opened=T0 + 50 * H, priority="P1", due=72),
        "f": add_ticket(c, "game: wontfix", opened=T0 + 4 * H, state="wontfix"),
    }
    add_event(c, ids["a"], "resolved", T0 + 10 * H)
    add_event(c, ids["a"], "verified", T0 + 40 * H)
    add_event(c, ids["b"], "resolved", T0 + 5 * H)
    add_event(c, ids["c"], "resolved", T0 + 6 * H)
    add_release(c, f"{BETA}2", T0 + 5 * H, environment="production")  # not staging: does not count
    add_release(c, f"{BETA}2", T0 + 19 * H)
    add_release(c, f"{BETA}2", T0 + 22 * H, environment="qa")
    other = other_project(c)
    add_release(c, f"{BETA}3", T0 + 2 * H, project_id=other.id)  # another project's deploy: not ours
    add_sessions(c, f"{BETA}2", 3, T0 + 15 * H)  # a session before the deploy: the release still decides
    add_sessions(c, f"{BETA}3", 2, T0 + 31 * H)
    add_crash(c, f"{BETA}3", T0 + 33 * H)
    add_crash(c, f"{BETA}4", T0 + 12 * H)
    return ids


P0_LINE = "P0: 3 of 4 deployed within 48 h (2 by their due time), median 19 h; 1 overdue"
P1_LINE = "P1: 0 of 1 deployed within 72 h (0 by their due time), none deployed yet; 0 overdue, 1 not yet due"


def test_times_hours_and_summary(crashd: Crashd) -> None:
    ids = loop(crashd)
    found = turnaround.turnaround(crashd.state.ctx.engine, project_id=crashd.project.id, now=T0 + 60 * H)
    rows = {r["id"]: r for r in found["tickets"]}
    a, b, c, d, e = (rows[ids[k]] for k in "abcde")
    assert a["opened_at"] == T0.isoformat() and a["resolved_at"] == (T0 + 10 * H).isoformat()
    assert a["deployed_at"] == (T0 + 19 * H).isoformat() and a["deployed_by"] == "release"
    assert a["verified_at"] == (T0 + 40 * H).isoformat()
    assert (a["hours_to_deploy"], a["on_time"], a["status"]) == (19.0, True, "on_time")
    assert b["deployed_at"] == (T0 + 31 * H).isoformat() and b["deployed_by"] == "first_session"
    assert (b["hours_to_deploy"], b["on_time"], b["status"]) == (30.0, False, "late")
    assert c["deployed_by"] == "first_crash" and (c["hours_to_deploy"], c["on_time"]) == (10.0, True)
    assert d["deployed_at"] is None and (d["on_time"], d["status"]) == (False, "overdue")
    assert e["on_time"] is None and e["status"] == "pending"
    assert rows[ids["f"]]["status"] == "closed"
    p0 = found["summary"]["P0"]
    assert (p0["tickets"], p0["deployed"], p0["within_target"], p0["on_time"], p0["late"], p0["overdue"]) == (
        4, 3, 3, 2, 1, 1)
    assert p0["median_hours"] == 19.0
    assert found["summary_text"] == [P0_LINE, P1_LINE]


def test_summary_wording() -> None:
    base = {"tickets": 8, "deployed": 7, "target_hours": 48.0, "within_target": 7, "on_time": 6, "late": 1,
            "overdue": 1, "pending": 0, "median_hours": 19.2}
    assert summary_line("P0", base) == "P0: 7 of 8 deployed within 48 h (6 by their due time), median 19 h; 1 overdue"
    assert summary_line("P0", {**base, "median_hours": 2.5}).endswith("median 2.5 h; 1 overdue")
    assert summary_line("P1", {**base, "tickets": 0}) == "P1: no tickets"


def test_api_since_project_and_errors(crashd: Crashd) -> None:
    ids = loop(crashd)
    every = crashd.client.get("/api/turnaround?project=game", headers=crashd.admin)
    assert every.status_code == 200, every.text
    body = every.json()
    assert set(body) == {"tickets", "summary", "summary_text"}
    assert {"id", "title", "priority", "state", "fixed_in", "opened_at", "resolved_at", "deployed_at", "deployed_by",
            "verified_at", "hours_to_deploy", "due_at", "on_time"} <= set(body["tickets"][0])
    assert body["summary_text"] == [P0_LINE, P1_LINE]
    since = (T0 + 30 * H).isoformat()
    later = crashd.client.get("/api/turnaround", params={"project": "game", "since": since}, headers=crashd.admin)
    assert [t["id"] for t in later.json()["tickets"]] == [ids["e"]]
    assert later.json()["summary_text"][0] == "P0: no tickets"
    other = crashd.client.get("/api/turnaround?project=other", headers=crashd.admin).json()
    assert other["tickets"] == []
    assert crashd.client.get("/api/turnaround?project=game&since=soon", headers=crashd.admin).status_code == 400
    assert crashd.client.get("/api/turnaround?project=nope", headers=crashd.admin).status_code == 404
    assert crashd.client.get("/api/turnaround?project=game").status_code == 401


def test_restricted_ticket_counted_not_named_for_a_viewer(crashd: Crashd) -> None:
    secret = add_ticket(crashd, "Item duplication while trading", opened=T0, restricted=True)
    _, viewer = users.create_token(crashd.state.ctx.engine, name="viewer-1", role="viewer", project_id=crashd.project.id)
    seen = crashd.client.get("/api/turnaround?project=game", headers={"Authorization": f"Bearer {viewer}"})
    assert seen.status_code == 200, seen.text
    row = next(t for t in seen.json()["tickets"] if t["id"] == secret)
    assert row["title"] == f"Restricted security report #{secret}" and row["restricted"]
    assert "Item duplication" not in seen.text
    assert seen.json()["summary"]["P0"]["tickets"] == 1 and seen.json()["summary"]["P0"]["overdue"] == 1
    admin = crashd.client.get("/api/turnaround?project=game", headers=crashd.admin).json()
    assert admin["tickets"][0]["title"] == "Item duplication while trading"
    log = render_progress_log(progress_log(crashd.state.ctx))
    assert "Item duplication" not in log and f"#{secret} Restricted security report #{secret}" in log


def test_progress_log_section(crashd: Crashd) -> None:
    ids = loop(crashd)
    log = render_progress_log(progress_log(crashd.state.ctx))
    section = log[log.index("## Turnaround"):]
    assert f"- {P0_LINE}" in section and f"- {P1_LINE}" in section
    assert f"| #{ids['a']} game: null_render | P0 | {str(T0)[:16]} | {str(T0 + 19 * H)[:16]} (release, {BETA}2) | 19 h |" \
        in section
    assert f"(first session, {BETA}3) | 30 h |" in section and "| late |" in section
    assert f"(first crash, {BETA}4) | 10 h |" in section
    print(section)


def test_board_block_and_daily_report(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = loop(crashd)
    waiting = add_ticket(crashd, "game: fixed_not_shipped", opened=T0 + 70 * H, state="resolved", fixed_in=f"{BETA}9")
    add_event(crashd, waiting, "resolved", T0 + 80 * H)
    board = crashd.client.get("/api/triage?project=game", headers=crashd.admin)
    assert board.status_code == 200, board.text
    assert board.json()["turnaround"]["summary_text"][0].startswith("P0: 3 of 5 deployed within 48 h")
    page = signed_in(crashd, "ana", "admin", monkeypatch).get("/triage?project=game")
    assert page.status_code == 200 and 'id="turnaround"' in page.text
    assert "P0: 3 of 5 deployed within 48 h (2 by their due time), median 19 h" in page.text
    report = build_report(crashd.state.ctx, since=utcnow() - 24 * H, last_report=None)
    assert [t["id"] for t in report["awaiting_deploy"]] == [waiting]  # b and c were seen from their builds
    text = render_report(report)
    assert "## P0 resolved, not yet deployed to staging (1)" in text
    assert f"| #{waiting} | game: fixed_not_shipped | {BETA}9 |" in text
    assert ids["b"] not in [t["id"] for t in report["awaiting_deploy"]]


def test_builds_auto_compare_latest_staging_deploy(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    add_release(crashd, f"{BETA}1", T0)
    add_release(crashd, f"{BETA}2", T0 + 24 * H)
    add_release(crashd, f"{BETA}3", T0 + 48 * H)
    add_sessions(crashd, f"{BETA}1", 220, T0)
    add_sessions(crashd, f"{BETA}2", 210, T0 + 24 * H)
    add_sessions(crashd, f"{BETA}3", 50, T0 + 48 * H)  # too few yet: beta2 vs beta1
    add_sessions(crashd, f"{BETA}5", 300, T0 + 50 * H)  # never deployed to staging: not picked
    auto = crashd.client.get("/api/builds/compare?project=game", headers=crashd.admin)
    assert auto.status_code == 200, auto.text
    assert (auto.json()["base"], auto.json()["target"]) == (f"{BETA}1", f"{BETA}2")
    add_sessions(crashd, f"{BETA}3", 160, T0 + 60 * H)  # 210 now
    body = crashd.client.get("/api/builds/compare?project=game", headers=crashd.admin).json()
    assert (body["base"], body["target"], body["target_sessions"]) == (f"{BETA}2", f"{BETA}3", 210)
    assert body["auto"] == {"by": "release", "label": f"{BETA}3 vs {BETA}2 (latest staging deploy)"}
    explicit = crashd.client.get(f"/api/builds/compare?project=game&base={BETA}1&target={BETA}5", headers=crashd.admin)
    assert explicit.status_code == 200 and explicit.json()["auto"] is None
    assert crashd.client.get(f"/api/builds/compare?project=game&base={BETA}1", headers=crashd.admin).status_code == 400
    page = signed_in(crashd, "qa", "admin", monkeypatch).get("/builds?project=game")
    assert page.status_code == 200
    assert f"{BETA}3 vs {BETA}2 (latest staging deploy)" in page.text and "comparison" in page.text


def test_builds_auto_compare_by_build_order_without_releases(crashd: Crashd) -> None:
    none_yet = crashd.client.get("/api/builds/compare?project=game", headers=crashd.admin)
    assert none_yet.status_code == 400 and "compare automatically" in none_yet.json()["detail"]
    add_sessions(crashd, "1.0", 250, T0)
    add_sessions(crashd, "1.1", 220, T0 + H)
    add_sessions(crashd, "1.2", 10, T0 + 2 * H)
    body = crashd.client.get("/api/builds/compare?project=game", headers=crashd.admin).json()
    assert (body["base"], body["target"], body["auto"]["by"]) == ("1.0", "1.1", "build_order")


def test_pick_pair() -> None:
    assert pick_pair(["b1", "b2"], {"b1": 300, "b2": 200}, 200) == AutoPair("b1", "b2", "release")
    assert pick_pair(["b1", "b2"], {"b1": 300, "b2": 199}, 200) is None  # b1 has no release before it
    assert pick_pair([], {"0.9.10": 300, "0.9.9": 300, "": 900}, 200) == AutoPair("0.9.9", "0.9.10", "build_order")
    assert AutoPair("beta2", "beta3", "release").label == "beta3 vs beta2 (latest staging deploy)"
