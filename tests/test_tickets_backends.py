"""Ticket backends (webhook, Jira, GitHub, Discord) against a real HTTP server on 127.0.0.1,
and the outbox that delivers their notifications: transactions, retries, order, concurrency."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import select, text

from schemas.settings import Settings
from schemas.tables import CrashGroup, Notification, Ticket, utcnow
from storage import queries
from storage.db import make_engine, migrate, session
from storage.outbox import (
    deliver_due,
    enqueue_notifications,
    payload_for,
    retry_delay,
)
from triage.tickets.backends import configured_backends
from triage.tickets.base import Delivery, PermanentError, TemporaryError, TicketBackend, facts, headline
from workers import jobs
from workers.queue import NOTIFY_JOB_ID, queue_job_id

from conftest import _crashd, _reset_postgres, free_port, make_settings

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
PUBLIC = "http://crashd.test"


# -- a tracker on a loopback port -----------------------------------------------------------


@dataclass
class Recorded:
    """One request the fake tracker received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeTracker:
    """A real HTTP server that records every request and answers like Jira (under /jira),
    GitHub (/gh), Discord (/discord) or a webhook (anything else). ``fail(status, times)``
    makes the next requests answer status; ``delay`` slows every answer down."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    delay: float = 0.0
    transitions: list[dict[str, Any]] = field(default_factory=lambda: [
        {"id": "31", "name": "Done", "to": {"name": "Done"}},
        {"id": "11", "name": "Reopen Issue", "to": {"name": "To Do"}}])
    issues: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, status: int, times: int = 1, headers: dict[str, str] | None = None, body: str = "") -> None:
        self.failures += [(status, headers or {}, body or json.dumps({"errorMessages": [f"status {status}"]}))] * times

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], str]:
        with self.lock:
            self.requests.append(Recorded(method, path, headers, body))
            if self.failures:
                return self.failures.pop(0)
            if method == "POST" and path in ("/jira/rest/api/2/issue", "/gh/repos/studio/game/issues"):
                self.issues += 1
                n = self.issues
                if path.startswith("/jira"):
                    return 201, {}, json.dumps({"id": str(10000 + n), "key": f"CRASH-{n}", "self": f"{self.url}/x"})
                return 201, {}, json.dumps({"number": n, "html_url": f"https://github.com/studio/game/issues/{n}"})
        if method == "GET" and path.endswith("/transitions"):
            return 200, {}, json.dumps({"expand": "transitions", "transitions": self.transitions})
        if path.startswith("/discord") or (path.startswith("/jira") and method in ("PUT",)) or path.endswith("/transitions"):
            return 204, {}, ""
        return (201 if method == "POST" else 200), {}, json.dumps({"id": 1})

    def paths(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        tracker: FakeTracker = self.server.tracker
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        status, headers, payload = tracker.answer(self.command, self.path,
                                                  {k.lower(): v for k, v in self.headers.items()}, body)
        if tracker.delay:
            time.sleep(tracker.delay)
        data = payload.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server's handler names

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tracker() -> Iterator[FakeTracker]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    fake = FakeTracker(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.tracker = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def backend_fields(tracker: FakeTracker, *names: str) -> dict[str, Any]:
    """Settings fields that point the named backends at the fake tracker."""
    every = {
        "webhook": {"webhook_url": f"{tracker.url}/hook"},
        "jira": {"jira_url": f"{tracker.url}/jira", "jira_project": "CRASH", "jira_user": "bot@example.com",
                 "jira_token": "jira-token"},
        "github": {"github_repo": "studio/game", "github_token": "gh-token", "github_api_url": f"{tracker.url}/gh"},
        "discord": {"discord_webhook_url": f"{tracker.url}/discord/123/hook-secret"},
    }
    return {k: v for name in names for k, v in every[name].items()}


def settings_for(tmp_path: Path, tracker: FakeTracker, *names: str, **extra: Any) -> Settings:
    fields = {"data_dir": tmp_path, "public_url": PUBLIC, "notify_timeout_seconds": 2}
    return Settings(**{**fields, **backend_fields(tracker, *names), **extra})


def backend(settings: Settings, name: str) -> TicketBackend:
    """The configured backend called name (picked by settings, as crashd does)."""
    return next(b for b in configured_backends(settings) if b.name == name)


def sample(event: str, **ticket: Any) -> dict[str, Any]:
    """A notification as the outbox hands it to a backend."""
    return {
        "event": event,
        "ticket": {"id": 7, "priority": "P0", "state": "open", "title": "crash_here | main",
                   "reason_text": "EXCEPTION_ACCESS_VIOLATION_READ", "due_at": "2026-11-21T12:00:00+00:00",
                   "fixed_in": None, "rule": "p0_many_testers", "external_key": None, "external_url": None, **ticket},
        "group": {"id": 5, "signature": "crash_here | main", "component": "renderer", "crash_count": 12,
                  "tester_count": 3},
        "details": {},
    }


# -- webhook --------------------------------------------------------------------------------


def test_webhook_posts_the_notification_as_is(tmp_path: Path, tracker: FakeTracker) -> None:
    note = sample("escalated", priority="P0")
    note["details"] = {"testers": 9}
    assert backend(settings_for(tmp_path, tracker, "webhook"), "webhook").send(note) == Delivery(None, None)
    (request,) = tracker.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"event": "escalated", "ticket": note["ticket"], "group": note["group"],
                            "details": {"testers": 9}}


# -- Jira -----------------------------------------------------------------------------------

JIRA_DESCRIPTION = """New P0 crash ticket: crash_here | main
{noformat}
Signature: crash_here | main
Component: renderer
Reason: EXCEPTION_ACCESS_VIOLATION_READ
Priority: P0
State: open
Crashes: 12 from 3 testers
Due: 2026-11-21 12:00 UTC
Rule: p0_many_testers
{noformat}
crashd: http://crashd.test/groups/5"""


def test_jira_opened_creates_the_issue(tmp_path: Path, tracker: FakeTracker) -> None:
    jira = backend(settings_for(tmp_path, tracker, "jira"), "jira")
    assert jira.send(sample("opened")) == Delivery("CRASH-1", f"{tracker.url}/jira/browse/CRASH-1")
    (request,) = tracker.requests
    assert (request.method, request.path) == ("POST", "/jira/rest/api/2/issue")
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"bot@example.com:jira-token").decode()
    assert request.body == {"fields": {
        "project": {"key": "CRASH"}, "summary": "crash_here | main", "description": JIRA_DESCRIPTION,
        "issuetype": {"name": "Bug"}, "priority": {"name": "Highest"}}}


def test_jira_p1_and_issue_type(tmp_path: Path, tracker: FakeTracker) -> None:
    jira = backend(settings_for(tmp_path, tracker, "jira", jira_issue_type="Crash"), "jira")
    jira.send(sample("opened", priority="P1"))
    fields = tracker.requests[0].body["fields"]
    assert (fields["priority"], fields["issuetype"]) == ({"name": "High"}, {"name": "Crash"})


@pytest.mark.parametrize("event, calls", [
    ("escalated", [("PUT", "/jira/rest/api/2/issue/CRASH-4", {"fields": {"priority": {"name": "Highest"}}})]),
    ("resolved", [("GET", "/jira/rest/api/2/issue/CRASH-4/transitions", None),
                  ("POST", "/jira/rest/api/2/issue/CRASH-4/transitions", {"transition": {"id": "31"}})]),
    ("verified", [("GET", "/jira/rest/api/2/issue/CRASH-4/transitions", None),
                  ("POST", "/jira/rest/api/2/issue/CRASH-4/transitions", {"transition": {"id": "31"}})]),
    ("regressed", [("GET", "/jira/rest/api/2/issue/CRASH-4/transitions", None),  # matched by target status "To Do"
                   ("POST", "/jira/rest/api/2/issue/CRASH-4/transitions", {"transition": {"id": "11"}})]),
])
def test_jira_later_events_transition_then_comment(tmp_path: Path, tracker: FakeTracker, event: str, calls: list) -> None:
    jira = backend(settings_for(tmp_path, tracker, "jira"), "jira")
    url = f"{tracker.url}/jira/browse/CRASH-4"
    note = sample(event, external_key="CRASH-4", external_url=url, fixed_in="1.2.0")
    assert jira.send(note) == Delivery("CRASH-4", url)
    assert [(r.method, r.path, r.body) for r in tracker.requests[:-1]] == calls
    comment = tracker.requests[-1]
    assert (comment.method, comment.path) == ("POST", "/jira/rest/api/2/issue/CRASH-4/comment")
    assert list(comment.body) == ["body"] and "{noformat}\nSignature: crash_here | main" in comment.body["body"]
    assert comment.body["body"].endswith("crashd: http://crashd.test/groups/5")


def test_jira_transition_not_offered_is_skipped(tmp_path: Path, tracker: FakeTracker) -> None:
    tracker.transitions = [{"id": "11", "name": "Reopen Issue", "to": {"name": "Reopened"}}]  # already done
    jira = backend(settings_for(tmp_path, tracker, "jira"), "jira")
    jira.send(sample("verified", external_key="CRASH-4"))
    assert tracker.paths() == [("GET", "/jira/rest/api/2/issue/CRASH-4/transitions"),
                               ("POST", "/jira/rest/api/2/issue/CRASH-4/comment")]


def test_jira_event_without_issue_creates_it_first(tmp_path: Path, tracker: FakeTracker) -> None:
    """A ticket from before Jira was configured gets its issue on its next event."""
    jira = backend(settings_for(tmp_path, tracker, "jira"), "jira")
    assert jira.send(sample("escalated")).external_key == "CRASH-1"
    assert tracker.paths() == [("POST", "/jira/rest/api/2/issue"), ("PUT", "/jira/rest/api/2/issue/CRASH-1"),
                               ("POST", "/jira/rest/api/2/issue/CRASH-1/comment")]


# -- GitHub ---------------------------------------------------------------------------------


def test_github_opened_creates_the_issue(tmp_path: Path, tracker: FakeTracker) -> None:
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    assert github.send(sample("opened")) == Delivery("1", "https://github.com/studio/game/issues/1")
    (request,) = tracker.requests
    assert (request.method, request.path) == ("POST", "/gh/repos/studio/game/issues")
    assert request.headers["authorization"] == "Bearer gh-token"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert set(request.body) == {"title", "body", "labels"}
    assert request.body["title"] == "crash_here | main" and request.body["labels"] == ["P0", "renderer"]
    body = request.body["body"]
    assert body.startswith("**New P0 crash ticket: crash_here | main**")
    assert "- **Signature:** `crash_here | main`" in body and "- **Crashes:** 12 from 3 testers" in body
    assert body.endswith("[Crash group in crashd](http://crashd.test/groups/5)")


@pytest.mark.parametrize("event, calls", [
    ("escalated", [("POST", "/gh/repos/studio/game/issues/9/labels", {"labels": ["P0"]}),
                   ("DELETE", "/gh/repos/studio/game/issues/9/labels/P1", None)]),
    ("resolved", []),
    ("verified", [("PATCH", "/gh/repos/studio/game/issues/9", {"state": "closed", "state_reason": "completed"})]),
    ("regressed", [("PATCH", "/gh/repos/studio/game/issues/9", {"state": "open", "state_reason": "reopened"})]),
])
def test_github_later_events(tmp_path: Path, tracker: FakeTracker, event: str, calls: list) -> None:
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    url = "https://github.com/studio/game/issues/9"
    assert github.send(sample(event, external_key="9", external_url=url)) == Delivery("9", url)
    assert [(r.method, r.path, r.body) for r in tracker.requests[:-1]] == calls
    comment = tracker.requests[-1]
    assert (comment.method, comment.path) == ("POST", "/gh/repos/studio/game/issues/9/comments")
    assert list(comment.body) == ["body"] and "crash_here | main" in comment.body["body"]


def test_github_escalation_when_the_old_label_is_gone(tmp_path: Path, tracker: FakeTracker) -> None:
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    tracker.failures = [(200, {}, "[]"), (404, {}, '{"message": "Label does not exist"}')]
    github.send(sample("escalated", external_key="9"))
    assert tracker.paths()[-1] == ("POST", "/gh/repos/studio/game/issues/9/comments")


def test_github_403_rate_limit_is_temporary_other_403_permanent(tmp_path: Path, tracker: FakeTracker) -> None:
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    tracker.fail(403, headers={"Retry-After": "61"})
    with pytest.raises(TemporaryError) as secondary:
        github.send(sample("opened"))
    assert secondary.value.retry_after == 61
    tracker.fail(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 300)})
    with pytest.raises(TemporaryError) as primary:
        github.send(sample("opened"))
    assert 200 < primary.value.retry_after <= 301
    tracker.fail(403, body='{"message": "Resource not accessible by integration"}')
    with pytest.raises(PermanentError, match="not accessible"):
        github.send(sample("opened"))


# -- Discord --------------------------------------------------------------------------------


def test_discord_message(tmp_path: Path, tracker: FakeTracker) -> None:
    discord = backend(settings_for(tmp_path, tracker, "discord"), "discord")
    assert discord.send(sample("regressed", fixed_in="1.2.0", external_url="https://jira/browse/CRASH-4")) == Delivery()
    (request,) = tracker.requests
    assert (request.method, request.path) == ("POST", "/discord/123/hook-secret")
    assert set(request.body) == {"content", "embeds", "allowed_mentions"}
    assert request.body["content"] == "**Regressed after the fix in 1.2.0: crash_here | main**\n<http://crashd.test/groups/5>"
    assert request.body["allowed_mentions"] == {"parse": []}
    (embed,) = request.body["embeds"]
    assert embed["title"] == "crash_here | main" and embed["url"] == "http://crashd.test/groups/5"
    assert embed["color"] == 0x9B59B6 and embed["description"] == "Tracker: https://jira/browse/CRASH-4"
    assert {"name": "Crashes", "value": "12 from 3 testers", "inline": True} in embed["fields"]


def test_discord_keeps_to_its_limits(tmp_path: Path, tracker: FakeTracker) -> None:
    discord = backend(settings_for(tmp_path, tracker, "discord", public_url=None), "discord")
    note = sample("opened", title="T" * 5000, reason_text="R" * 5000)
    note["details"] = {f"k{i}": "v" * 900 for i in range(40)}
    discord.send(note)
    body = tracker.requests[0].body
    (embed,) = body["embeds"]
    assert len(body["content"]) <= 2000 and len(embed["title"]) <= 256 and "url" not in embed
    assert len(embed["fields"]) <= 25 and all(len(f["value"]) <= 1024 for f in embed["fields"])
    assert len(embed["title"]) + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"]) <= 6000


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["webhook", "jira", "github", "discord"])
@pytest.mark.parametrize("status, error", [(500, TemporaryError), (503, TemporaryError), (429, TemporaryError),
                                           (400, PermanentError), (401, PermanentError), (403, PermanentError),
                                           (404, PermanentError), (422, PermanentError)])
def test_http_errors_are_permanent_or_temporary(tmp_path: Path, tracker: FakeTracker, name: str, status: int,
                                                error: type) -> None:
    tracker.fail(status)
    with pytest.raises(error, match=f"HTTP {status}"):
        backend(settings_for(tmp_path, tracker, name), name).send(sample("opened"))


def test_retry_after_seconds_and_dates(tmp_path: Path, tracker: FakeTracker) -> None:
    webhook = backend(settings_for(tmp_path, tracker, "webhook"), "webhook")
    tracker.fail(429, headers={"Retry-After": "30"})
    with pytest.raises(TemporaryError) as seconds:
        webhook.send(sample("opened"))
    assert seconds.value.retry_after == 30
    later = datetime.now(timezone.utc) + timedelta(seconds=90)
    tracker.fail(503, headers={"Retry-After": later.strftime("%a, %d %b %Y %H:%M:%S GMT")})
    with pytest.raises(TemporaryError) as date:
        webhook.send(sample("opened"))
    assert 80 < date.value.retry_after <= 90


def test_timeouts_and_refused_connections_are_temporary(tmp_path: Path, tracker: FakeTracker) -> None:
    tracker.delay = 1.0
    slow = backend(settings_for(tmp_path, tracker, "webhook", notify_timeout_seconds=0.2), "webhook")
    with pytest.raises(TemporaryError, match="timed out"):
        slow.send(sample("opened"))
    down = backend(Settings(data_dir=tmp_path, webhook_url=f"http://127.0.0.1:{free_port()}/hook"), "webhook")
    with pytest.raises(TemporaryError, match="ConnectError"):
        down.send(sample("opened"))


def test_secret_urls_stay_out_of_errors(tmp_path: Path, tracker: FakeTracker) -> None:
    tracker.fail(404)
    with pytest.raises(PermanentError) as failure:
        backend(settings_for(tmp_path, tracker, "discord"), "discord").send(sample("opened"))
    assert "hook-secret" not in str(failure.value)


def test_nothing_configured_means_no_backend(tmp_path: Path) -> None:
    assert configured_backends(Settings(data_dir=tmp_path)) == []
    assert configured_backends(Settings(data_dir=tmp_path, jira_url="https://x")) == []  # no project


def test_retry_delay() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_delay(9).total_seconds() == 2560 and retry_delay(10) == retry_delay(500) == timedelta(hours=1)
    assert retry_delay(1, retry_after=120) == timedelta(seconds=120)
    assert retry_delay(3, retry_after=1) == timedelta(seconds=40)
    assert retry_delay(1, retry_after=10**9) == timedelta(hours=24)


# -- the outbox -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    url = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    engine = make_engine(Settings(data_dir=tmp_path / "db", database_url=url))
    migrate(engine)
    if url:
        _reset_postgres(url)
    yield engine
    engine.dispose()


def add_ticket(engine, project_id: int | None = None, signature: str = "crash_here | main") -> tuple[Ticket, CrashGroup]:
    """A project (unless given), a crash group and its P0 ticket, inserted directly."""
    if project_id is None:
        project_id = queries.create_project(engine, name=f"game-{uuid.uuid4().hex[:6]}").id
    with session(engine) as s:
        group = CrashGroup(project_id=project_id, signature=signature, component="renderer", first_seen=T0,
                           last_seen=T0, crash_count=12, tester_count=3)
        s.add(group)
        s.flush()
        ticket = Ticket(project_id=project_id, group_id=group.id, priority="P0", title=signature,
                        rule="p0_many_testers", due_at=T0 + timedelta(days=1))
        s.add(ticket)
        s.commit()
        s.refresh(ticket)
        s.refresh(group)
    return ticket, group


def notify(engine, settings: Settings, ticket: Ticket, group: CrashGroup, *events: str) -> int:
    with engine.begin() as conn:
        return sum(enqueue_notifications(conn, settings=settings, ticket_id=ticket.id, event=event,
                                         payload=payload_for(ticket, group, {"seq": i}))
                   for i, event in enumerate(events))


def rows(engine) -> list[Notification]:
    with session(engine) as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def ticket_row(engine, ticket_id: int) -> Ticket:
    with session(engine) as s:
        return s.get(Ticket, ticket_id)


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def test_enqueue_adds_one_row_per_backend(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "webhook", "jira", "github", "discord")
    assert notify(engine, settings, ticket, group, "opened") == 4
    assert [(r.backend, r.event, r.status, r.attempts) for r in rows(engine)] == [
        ("webhook", "opened", "pending", 0), ("jira", "opened", "pending", 0),
        ("github", "opened", "pending", 0), ("discord", "opened", "pending", 0)]
    payload = rows(engine)[0].payload
    assert payload["ticket"]["id"] == ticket.id and payload["ticket"]["due_at"].startswith("2026-11-21")
    assert payload["group"]["signature"] == "crash_here | main" and payload["details"] == {"seq": 0}
    assert notify(engine, Settings(data_dir=tmp_path), ticket, group, "opened") == 0
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown ticket event"):
        enqueue_notifications(conn, settings=settings, ticket_id=ticket.id, event="closed", payload={})


def test_rolled_back_ticket_change_leaves_no_notification(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "webhook", "jira")
    with engine.connect() as conn:
        conn.execute(text("UPDATE tickets SET priority = 'P1' WHERE id = :id"), {"id": ticket.id})
        assert enqueue_notifications(conn, settings=settings, ticket_id=ticket.id, event="escalated",
                                     payload=payload_for(ticket, group)) == 2
        conn.rollback()
    assert rows(engine) == [] and ticket_row(engine, ticket.id).priority == "P0"
    assert deliver_due(engine, settings).as_dict() == {"sent": 0, "retried": 0, "failed": 0}
    assert tracker.requests == []


def test_failing_server_is_retried_with_backoff(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "webhook")
    notify(engine, settings, ticket, group, "opened")
    tracker.fail(500, times=2)
    t0 = utcnow()
    assert deliver_due(engine, settings, now=t0).as_dict() == {"sent": 0, "retried": 1, "failed": 0}
    (row,) = rows(engine)
    assert (row.status, row.attempts) == ("pending", 1) and "HTTP 500" in row.last_error
    assert as_utc(row.next_attempt_at) == t0 + timedelta(seconds=10)
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=9)).retried == 0  # not due yet
    assert len(tracker.requests) == 1
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=10)).retried == 1
    assert as_utc(rows(engine)[0].next_attempt_at) == t0 + timedelta(seconds=30)  # 10 s + 20 s
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=30)).sent == 1
    (row,) = rows(engine)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert as_utc(row.sent_at) == t0 + timedelta(seconds=30) and len(tracker.requests) == 3


def test_retry_after_is_honoured(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "discord")
    notify(engine, settings, ticket, group, "opened")
    tracker.fail(429, headers={"Retry-After": "120"}, body='{"retry_after": 120.0, "global": false}')
    t0 = utcnow()
    deliver_due(engine, settings, now=t0)
    assert as_utc(rows(engine)[0].next_attempt_at) == t0 + timedelta(seconds=120)
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=60)).sent == 0
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=120)).sent == 1


def test_jira_key_stored_and_later_events_wait_for_the_issue(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "jira")
    notify(engine, settings, ticket, group, "opened", "escalated", "resolved")
    tracker.fail(503)
    t0 = utcnow()
    assert deliver_due(engine, settings, now=t0).as_dict() == {"sent": 0, "retried": 1, "failed": 0}
    assert tracker.paths() == [("POST", "/jira/rest/api/2/issue")]  # the comments waited
    assert [r.attempts for r in rows(engine)] == [1, 0, 0]
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=10)).sent == 3
    assert tracker.paths()[1:] == [
        ("POST", "/jira/rest/api/2/issue"),
        ("PUT", "/jira/rest/api/2/issue/CRASH-1"), ("POST", "/jira/rest/api/2/issue/CRASH-1/comment"),
        ("GET", "/jira/rest/api/2/issue/CRASH-1/transitions"), ("POST", "/jira/rest/api/2/issue/CRASH-1/transitions"),
        ("POST", "/jira/rest/api/2/issue/CRASH-1/comment")]
    stored = ticket_row(engine, ticket.id)
    assert (stored.external_key, stored.external_url) == ("CRASH-1", f"{tracker.url}/jira/browse/CRASH-1")
    assert rows(engine)[0].payload["delivery"] == {"external_key": "CRASH-1",
                                                   "external_url": f"{tracker.url}/jira/browse/CRASH-1"}


def test_github_number_and_url_stored_on_the_ticket(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "github")
    notify(engine, settings, ticket, group, "opened", "verified")
    assert deliver_due(engine, settings).sent == 2
    stored = ticket_row(engine, ticket.id)
    assert (stored.external_key, stored.external_url) == ("1", "https://github.com/studio/game/issues/1")
    assert tracker.paths() == [("POST", "/gh/repos/studio/game/issues"), ("PATCH", "/gh/repos/studio/game/issues/1"),
                               ("POST", "/gh/repos/studio/game/issues/1/comments")]


def test_two_trackers_each_keep_their_own_issue(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "jira", "github", "webhook")
    notify(engine, settings, ticket, group, "opened", "escalated")
    assert deliver_due(engine, settings).sent == 6
    assert ticket_row(engine, ticket.id).external_key == "CRASH-1"  # the first tracker's
    posted = [r for r in tracker.requests if r.method == "POST" and r.path.endswith(("comment", "comments"))]
    assert [r.path for r in posted] == ["/jira/rest/api/2/issue/CRASH-1/comment", "/gh/repos/studio/game/issues/2/comments"]
    webhook = [r.body for r in tracker.requests if r.path == "/hook"]
    assert webhook[1]["ticket"]["external_key"] == "CRASH-1"  # chats see the ticket's issue


def test_permanent_failure_is_kept_as_failed(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "webhook")
    notify(engine, settings, ticket, group, "opened", "escalated")
    tracker.fail(401, body='{"error": "bad token"}')
    assert deliver_due(engine, settings).as_dict() == {"sent": 1, "retried": 0, "failed": 1}
    first, second = rows(engine)
    assert (first.status, first.attempts) == ("failed", 1) and "HTTP 401" in first.last_error
    assert "bad token" in first.last_error and second.status == "sent"
    assert deliver_due(engine, settings, now=utcnow() + timedelta(days=2)).as_dict() == {"sent": 0, "retried": 0, "failed": 0}


def test_failing_tracker_never_raises(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "github", "discord",
                            webhook_url=f"http://127.0.0.1:{free_port()}/hook")  # nothing listens
    notify(engine, settings, ticket, group, "opened")
    tracker.failures = [(201, {}, "<html>proxy</html>")]  # github: created, but no JSON answer
    stats = deliver_due(engine, settings)
    assert stats.as_dict() == {"sent": 1, "retried": 1, "failed": 1}
    by_backend = {r.backend: r for r in rows(engine)}
    assert by_backend["webhook"].status == "pending" and "ConnectError" in by_backend["webhook"].last_error
    assert by_backend["github"].status == "failed" and "no JSON" in by_backend["github"].last_error
    assert by_backend["discord"].status == "sent"


def test_unconfigured_backend_rows_wait(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    notify(engine, settings_for(tmp_path, tracker, "webhook", "discord"), ticket, group, "opened")
    assert deliver_due(engine, settings_for(tmp_path, tracker, "discord")).sent == 1
    assert [(r.backend, r.status) for r in rows(engine)] == [("webhook", "pending"), ("discord", "sent")]
    assert deliver_due(engine, settings_for(tmp_path, tracker, "webhook")).sent == 1


def test_limit(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    ticket, group = add_ticket(engine)
    settings = settings_for(tmp_path, tracker, "webhook")
    notify(engine, settings, ticket, group, "opened", "escalated", "resolved")
    assert deliver_due(engine, settings, limit=2).sent == 2
    assert [r.body["event"] for r in tracker.requests] == ["opened", "escalated"]
    assert deliver_due(engine, settings).sent == 1


def test_concurrent_deliveries_send_each_notification_once(pg_database: str, tmp_path: Path,
                                                           tracker: FakeTracker) -> None:
    """PostgreSQL: FOR UPDATE SKIP LOCKED; two workers at once, each row sent exactly once."""
    engine = make_engine(Settings(data_dir=tmp_path, database_url=pg_database))
    migrate(engine)
    _reset_postgres(pg_database)
    settings = settings_for(tmp_path, tracker, "webhook", "jira")
    project_id = queries.create_project(engine, name="game").id
    for i in range(12):
        ticket, group = add_ticket(engine, project_id, signature=f"crash_{i}")
        notify(engine, settings, ticket, group, "opened", "escalated")
    tracker.delay = 0.02
    start = threading.Barrier(3)
    results: list[dict] = []

    def worker() -> None:
        start.wait()
        results.append(deliver_due(engine, settings).as_dict())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(r["sent"] for r in results) == 48 and all(r["sent"] for r in results)  # they shared the work
    hooks = [(r.body["ticket"]["id"], r.body["event"]) for r in tracker.requests if r.path == "/hook"]
    assert len(hooks) == len(set(hooks)) == 24
    assert [p for _, p in tracker.paths()].count("/jira/rest/api/2/issue") == 12
    assert {r.status for r in rows(engine)} == {"sent"}
    engine.dispose()


# -- the queue ------------------------------------------------------------------------------


@pytest.fixture
def notify_crashd(backend: str, services, tmp_path: Path, tracker: FakeTracker, request: pytest.FixtureRequest):
    """crashd (both backends) with the webhook backend pointing at the fake tracker."""
    pg, redis = services
    extra = getattr(request, "param", {})
    settings = make_settings(backend, tmp_path, pg, redis, **backend_fields(tracker, "webhook"), **extra)
    yield from _crashd(backend, settings)


def test_enqueue_notify_runs_the_notify_job(notify_crashd, tracker: FakeTracker) -> None:
    crashd = notify_crashd
    engine = crashd.state.ctx.engine
    ticket, group = add_ticket(engine, crashd.project.id)
    notify(engine, crashd.settings, ticket, group, "opened")
    if crashd.settings.redis_url:
        crashd.state.queue.enqueue_notify()
        crashd.state.queue.enqueue_notify()  # already queued: not again
        queue = Queue(crashd.settings.queue_name, connection=Redis.from_url(crashd.settings.redis_url))
        notify_id = queue_job_id(NOTIFY_JOB_ID, queue.name)
        assert queue.job_ids == [notify_id]
        assert queue.fetch_job(notify_id).func_name == "workers.jobs.deliver_notifications"
    else:
        crashd.state.queue.enqueue_notify()
    crashd.drain()
    assert [r.body["event"] for r in tracker.requests] == ["opened"]
    assert rows(engine)[0].status == "sent"
    assert jobs.deliver_notifications() == {"sent": 0, "retried": 0, "failed": 0}


@pytest.mark.parametrize("notify_crashd", [{"sweeper_interval_seconds": 0.05}], indirect=True)
def test_the_sweeper_tick_enqueues_notify(notify_crashd, tracker: FakeTracker) -> None:
    crashd = notify_crashd
    engine = crashd.state.ctx.engine
    ticket, group = add_ticket(engine, crashd.project.id)
    notify(engine, crashd.settings, ticket, group, "opened")  # no enqueue_notify: the tick finds it
    deadline = time.monotonic() + 10
    while not tracker.requests and time.monotonic() < deadline:
        if crashd.settings.redis_url:
            crashd.drain()
        time.sleep(0.05)
    assert [r.body["event"] for r in tracker.requests] == ["opened"]


# -- regrouping: `regrouped` and `duplicate` -----------------------------------------------

GH_ISSUES = "/gh/repos/studio/game/issues"


def regrouped(**ticket: Any) -> dict[str, Any]:
    """A `regrouped` notification: a merge moved ticket 7 from group 4 to group 5."""
    note = sample("regrouped", **{"title": "renderer: crash_here | main", **ticket})
    note["details"] = {"reason": "merge", "actor": "user:alice", "old_group_id": 4, "new_group_id": 5,
                       "old_signature": "old_crash | main", "new_signature": "crash_here | main",
                       "merged_ticket_id": 8, "action": "regrouped"}
    return note


def duplicate(issue: tuple[str, str] | None, **ticket: Any) -> dict[str, Any]:
    """A `duplicate` notification of ticket 7, merged into ticket 3 whose issue here is issue
    (None: not known yet), as the outbox hands it over."""
    note = sample("duplicate", state="duplicate", **ticket)
    note["details"] = {"duplicate_of": 3, "reason": "merge", "action": "duplicate", "actor": "system:regroup"}
    key, url = issue or (None, None)
    note["duplicate_of"] = {"id": 3, "external_key": key, "external_url": url}
    return note


def test_headlines_and_facts_of_the_new_events() -> None:
    assert headline(regrouped()) == "Regrouped: renderer: crash_here | main (was old_crash | main)"
    assert headline(duplicate(None)) == "Duplicate of ticket #3: crash_here | main"
    pairs = dict(facts(regrouped()))
    assert (pairs["Cause"], pairs["Previous signature"], pairs["Previous group"], pairs["Merged ticket"]) == (
        "merge", "old_crash | main", "4", "#8")
    assert "New signature" not in pairs and "New group" not in pairs  # the group shown is the new one
    assert dict(facts(duplicate(None)))["Duplicate of"] == "#3"


def test_webhook_sends_the_new_events_as_usual(tmp_path: Path, tracker: FakeTracker) -> None:
    webhook = backend(settings_for(tmp_path, tracker, "webhook"), "webhook")
    note = regrouped()
    webhook.send(note)
    webhook.send(duplicate(("CRASH-3", "https://jira/browse/CRASH-3")))
    first, second = (r.body for r in tracker.requests)
    assert first == {"event": "regrouped", "ticket": note["ticket"], "group": note["group"], "details": note["details"]}
    assert second["event"] == "duplicate" and second["details"]["duplicate_of"] == 3
    assert second["duplicate_of"] == {"id": 3, "external_key": "CRASH-3", "external_url": "https://jira/browse/CRASH-3"}


def test_github_regrouped_renames_the_issue_then_comments(tmp_path: Path, tracker: FakeTracker) -> None:
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    url = "https://github.com/studio/game/issues/9"
    assert github.send(regrouped(external_key="9", external_url=url)) == Delivery("9", url)
    patch, comment = tracker.requests
    assert (patch.method, patch.path, patch.body) == ("PATCH", f"{GH_ISSUES}/9", {"title": "renderer: crash_here | main"})
    assert (comment.method, comment.path) == ("POST", f"{GH_ISSUES}/9/comments")
    body = comment.body["body"]
    assert body.startswith("**Regrouped: renderer: crash_here | main (was old_crash | main)**")
    assert "- **Previous signature:** `old_crash | main`" in body and "- **Merged ticket:** #8" in body


def test_github_duplicate_closes_then_says_duplicate_of(tmp_path: Path, tracker: FakeTracker) -> None:
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    survivor = ("12", "https://github.com/studio/game/issues/12")
    assert github.send(duplicate(survivor, external_key="9")).external_key == "9"
    close, comment = tracker.requests
    assert (close.method, close.path, close.body) == ("PATCH", f"{GH_ISSUES}/9",
                                                      {"state": "closed", "state_reason": "duplicate"})
    assert (comment.method, comment.path) == ("POST", f"{GH_ISSUES}/9/comments")
    assert comment.body["body"].startswith(
        "Duplicate of #12\n\nFollow the bug in: [issue #12](https://github.com/studio/game/issues/12), "
        "[crashd ticket #3](http://crashd.test/tickets/3)\n\n**Duplicate of ticket #3: crash_here | main**")


def test_github_duplicate_of_a_ticket_without_issue_names_the_crashd_ticket(tmp_path: Path,
                                                                            tracker: FakeTracker) -> None:
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    github.send(duplicate(None, external_key="9"))
    assert tracker.paths() == [("PATCH", f"{GH_ISSUES}/9"), ("POST", f"{GH_ISSUES}/9/comments")]
    body = tracker.requests[1].body["body"]
    assert body.startswith("Duplicate of crashd ticket #3 (http://crashd.test/tickets/3)\n\n**Duplicate of ticket #3")
    assert "Duplicate of #" not in body  # no issue number GitHub would link to the wrong issue
    tracker.requests.clear()
    backend(settings_for(tmp_path, tracker, "github", public_url=None), "github").send(duplicate(None, external_key="9"))
    assert tracker.requests[1].body["body"].startswith("Duplicate of crashd ticket #3\n")


def test_github_duplicate_falls_back_to_not_planned(tmp_path: Path, tracker: FakeTracker) -> None:
    """A GitHub Enterprise Server that predates state_reason `duplicate` answers 422."""
    github = backend(settings_for(tmp_path, tracker, "github"), "github")
    tracker.fail(422, body='{"message": "Validation Failed"}')
    github.send(duplicate(("12", None), external_key="9"))
    assert [(r.method, r.body) for r in tracker.requests[:2]] == [
        ("PATCH", {"state": "closed", "state_reason": "duplicate"}),
        ("PATCH", {"state": "closed", "state_reason": "not_planned"})]
    assert tracker.requests[2].body["body"].startswith("Duplicate of #12\n\nFollow the bug in: [crashd ticket #3]")


@pytest.mark.parametrize("name", ["github", "jira"])
def test_duplicate_without_issue_sends_nothing(tmp_path: Path, tracker: FakeTracker, name: str) -> None:
    """No issue to close: none is created just to be closed."""
    assert backend(settings_for(tmp_path, tracker, name), name).send(duplicate(("12", None))) == Delivery()
    assert tracker.requests == []


def test_jira_regrouped_sets_the_summary_then_comments(tmp_path: Path, tracker: FakeTracker) -> None:
    jira = backend(settings_for(tmp_path, tracker, "jira"), "jira")
    jira.send(regrouped(external_key="CRASH-4", title="renderer: crash_here\n| main"))
    put, comment = tracker.requests
    assert (put.method, put.path, put.body) == ("PUT", "/jira/rest/api/2/issue/CRASH-4",
                                                {"fields": {"summary": "renderer: crash_here | main"}})
    assert (comment.method, comment.path) == ("POST", "/jira/rest/api/2/issue/CRASH-4/comment")
    assert comment.body["body"].startswith("Regrouped: renderer: crash_here\n| main (was old_crash | main)\n{noformat}")
    assert "Previous signature: old_crash | main\n" in comment.body["body"]


def test_jira_duplicate_links_transitions_then_comments(tmp_path: Path, tracker: FakeTracker) -> None:
    jira = backend(settings_for(tmp_path, tracker, "jira"), "jira")
    jira.send(duplicate(("CRASH-3", f"{tracker.url}/jira/browse/CRASH-3"), external_key="CRASH-4"))
    assert [(r.method, r.path, r.body) for r in tracker.requests[:-1]] == [
        ("POST", "/jira/rest/api/2/issueLink", {"type": {"name": "Duplicate"}, "inwardIssue": {"key": "CRASH-4"},
                                                "outwardIssue": {"key": "CRASH-3"}}),
        ("GET", "/jira/rest/api/2/issue/CRASH-4/transitions", None),
        ("POST", "/jira/rest/api/2/issue/CRASH-4/transitions", {"transition": {"id": "31"}})]
    comment = tracker.requests[-1]
    assert comment.path == "/jira/rest/api/2/issue/CRASH-4/comment"
    assert comment.body["body"].startswith("Duplicate of CRASH-3\nDuplicate of ticket #3: crash_here | main\n{noformat}")


def test_jira_duplicate_without_link_type_or_surviving_issue(tmp_path: Path, tracker: FakeTracker) -> None:
    jira = backend(settings_for(tmp_path, tracker, "jira"), "jira")
    tracker.fail(404, body='{"errorMessages": ["No issue link type with name \'Duplicate\' found."]}')
    jira.send(duplicate(("CRASH-3", None), external_key="CRASH-4"))
    assert [p for _, p in tracker.paths()] == [
        "/jira/rest/api/2/issueLink", "/jira/rest/api/2/issue/CRASH-4/transitions",
        "/jira/rest/api/2/issue/CRASH-4/transitions", "/jira/rest/api/2/issue/CRASH-4/comment"]
    tracker.requests.clear()
    jira.send(duplicate(None, external_key="CRASH-4"))  # the surviving ticket has no issue yet: no link
    assert [p for _, p in tracker.paths()] == [
        "/jira/rest/api/2/issue/CRASH-4/transitions", "/jira/rest/api/2/issue/CRASH-4/transitions",
        "/jira/rest/api/2/issue/CRASH-4/comment"]
    assert tracker.requests[-1].body["body"].startswith("Duplicate of crashd ticket #3 (http://crashd.test/tickets/3)\n")


def test_discord_regrouped_and_duplicate(tmp_path: Path, tracker: FakeTracker) -> None:
    discord = backend(settings_for(tmp_path, tracker, "discord"), "discord")
    discord.send(regrouped())
    discord.send(duplicate(("12", "https://github.com/studio/game/issues/12"),
                           external_url="https://github.com/studio/game/issues/9"))
    discord.send(duplicate(None))
    moved, closed, unknown = (r.body for r in tracker.requests)
    assert moved["content"].startswith("**Regrouped: renderer: crash_here | main (was old_crash | main)**")
    assert moved["embeds"][0]["color"] == 0x1ABC9C
    assert {"name": "Previous signature", "value": "old_crash | main", "inline": True} in moved["embeds"][0]["fields"]
    assert closed["content"].startswith("**Duplicate of ticket #3: crash_here | main**")
    assert closed["embeds"][0]["color"] == 0x7F8C8D
    assert closed["embeds"][0]["description"] == ("Tracker: https://github.com/studio/game/issues/9\n"
                                                  "Duplicate of ticket #3: https://github.com/studio/game/issues/12")
    assert unknown["embeds"][0]["description"] == "Duplicate of crashd ticket #3 (http://crashd.test/tickets/3)"


def enqueue(engine, settings: Settings, ticket: Ticket, group: CrashGroup | None, event: str,
            details: dict[str, Any]) -> int:
    """Enqueue one event of ticket with these details (group None: a merged ticket, which has none)."""
    payload = payload_for(ticket, group, details) if group else {"ticket": ticket.model_dump(mode="json"),
                                                                 "details": details}
    with engine.begin() as conn:
        return enqueue_notifications(conn, settings=settings, ticket_id=ticket.id, event=event, payload=payload)


def merge(engine, ticket: Ticket, into: Ticket) -> None:
    """What a merge leaves: the ticket lets go of its group and names the one it went into."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE tickets SET group_id = NULL, merged_into = :into, state = 'duplicate' WHERE id = :id"),
                     {"into": into.id, "id": ticket.id})


def test_outbox_resolves_duplicate_of_per_backend(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    survivor, survivor_group = add_ticket(engine)
    merged, merged_group = add_ticket(engine, survivor.project_id, signature="old_crash | main")
    settings = settings_for(tmp_path, tracker, "jira", "github", "discord", "webhook")
    enqueue(engine, settings, survivor, survivor_group, "opened", {})
    enqueue(engine, settings, merged, merged_group, "opened", {})
    assert deliver_due(engine, settings).sent == 8  # jira CRASH-1, github 2 (survivor); CRASH-3, github 4
    merge(engine, merged, into=survivor)
    enqueue(engine, settings, merged, None, "duplicate", {"duplicate_of": survivor.id, "reason": "merge"})
    enqueue(engine, settings, survivor, survivor_group, "regrouped", {"reason": "merge", "old_signature": "x",
                                                                      "merged_ticket_id": merged.id})
    tracker.requests.clear()
    assert deliver_due(engine, settings).as_dict() == {"sent": 8, "retried": 0, "failed": 0}
    link = next(r.body for r in tracker.requests if r.path == "/jira/rest/api/2/issueLink")
    assert link == {"type": {"name": "Duplicate"}, "inwardIssue": {"key": "CRASH-3"}, "outwardIssue": {"key": "CRASH-1"}}
    comments = {r.path: r.body["body"] for r in tracker.requests if r.path.endswith(("/comment", "/comments"))}
    assert comments[f"{GH_ISSUES}/4/comments"].startswith("Duplicate of #2\n")
    assert comments["/jira/rest/api/2/issue/CRASH-3/comment"].startswith("Duplicate of CRASH-1\n")
    assert ("PATCH", f"{GH_ISSUES}/2", {"title": "crash_here | main"}) in [(r.method, r.path, r.body)
                                                                          for r in tracker.requests]
    chats = [r.body for r in tracker.requests if r.path in ("/hook", "/discord/123/hook-secret")]
    survivor_issue = {"id": survivor.id, "external_key": "CRASH-1", "external_url": f"{tracker.url}/jira/browse/CRASH-1"}
    assert chats[0]["event"] == "duplicate" and chats[0]["duplicate_of"] == survivor_issue  # the ticket's issue
    assert chats[1]["embeds"][0]["description"].endswith(f"Duplicate of ticket #{survivor.id}: {tracker.url}/jira/browse/CRASH-1")


def test_duplicate_waits_for_the_surviving_ticket_to_be_opened(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    merged, merged_group = add_ticket(engine)
    survivor, survivor_group = add_ticket(engine, merged.project_id, signature="other")
    settings = settings_for(tmp_path, tracker, "github")
    enqueue(engine, settings, merged, merged_group, "opened", {})
    assert deliver_due(engine, settings).sent == 1  # issue 1
    enqueue(engine, settings, survivor, survivor_group, "opened", {})
    enqueue(engine, settings, merged, merged_group, "duplicate", {"duplicate_of": survivor.id, "reason": "by hand"})
    enqueue(engine, settings, merged, merged_group, "regressed", {})  # per-ticket order still holds behind it
    tracker.fail(503)
    t0 = utcnow()
    assert deliver_due(engine, settings, now=t0).as_dict() == {"sent": 0, "retried": 1, "failed": 0}
    assert tracker.paths()[1:] == [("POST", GH_ISSUES)]  # the duplicate waited for the survivor's issue
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=10)).sent == 3
    assert tracker.paths()[2:] == [("POST", GH_ISSUES), ("PATCH", f"{GH_ISSUES}/1"), ("POST", f"{GH_ISSUES}/1/comments"),
                                   ("PATCH", f"{GH_ISSUES}/1"), ("POST", f"{GH_ISSUES}/1/comments")]
    assert tracker.requests[4].body["body"].startswith("Duplicate of #2\n")


def test_duplicate_of_a_survivor_whose_opened_failed_goes_on(engine, tmp_path: Path, tracker: FakeTracker) -> None:
    merged, merged_group = add_ticket(engine)
    survivor, survivor_group = add_ticket(engine, merged.project_id, signature="other")
    settings = settings_for(tmp_path, tracker, "github")
    enqueue(engine, settings, merged, merged_group, "opened", {})
    deliver_due(engine, settings)
    enqueue(engine, settings, survivor, survivor_group, "opened", {})
    enqueue(engine, settings, merged, merged_group, "duplicate", {"duplicate_of": survivor.id})
    tracker.fail(401, body='{"message": "Bad credentials"}')
    assert deliver_due(engine, settings).as_dict() == {"sent": 1, "retried": 0, "failed": 1}
    assert tracker.requests[-1].body["body"].startswith(f"Duplicate of crashd ticket #{survivor.id} "
                                                        f"(http://crashd.test/tickets/{survivor.id})\n")
