"""Security reports on both backends (docs/security-reports.md): a tester's report opens a
restricted P0 ticket at once; only global admins and the project's security grantees see its
text, through any route; the ordinary trackers hear at most "restricted security report #N
received", the security webhook everything; the disclosure timeline; the progress log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlmodel import select
from test_dashboard_pages import signed_in
from test_triage_e2e import Webhook

from schemas.tables import Feedback, SecurityReport
from storage import users
from storage.db import session
from storage.outbox import deliver_due
from workers.triage_report import progress_log, render_progress_log

from conftest import Crashd, _crashd, make_settings

SUMMARY = "Item duplication: drop a stack while trading"
DETAILS = "Open the trade window, drop the stack, cancel: both players keep it. zkLogin session 1f3a."


@pytest.fixture
def hooks() -> Iterator[tuple[Webhook, Webhook]]:
    ordinary, secure = Webhook(), Webhook()
    yield ordinary, secure
    ordinary.server.shutdown()
    secure.server.shutdown()


@pytest.fixture(params=["minimal", "none"])
def notify(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def sec(backend: str, services: tuple[str | None, str | None], tmp_path: Path, hooks: tuple[Webhook, Webhook],
        notify: str) -> Iterator[Crashd]:
    pg, redis = services
    ordinary, secure = hooks
    yield from _crashd(backend, make_settings(backend, tmp_path, pg, redis, webhook_url=ordinary.url,
                                              security_webhook_url=secure.url, security_notify=notify))


def token(c: Crashd, role: str, *, project: bool = True, security: bool = False) -> dict[str, str]:
    _, secret = users.create_token(c.state.ctx.engine, name=f"{role}-{uuid.uuid4().hex[:6]}", role=role,
                                   project_id=c.project.id if project else None, security=security)
    return {"Authorization": f"Bearer {secret}"}


def report(c: Crashd, **body: Any) -> dict[str, Any]:
    response = c.client.post(f"/api/{c.project.id}/security/?key={c.key}",
                             json={"summary": SUMMARY, "details": DETAILS, "tester_id": "t7", "build": "0.9.9", **body})
    assert response.status_code == 200, response.text
    return response.json()


def get(c: Crashd, path: str, headers: dict[str, str]) -> Any:
    response = c.client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def deliver(c: Crashd) -> None:
    c.drain()
    deliver_due(c.state.ctx.engine, c.settings)


def test_a_report_opens_a_restricted_p0_that_only_security_sees(sec: Crashd, hooks: tuple[Webhook, Webhook],
                                                                 notify: str) -> None:
    ordinary, secure = hooks
    answer = report(sec)
    assert answer["id"] in answer["receipt"] and "security team" in answer["receipt"]
    deliver(sec)
    [ticket] = get(sec, "/api/tickets?project=game", sec.admin)["tickets"]
    assert (ticket["priority"], ticket["state"], ticket["restricted"], ticket["group_id"]) == ("P0", "open", True, None)
    detail = get(sec, f"/api/tickets/{ticket['id']}", sec.admin)
    assert detail["report"]["summary"] == SUMMARY and detail["report"]["details"] == DETAILS
    assert [s["step"] for s in detail["report"]["timeline"]] == ["received"]

    # The security webhook hears everything; the others at most that a report arrived.
    assert [(b["event"], b["report"]["summary"]) for b in secure.bodies] == [("opened", SUMMARY)]
    everything_else = json.dumps(ordinary.bodies)
    assert SUMMARY not in everything_else and "duplication" not in everything_else and "t7" not in everything_else
    expected = [("opened", f"Restricted security report #{ticket['id']}")] if notify == "minimal" else []
    assert [(b["event"], b["ticket"]["title"]) for b in ordinary.bodies] == expected

    for headers in (token(sec, "viewer", project=False), token(sec, "viewer"), token(sec, "triager")):
        assert get(sec, "/api/tickets?project=game", headers)["tickets"] == []
        assert sec.client.get(f"/api/tickets/{ticket['id']}", headers=headers).status_code == 404
        board = get(sec, "/api/triage?project=game", headers)
        assert board["open_tickets"] == [] and board["restricted_hidden"] == 1
        assert SUMMARY not in json.dumps(board)
        response = sec.client.post(f"/api/tickets/{ticket['id']}/resolve", json={"fixed_in": "1.0"}, headers=headers)
        assert response.status_code in (403, 404)
    grantee = token(sec, "viewer", security=True)
    assert [t["id"] for t in get(sec, "/api/tickets?project=game", grantee)["tickets"]] == [ticket["id"]]
    assert get(sec, f"/api/tickets/{ticket['id']}", grantee)["report"]["summary"] == SUMMARY
    assert get(sec, "/api/triage?project=game", grantee)["restricted_hidden"] == 0


def test_the_disclosure_timeline(sec: Crashd, hooks: tuple[Webhook, Webhook], notify: str) -> None:
    ordinary, secure = hooks
    report(sec)
    [ticket] = get(sec, "/api/tickets?project=game", sec.admin)["tickets"]
    path = f"/api/tickets/{ticket['id']}/timeline"
    security_triager = token(sec, "triager", security=True)
    assert sec.client.post(path, json={"step": "acknowledged"}, headers=token(sec, "triager")).status_code == 404
    assert sec.client.post(path, json={"step": "disclosed"}, headers=security_triager).status_code == 400  # not yet
    assert sec.client.post(path, json={"step": "fixed"}, headers=security_triager).status_code == 400  # no build
    assert sec.client.post(path, json={"step": "bribed"}, headers=security_triager).status_code == 400
    for body in ({"step": "acknowledged"}, {"step": "confirmed", "note": "reproduced on 0.9.9"},
                 {"step": "fixed", "build": "0.9.9-hotfix1"}, {"step": "tester_told"}, {"step": "disclosed"}):
        response = sec.client.post(path, json=body, headers=security_triager)
        assert response.status_code == 200, response.text
    done = response.json()
    assert (done["state"], done["fixed_in"]) == ("resolved", "0.9.9-hotfix1")
    steps = [(s["step"], s["actor"].split(":")[0]) for s in done["report"]["timeline"]]
    assert [s for s, _ in steps] == ["received", "acknowledged", "confirmed", "fixed", "tester_told", "disclosed"]
    assert all(actor == "user" for _, actor in steps[1:])
    deliver(sec)
    assert [b["event"] for b in secure.bodies] == ["opened", "acknowledged", "confirmed", "fixed", "tester_told",
                                                   "disclosed"]
    assert [b["event"] for b in ordinary.bodies] == (["opened"] if notify == "minimal" else [])

    log = progress_log(sec.state.ctx)
    rendered = render_progress_log(log)
    assert "## Security" in rendered and f"Restricted security report #{ticket['id']}" in rendered
    assert "received " in rendered and "disclosed " in rendered and SUMMARY not in rendered
    assert "reproduced" not in json.dumps(log)
    assert SUMMARY in render_progress_log(progress_log(sec.state.ctx, include_restricted=True))


def test_feedback_of_category_security_is_a_security_report(sec: Crashd) -> None:
    response = sec.client.post(f"/api/{sec.project.id}/feedback/?key={sec.key}",
                               json={"message": f"{SUMMARY}\n{DETAILS}", "category": "security", "tester_id": "t9"})
    assert response.status_code == 200, response.text
    event_id = uuid.uuid4().hex
    item = {"event_id": event_id, "tags": {"category": "security"}, "user": {"id": "t10"},
            "contexts": {"feedback": {"message": "zkLogin accepts an expired JWT", "contact_email": "a@b.c"}}}
    payload = json.dumps(item).encode()
    body = (json.dumps({"event_id": event_id}).encode() + b"\n" + json.dumps({"type": "feedback", "length": len(payload)})
            .encode() + b"\n" + payload + b"\n")
    response = sec.client.post(f"/api/{sec.project.id}/envelope/?sentry_key={sec.key}", content=body,
                               headers={"Content-Type": "application/x-sentry-envelope"})
    assert response.status_code == 200, response.text
    with session(sec.state.ctx.engine) as s:
        reports = {r.summary: r for r in s.exec(select(SecurityReport))}
        feedback = list(s.exec(select(Feedback)))
    assert set(reports) == {SUMMARY, "zkLogin accepts an expired JWT"} and feedback == []
    assert reports[SUMMARY].details == f"{SUMMARY}\n{DETAILS}" and reports[SUMMARY].tester_id == "t9"
    assert "a@b.c" not in json.dumps([r.model_dump(mode="json") for r in reports.values()])
    assert len(get(sec, "/api/tickets?project=game", sec.admin)["tickets"]) == 2


def test_bad_reports_are_refused_with_a_reason(sec: Crashd) -> None:
    for body, status, reason in (({"summary": " ", "details": ""}, 400, "security_empty_summary"),
                                 ({"details": "x" * (17 * 1024)}, 413, "security_too_long")):
        response = sec.client.post(f"/api/{sec.project.id}/security/?key={sec.key}", json=body)
        assert (response.status_code, response.json()["detail"]) == (status, reason)
    assert sec.client.post(f"/api/{sec.project.id}/security/", json={"summary": "x"}).status_code == 401
    assert get(sec, "/api/tickets?project=game", sec.admin)["tickets"] == []


def test_no_get_route_or_page_shows_a_report_to_a_viewer(sec: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every GET route of /api/openapi.json without a path parameter, and the dashboard's pages,
    as a viewer without the security grant: the report's text is nowhere."""
    report(sec)
    sec.drain()
    [ticket] = get(sec, "/api/tickets?project=game", sec.admin)["tickets"]
    viewer = token(sec, "viewer", project=False)
    paths = [path for path, ops in get(sec, "/api/openapi.json", sec.admin)["paths"].items()
             if "get" in ops and "{" not in path and path.startswith("/api/")]
    assert "/api/tickets" in paths and "/api/triage" in paths and "/api/feedback" in paths
    for path in paths:
        response = sec.client.get(f"{path}?project=game" if path != "/api/openapi.json" else path, headers=viewer)
        assert SUMMARY not in response.text and "duplication" not in response.text, path
    browser = signed_in(sec, "vera", "viewer", monkeypatch)
    for page in ("/", "/triage", "/feedback", "/builds", "/symbols", f"/tickets/{ticket['id']}"):
        response = browser.get(page)
        assert SUMMARY not in response.text, page
    assert browser.get(f"/tickets/{ticket['id']}").status_code == 404
    assert "1 restricted item" in browser.get("/triage").text
    admin = signed_in(sec, "ada", "admin", monkeypatch)
    page = admin.get(f"/tickets/{ticket['id']}")
    assert page.status_code == 200 and SUMMARY in page.text and "received" in page.text
