"""Releases (docs/releases.md) on both backends: the hotfix loop (a spreading crash -> P0 -> a
release whose commit says ``fixes crashd#N`` -> resolved in that version with the commit in its
history -> patch notes to testers, once -> sessions of the new build -> verified), tracker keys,
refusals and bounds, a failing patch-notes webhook, and ``crashd release deploy`` against a
git repository in local-database mode."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import update
from sqlmodel import col, select
from test_tickets import crash, ticket

from schemas.tables import Release, Ticket, utcnow
from storage import queries, users
from storage.db import session
from triage.releases import Commit, references
from workers.triage_jobs import evaluate_group

from conftest import Crashd, _crashd, make_settings

BETA2, BETA3 = "0.9.9-staging-beta2", "0.9.9-staging-beta3"


class Receiver:
    """A loopback HTTP server keeping the JSON bodies POSTed to it; answers 500 to the first
    ``failures`` of them, 200 after."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                failing = receiver.failures > 0
                receiver.failures -= 1
                if not failing:
                    receiver.bodies.append(body)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/patch-notes"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def rel(backend: str, services: tuple[str | None, str | None], tmp_path: Path, hook: Receiver) -> Iterator[Crashd]:
    """crashd with patch notes going to hook, Jira project CRASH and GitHub repo studio/game
    configured (their API addresses lead nowhere: ticket events stay in the outbox)."""
    pg, redis = services
    yield from _crashd(backend, make_settings(backend, tmp_path, pg, redis, patch_notes_webhook_url=hook.url,
                                              jira_project="CRASH", github_repo="studio/game",
                                              github_api_url="http://127.0.0.1:9"))


def spreading(c: Crashd, signature: str = "render_template", testers: int = 6) -> int:
    """A crash hit by testers t0..t5 on beta2: the rules open a P0; returns its ticket id."""
    for tester in range(testers):
        group_id = crash(c, f"t{tester}", BETA2, signature)
    [opened] = evaluate_group(c.state.ctx, group_id)
    return opened.ticket_id


def sessions(c: Crashd, build: str, count: int) -> None:
    body = [{"session_id": f"{build}-{i}", "tester_id": f"t{i % 20}", "build": build, "started": utcnow().isoformat(),
             "duration": 600, "status": "exited"} for i in range(count)]
    response = c.client.post(f"/api/{c.project.id}/sessions/?sentry_key={c.key}", json=body)
    assert response.status_code == 200, response.text


def post(c: Crashd, body: dict[str, Any], headers: dict[str, str] | None = None, project: str | None = None) -> Any:
    return c.client.post(f"/api/{project or c.project.id}/releases/", json=body,
                         headers=c.admin if headers is None else headers)


def test_the_hotfix_loop(rel: Crashd, hook: Receiver) -> None:
    fixed = spreading(rel)
    assert ticket(rel, fixed)["priority"] == "P0"
    sessions(rel, BETA2, 100)
    body = {"version": BETA3, "url": "https://ci.example/run/7", "commits": [
        {"id": "a" * 40, "message": f"Null check in render_template (fixes crashd#{fixed})\n\nLong story.",
         "author": "alice"},
        {"id": "b" * 40, "message": "Fixes crashd#999999 and tidy up", "author": "bob"},
        {"id": "c" * 40, "message": "See crashd#1 (no closing word)", "author": "bob"}]}
    answer = post(rel, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["created"], result["resolved"], result["already_resolved"], result["unknown"],
            result["patch_notes"]) == (True, [fixed], [], ["crashd#999999"], "sent")
    assert (result["release"]["version"], result["release"]["environment"], result["release"]["commit_count"]) == (
        BETA3, "staging", 3)
    assert result["release"]["patch_notes_sent_at"]

    t = ticket(rel, fixed)
    assert (t["state"], t["fixed_in"]) == ("resolved", BETA3)  # no session of beta3 yet
    event = t["history"][-1]
    assert (event["action"], event["actor"]) == ("resolved", "commit:alice")
    assert event["details"]["commit"] == {"id": "a" * 40, "author": "alice",
                                          "message": f"Null check in render_template (fixes crashd#{fixed})"}
    assert event["details"]["release"] == {"version": BETA3, "environment": "staging"}

    [sent] = hook.bodies
    assert (sent["event"], sent["release"]["version"]) == ("release", BETA3)
    assert [f["id"] for f in sent["patch_notes"]["fixed"]] == [fixed]
    assert sorted(sent["patch_notes"]["testers"]) == [f"t{i}" for i in range(6)]
    assert f"ticket #{fixed}" in sent["markdown"] and f"Please retest on {BETA3}" in sent["markdown"]

    again = post(rel, {**body, "commits": body["commits"][:1]})  # CI retried: nothing twice
    assert again.status_code == 200, again.text
    assert (again.json()["created"], again.json()["resolved"], again.json()["patch_notes"]) == (
        False, [], "already sent")
    assert again.json()["release"]["id"] == result["release"]["id"]
    assert len(hook.bodies) == 1
    assert [e["action"] for e in ticket(rel, fixed)["history"]] == ["opened", "resolved"]

    sessions(rel, BETA3, 200)
    rel.drain()
    t = ticket(rel, fixed)
    assert t["state"] == "verified", t
    assert [e["action"] for e in t["history"]] == ["opened", "resolved", "verified"]

    # The turnaround: opened -> deployed (the release) against the P0's due time.
    response = rel.client.get("/api/turnaround?project=game", headers=rel.admin)
    assert response.status_code == 200, response.text
    [row] = [r for r in response.json()["tickets"] if r["id"] == fixed]
    assert (row["deployed_by"], row["fixed_in"], row["status"], row["on_time"]) == ("release", BETA3, "on_time", True)
    assert row["hours_to_deploy"] is not None and row["hours_to_deploy"] < 1 and row["verified_at"]
    assert response.json()["summary_text"][0].startswith("P0: 1 of 1 deployed within 48 h")


def test_tracker_keys_resolve_the_right_tickets(rel: Crashd) -> None:
    jira, github, earlier, other = (spreading(rel, f"sig_{n}") for n in ("jira", "github", "earlier", "other"))
    with session(rel.state.ctx.engine) as s:
        s.execute(update(Ticket).where(col(Ticket.id) == jira).values(external_key="CRASH-7"))
        s.execute(update(Ticket).where(col(Ticket.id) == github).values(
            external_key="12", external_url="https://github.com/studio/game/issues/12"))
        s.commit()
    resolved = rel.client.post(f"/api/tickets/{earlier}/resolve", json={"fixed_in": BETA2}, headers=rel.admin)
    assert resolved.status_code == 200, resolved.text
    second = queries.create_project(rel.state.ctx.engine, name="other-game")
    answer = post(rel, {"version": BETA3, "commits": [
        {"id": "1", "message": "closes crash-7: the loader", "author": "carol"},
        {"id": "2", "message": "Fixed studio/game#12, fixes OTHER-3 and fixes other/repo#12", "author": "dave"},
        {"id": "3", "message": f"fix crashd#{earlier}", "author": "erin"}]}).json()
    assert sorted(answer["resolved"]) == sorted([jira, github])
    assert answer["already_resolved"] == [earlier] and ticket(rel, earlier)["fixed_in"] == BETA2
    assert answer["unknown"] == ["OTHER-3", "other/repo#12"]
    assert ticket(rel, other)["state"] == "open"
    assert ticket(rel, github)["history"][-1]["actor"] == "commit:dave"

    # another project's release never touches this project's tickets
    foreign = post(rel, {"version": BETA3, "commits": [{"id": "4", "message": f"fixes crashd#{other}"}]},
                   project=str(second.id)).json()
    assert (foreign["resolved"], foreign["unknown"]) == ([], [f"crashd#{other}"])
    assert ticket(rel, other)["state"] == "open"


def test_refusals_and_bounds(rel: Crashd) -> None:
    no_version = post(rel, {"environment": "staging"})
    assert (no_version.status_code, no_version.json()["detail"]) == (400, "version is required")
    assert post(rel, {"version": "x" * 201}).status_code == 400
    assert post(rel, {"version": BETA3, "commits": "abc"}).status_code == 400
    assert post(rel, {"version": BETA3, "commits": [1]}).status_code == 400
    assert post(rel, {"version": BETA3, "url": "javascript:alert(1)"}).status_code == 400
    assert post(rel, {"version": BETA3, "deployed_at": "yesterday"}).status_code == 400
    many = post(rel, {"version": BETA3, "commits": [{"id": str(i), "message": "m"} for i in range(10_001)]})
    assert many.status_code == 413 and "too many commits" in many.json()["detail"]
    bounded = post(rel, {"version": "big", "commits": [{"id": str(i), "message": "m" * 1000, "author": "a" * 200}
                                                       for i in range(10_000)]})
    assert bounded.status_code == 200 and bounded.json()["release"]["commit_count"] == 10_000
    huge = post(rel, {"version": "huge", "commits": [{"id": "1", "message": "m" * 20_000_000}]})
    assert huge.status_code == 413 and "body larger" in huge.json()["detail"]
    long_commit = {"id": "x" * 100, "message": "m" * 5000, "author": "a" * 500}
    assert post(rel, {"version": "cut", "commits": [long_commit]}).status_code == 200
    with session(rel.state.ctx.engine) as s:
        [stored] = s.exec(select(Release).where(col(Release.version) == "cut")).all()
    assert [len(stored.commits[0][k]) for k in ("id", "message", "author")] == [64, 1000, 100]

    engine = rel.state.ctx.engine
    as_key = rel.client.post(f"/api/{rel.project.id}/releases/?sentry_key={rel.key}", json={"version": BETA3})
    assert as_key.status_code == 403 and "ingest key" in as_key.json()["detail"]
    bearer_key = post(rel, {"version": BETA3}, headers={"Authorization": f"Bearer {rel.key}"})
    assert bearer_key.status_code == 403 and "ingest key" in bearer_key.json()["detail"]
    assert post(rel, {"version": BETA3}, headers={}).status_code == 401
    assert post(rel, {"version": BETA3}, headers={"Authorization": "Bearer crashd_nope"}).status_code == 401
    _, viewer = users.create_token(engine, name="reader", role="viewer")
    assert post(rel, {"version": BETA3}, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    _, triager = users.create_token(engine, name="tri", role="triager", project_id=rel.project.id)
    assert post(rel, {"version": BETA3}, headers={"Authorization": f"Bearer {triager}"}).status_code == 403
    second = queries.create_project(engine, name="other-game")
    _, elsewhere = users.create_token(engine, name="ci-other", role="deployer", project_id=second.id)
    assert post(rel, {"version": BETA3}, headers={"Authorization": f"Bearer {elsewhere}"}).status_code == 403
    _, deployer = users.create_token(engine, name="ci", role="deployer", project_id=rel.project.id)
    bearer = {"Authorization": f"Bearer {deployer}"}
    own = post(rel, {"version": BETA3}, headers=bearer, project="_")
    assert own.status_code == 200 and own.json()["release"]["project_id"] == rel.project.id
    assert post(rel, {"version": BETA3}, headers=bearer).json()["created"] is False
    # a deployer token reads nothing and uploads no symbols
    assert rel.client.get("/api/tickets", headers=bearer).status_code == 401
    assert rel.client.get(f"/api/tickets/{spreading(rel)}", headers=bearer).status_code == 401
    assert rel.client.post(f"/api/{rel.project.id}/symbols/", content=b"MODULE x", headers=bearer).status_code == 403
    with pytest.raises(ValueError, match="needs --project"):
        users.create_token(engine, name="ci-nowhere", role="deployer")


def test_failed_patch_notes_are_sent_by_the_next_post(rel: Crashd, hook: Receiver) -> None:
    fixed = spreading(rel)
    hook.failures = 1
    body = {"version": BETA3, "commits": [{"id": "a1", "message": f"fixes crashd#{fixed}", "author": "alice"}]}
    first = post(rel, body)
    assert first.status_code == 200 and first.json()["patch_notes"] == "failed"
    assert first.json()["resolved"] == [fixed] and first.json()["release"]["patch_notes_sent_at"] is None
    assert hook.bodies == []
    second = post(rel, body).json()
    assert (second["created"], second["resolved"], second["patch_notes"]) == (False, [], "sent")
    assert [b["release"]["version"] for b in hook.bodies] == [BETA3]
    assert post(rel, body).json()["patch_notes"] == "already sent" and len(hook.bodies) == 1


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "alice", "GIT_AUTHOR_EMAIL": "a@example.com",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def test_cli_deploy_reads_git_log_into_the_local_database(rel: Crashd, hook: Receiver, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main

    fixed = spreading(rel)
    repo = tmp_path / "game"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "beta2")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", f"Null check in render_template (fixes crashd#{fixed})\n\nbody")
    git(repo, "commit", "-q", "--allow-empty", "-m", "Fixes CRASH-404")
    for name in [n for n in os.environ if n.startswith("CRASHD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CRASHD_DATA_DIR", str(rel.settings.data_dir))
    monkeypatch.setenv("CRASHD_PATCH_NOTES_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("CRASHD_JIRA_PROJECT", "CRASH")
    if rel.settings.database_url:
        monkeypatch.setenv("CRASHD_DATABASE_URL", rel.settings.database_url)
    capsys.readouterr()
    argv = ["release", "deploy", BETA3, "--commits", f"{base}..HEAD", "--repo", str(repo), "--project", "game",
            "--url", "https://ci.example/run/8", "--json"]
    assert main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["created"], answer["resolved"], answer["unknown"], answer["patch_notes"]) == (
        True, [fixed], ["CRASH-404"], "sent")
    assert answer["release"]["commit_count"] == 2
    event = ticket(rel, fixed)["history"][-1]
    assert (event["actor"], event["details"]["commit"]["message"]) == (
        "commit:alice", f"Null check in render_template (fixes crashd#{fixed})")
    assert main(argv[:-1]) == 0  # again: recorded once, summary in words
    out = capsys.readouterr().out
    assert "already recorded" in out and "patch notes: already sent" in out
    assert len(hook.bodies) == 1
    assert main(["release", "deploy", BETA3, "--commits", "nope..HEAD", "--repo", str(repo)]) == 1
    assert "git log" in capsys.readouterr().err


def test_references_need_a_closing_word() -> None:
    def refs(message: str) -> list[str]:
        return [r.text for r in references([Commit("1", message, "a")])]

    assert refs("Fixes crashd#12") == ["crashd#12"]
    assert refs("fixed: crashd#3, crashd#4 and CRASH-7") == ["crashd#3", "crashd#4", "CRASH-7"]
    assert refs("CLOSES owner/repo#9") == ["owner/repo#9"]
    assert refs("see crashd#12; revert CRASH-7") == []
    assert [(r.kind, r.value, r.repo) for r in references([Commit("1", "close A/b#007 fix crash-2", "a")])] == [
        ("github", "7", "A/b"), ("jira", "CRASH-2", "")]
