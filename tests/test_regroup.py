"""Regrouping on both backends: a ticket follows its bug when late symbols move its crashes,
two tickets of one bug merge into the older one, merges by hand (API and CLI) hold across
reprocessing, unmerge gives the crashes their own group back (storage/regroup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from test_reprocess import groups, upload_dump, upload_symbols
from test_tickets_backends import FakeTracker, _Handler, backend_fields

from schemas.tables import Crash, utcnow
from storage.db import session
from storage.groups import Grouping, assign_group
from storage.outbox import deliver_due
from storage.retention import delete_crash
from workers.triage_jobs import evaluate_group
from workers.triage_report import progress_log, render_progress_log

from conftest import REPO, Crashd, _crashd, make_settings


@pytest.fixture
def hub() -> Iterator[FakeTracker]:
    """A fake GitHub (and webhook) on a loopback port, recording every request."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    fake = FakeTracker(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.tracker = fake
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield fake
    server.shutdown()


@pytest.fixture
def tracked(backend: str, services: tuple[str | None, str | None], tmp_path: Path,
            hub: FakeTracker) -> Iterator[Crashd]:
    """crashd (both backends) sending its ticket events to the fake GitHub and webhook."""
    pg, redis = services
    yield from _crashd(backend, make_settings(backend, tmp_path, pg, redis, **backend_fields(hub, "github", "webhook")))


def deliver(c: Crashd) -> None:
    """Send every due notification now (the notify jobs may still be waiting on their backoff)."""
    c.drain()
    deliver_due(c.state.ctx.engine, c.settings)


def all_tickets(c: Crashd) -> list[dict[str, Any]]:
    response = c.client.get("/api/tickets?project=game", headers=c.admin)
    assert response.status_code == 200, response.text
    return response.json()["tickets"]


def ticket(c: Crashd, ticket_id: int) -> dict[str, Any]:
    response = c.client.get(f"/api/tickets/{ticket_id}", headers=c.admin)
    assert response.status_code == 200, response.text
    return response.json()


def live(tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tickets if t["merged_into"] is None]


def github(hub: FakeTracker) -> list[tuple[str, str, Any]]:
    return [(r.method, r.path, r.body) for r in hub.requests if r.path.startswith("/gh/")]


def hook_events(hub: FakeTracker) -> list[tuple[int, str]]:
    return [(r.body["ticket"]["id"], r.body["event"]) for r in hub.requests if r.path == "/hook"]


def crash(c: Crashd, tester: str, signature: str) -> tuple[str, int]:
    """A processed crash counted in the group of signature (as GroupRule does)."""
    row = Crash(crash_id=str(uuid.uuid4()), project_id=c.project.id, status="processed", submitted_via="minidump",
                build="1.0", tester_id=tester, minidump_key="k", minidump_size=1, minidump_sha256="0" * 64,
                annotations_key="a", received_at=utcnow())
    with session(c.state.ctx.engine) as s:
        s.add(row)
        s.commit()
    return row.crash_id, count(c, row.crash_id, signature)


def count(c: Crashd, crash_id: str, signature: str) -> int:
    return assign_group(c.state.ctx.engine, grouping=Grouping(crash_id, c.project.id, signature, "1", "nar", "panic",
                                                               "Linux", utcnow()))


def group(c: Crashd, group_id: int) -> dict[str, Any]:
    response = c.client.get(f"/api/groups/{group_id}", headers=c.admin)
    assert response.status_code == 200, response.text
    return response.json()


def merge(c: Crashd, group_id: int, into: int) -> dict[str, Any]:
    response = c.client.post(f"/api/groups/{group_id}/merge", json={"into": into}, headers=c.admin)
    assert response.status_code == 200, response.text
    return response.json()


def test_late_symbols_keep_one_ticket_and_one_issue(tracked: Crashd, hub: FakeTracker) -> None:
    for i in range(5):  # 5 testers before the build's symbols: P0 on the unsymbolicated signature
        upload_dump(tracked, f"tester-{i}")
    deliver(tracked)
    [before] = all_tickets(tracked)
    assert before["priority"] == "P0" and "crash_here" not in before["signature"]
    assert hub.issues == 1

    upload_symbols(tracked)  # the server reprocesses the 5 crashes: they move to crash_here | ...
    deliver(tracked)
    [after] = all_tickets(tracked)
    (symbolicated,) = groups(tracked)
    assert symbolicated.startswith("crash_here") and groups(tracked)[symbolicated] == (5, 5)
    assert (after["id"], after["state"], after["priority"]) == (before["id"], "open", "P0")
    assert after["signature"] == symbolicated and after["group_id"] != before["group_id"]
    assert after["title"].endswith(symbolicated) and after["notice"] is None
    [regrouped] = [e for e in ticket(tracked, after["id"])["history"] if e["action"] == "regrouped"]
    assert regrouped["details"]["old_signature"] == before["signature"]
    assert regrouped["details"]["new_signature"] == symbolicated
    assert regrouped["actor"] == "system:reprocessing"
    assert hub.issues == 1  # no second issue, no second "opened" anywhere
    assert hook_events(hub) == [(before["id"], "opened"), (before["id"], "escalated"), (before["id"], "regrouped")]
    issue = "/gh/repos/studio/game/issues/1"
    assert ("PATCH", issue, {"title": after["title"]}) in github(hub)


def test_merging_two_ticketed_groups_keeps_the_older_ticket(tracked: Crashd, hub: FakeTracker) -> None:
    ctx = tracked.state.ctx
    for i in range(5):
        _, older_group = crash(tracked, f"t{i}", "nar::persona::load")
    [older] = evaluate_group(ctx, older_group)
    for i in range(3):
        _, newer_group = crash(tracked, f"u{i}", "nar::dialogue::generate_line")
    [newer] = evaluate_group(ctx, newer_group)
    deliver(tracked)
    assert hub.issues == 2

    done = merge(tracked, older_group, newer_group)  # the older ticket's group goes into the newer one
    assert done["crashes_moved"] == 5
    assert {(c["ticket_id"], c["action"]) for c in done["ticket_changes"]} == {
        (older.ticket_id, "regrouped"), (newer.ticket_id, "duplicate")}
    deliver(tracked)
    [kept] = live(all_tickets(tracked))
    assert (kept["id"], kept["group_id"], kept["priority"]) == (older.ticket_id, newer_group, "P0")
    assert (kept["crash_count"], kept["tester_count"]) == (8, 8)
    gone = ticket(tracked, newer.ticket_id)
    assert (gone["state"], gone["merged_into"], gone["group_id"]) == ("duplicate", older.ticket_id, None)
    assert gone["notice"].startswith(f"merged into ticket {older.ticket_id}")
    refused = tracked.client.post(f"/api/tickets/{newer.ticket_id}/reopen", json={}, headers=tracked.admin)
    assert refused.status_code == 400 and f"merged into ticket {older.ticket_id}" in refused.json()["detail"]
    assert hub.issues == 2  # nothing new was opened; the duplicate's issue (#2) is closed with a link
    closes = [body for method, path, body in github(hub) if method == "PATCH" and path.endswith("/issues/2")]
    assert closes and closes[-1]["state"] == "closed"
    assert any("Duplicate of #1" in (body or {}).get("body", "") for _, path, body in github(hub)
               if path.endswith("/issues/2/comments"))
    log = render_progress_log(progress_log(ctx))
    assert f"| #{newer.ticket_id} " in log and f"duplicate of #{older.ticket_id}" in log and "`None`" not in log
    merged = group(tracked, older_group)
    assert (merged["merged_into"], merged["crash_count"]) == (newer_group, 0)
    assert [s["signature"] for s in group(tracked, newer_group)["merged_signatures"]] == ["nar::persona::load"]


def test_a_merge_holds_across_reprocessing_and_unmerge_undoes_it(tracked: Crashd) -> None:
    a_crash, a = crash(tracked, "t1", "zk::parse_jwt")
    crash(tracked, "t2", "zk::parse_jwt")
    _, b = crash(tracked, "t3", "zk::verify_proof")
    merge(tracked, a, b)
    assert count(tracked, a_crash, "zk::parse_jwt") == b  # processed again: stays in the merged group
    new_crash, landed = crash(tracked, "t4", "zk::parse_jwt")  # a new crash of the merged signature
    assert landed == b
    merged = group(tracked, b)
    assert (merged["crash_count"], merged["tester_count"]) == (4, 4)
    assert merged["merged_signatures"][0]["crash_count"] == 3

    response = tracked.client.post(f"/api/groups/{b}/unmerge", json={"crash_ids": [new_crash]}, headers=tracked.admin)
    assert response.status_code == 200, response.text
    assert response.json()["groups"] == {"zk::parse_jwt": a} and response.json()["crashes_moved"] == 3
    back, rest = group(tracked, a), group(tracked, b)
    assert (back["crash_count"], back["tester_count"], back["merged_into"]) == (3, 3, None)
    assert (rest["crash_count"], rest["merged_signatures"]) == (1, [])
    assert count(tracked, a_crash, "zk::parse_jwt") == a  # and processing agrees
    assert tracked.crash(new_crash)["group_id"] == a


@pytest.mark.parametrize(("path", "body", "status", "detail"), [
    ("{a}/merge", {"into": "{a}"}, 400, "cannot be merged into itself"),
    ("{a}/merge", {"into": 999999}, 404, "group not found"),
    ("{a}/merge", {"into": "x"}, 400, "into must be a group id"),
    ("{a}/merge", [1], 400, "body must be a JSON object"),
    ("{b}/unmerge", {"signature": "zk::verify_proof"}, 400, "the group's own signature"),
    ("{b}/unmerge", {"signature": "never::merged"}, 400, "not merged into group"),
    ("{b}/unmerge", {}, 400, "name a signature"),
    ("{b}/unmerge", {"crash_ids": ["not-in-the-group"]}, 400, "not in group"),
])
def test_merge_and_unmerge_refuse_with_a_reason(tracked: Crashd, path: str, body: Any, status: int,
                                                detail: str) -> None:
    _, a = crash(tracked, "t1", "zk::parse_jwt")
    _, b = crash(tracked, "t2", "zk::verify_proof")
    text = json.dumps(body).replace('"{a}"', str(a))
    response = tracked.client.post(f"/api/groups/{path.format(a=a, b=b)}", content=text, headers=tracked.admin)
    assert response.status_code == status and detail in response.json()["detail"], response.text
    assert group(tracked, a)["crash_count"] == 1 and group(tracked, b)["crash_count"] == 1


def test_merge_needs_the_admin_role(tracked: Crashd) -> None:
    _, a = crash(tracked, "t1", "zk::parse_jwt")
    _, b = crash(tracked, "t2", "zk::verify_proof")
    response = tracked.client.post(f"/api/groups/{a}/merge", json={"into": b})
    assert response.status_code == 401
    response = tracked.client.post(f"/api/groups/{a}/merge?sentry_key={tracked.key}", json={"into": b})
    assert response.status_code == 401  # the ingest key is public: it submits reports, nothing else
    assert group(tracked, b)["crash_count"] == 1


def test_crashd_group_merge_and_unmerge_commands(tmp_path: Path) -> None:
    settings = make_settings("sqlite-inprocess", tmp_path, None, None)
    running = _crashd("sqlite-inprocess", settings)
    c = next(running)
    try:
        _, a = crash(c, "t1", "llama::decode | ggml_vec_dot_f32")
        _, b = crash(c, "t2", "llama::sample | ggml_vec_dot_f32")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")},
               "CRASHD_DATA_DIR": str(settings.data_dir)}

        def crashd(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "server.cli", "group", *args, "--by", "qa-lead"], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=120)

        merged = crashd("merge", str(a), str(b), "--json")
        assert merged.returncode == 0, merged.stderr
        assert json.loads(merged.stdout)["crashes_moved"] == 1
        assert group(c, b)["crash_count"] == 2
        assert group(c, b)["merged_signatures"][0]["actor"] == "user:qa-lead"
        again = crashd("merge", str(a), str(b))
        assert again.returncode == 1 and f"group {a} was merged into group {b} already" in again.stderr
        split = crashd("unmerge", str(b), "--signature", "llama::decode | ggml_vec_dot_f32")
        assert split.returncode == 0, split.stderr
        assert f"-> group {a}" in split.stdout and "1 crashes moved" in split.stdout
        assert (group(c, a)["crash_count"], group(c, b)["crash_count"]) == (1, 1)
    finally:
        running.close()


def test_a_ticket_whose_group_lost_its_crashes_says_so(tracked: Crashd) -> None:
    crash_ids = []
    for i in range(5):
        crash_id, group_id = crash(tracked, f"t{i}", "zk::parse_jwt")
        crash_ids.append(crash_id)
    [opened] = evaluate_group(tracked.state.ctx, group_id)
    assert ticket(tracked, opened.ticket_id)["notice"] is None
    for crash_id in crash_ids:  # retention deleted them all
        delete_crash(tracked.state.ctx.engine, crash_id=crash_id)
    t = ticket(tracked, opened.ticket_id)
    assert (t["state"], t["crash_count"]) == ("open", 0) and "no crashes left" in t["notice"]
    board = tracked.client.get("/api/triage?project=game", headers=tracked.admin).json()
    assert [b["notice"] for b in board["open_tickets"]] == [t["notice"]]
