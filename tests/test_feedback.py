"""Tester feedback (docs/feedback.md), on both backends: POST /api/<project>/feedback/ (JSON and
multipart with a screenshot), every refusal (4xx with a reason, nothing stored), the Sentry
envelope items ``feedback`` (with a screenshot that never becomes a crash) and ``user_report``,
the real sentry-sdk through its transport, nar_output grouping by normalized line, the tie to a
crash, GET /api/feedback, the Feedback page, and feedback groups kept out of crash lists and
crash rates."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from schemas.tables import Crash, CrashGroup, Feedback
from server.cli.projects import project_urls
from storage import queries
from triage.feedback import feedback_signature, normalized_line, text_key

from conftest import REPO, Crashd, LiveServer
from dashboard_world import PASSWORD, create_user, csrf_of
from uploads import multipart

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
CLIENT = Path(__file__).parent / "clients" / "sentry_feedback_client.py"


def send(crashd: Crashd, body: dict | None = None, *, files: list | None = None, key: str | None = None,
         fields: dict | None = None):
    """POST a report as JSON (body) or multipart (fields + files)."""
    url = f"/api/{crashd.project.id}/feedback/?key={key or crashd.key}"
    if body is not None:
        return crashd.client.post(url, json=body)
    content, ctype = multipart(fields or {}, files or [])
    return crashd.client.post(url, content=content, headers={"Content-Type": ctype})


def count(crashd: Crashd, table: type) -> int:
    with crashd.state.ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()


def rows(crashd: Crashd) -> list[Feedback]:
    with crashd.state.ctx.engine.connect() as conn:
        return [Feedback.model_validate(dict(r._mapping)) for r in conn.execute(select(Feedback.__table__))]


def envelope(*items: tuple[dict, bytes], header: dict | None = None) -> bytes:
    out = json.dumps(header or {}).encode() + b"\n"
    for item_header, payload in items:
        out += json.dumps({**item_header, "length": len(payload)}).encode() + b"\n" + payload + b"\n"
    return out


def post_envelope(crashd: Crashd, body: bytes):
    return crashd.client.post(f"/api/{crashd.project.id}/envelope/?sentry_key={crashd.key}", content=body,
                              headers={"Content-Type": "application/x-sentry-envelope"})


def event_crash(crashd: Crashd, event_id: str, **event: object) -> str:
    """Store a Sentry event (a crash without a dump); its crash id."""
    item = json.dumps({"event_id": event_id, "level": "fatal", "message": "boom", "release": "game@1.0",
                       "user": {"id": "tester-c"}, **event}).encode()
    assert post_envelope(crashd, envelope(({"type": "event"}, item))).status_code == 200
    return next(c.crash_id for c in queries_crashes(crashd) if c.annotations.get("sentry.event_id") == event_id)


def queries_crashes(crashd: Crashd) -> list[Crash]:
    with crashd.state.ctx.engine.connect() as conn:
        return [Crash.model_validate(dict(r._mapping)) for r in conn.execute(select(Crash.__table__))]


def listed(crashd: Crashd, query: str = "") -> dict:
    response = crashd.client.get(f"/api/feedback?project={crashd.project.name}{query}", headers=crashd.admin)
    assert response.status_code == 200, response.text
    return response.json()


# -- pure grouping ---------------------------------------------------------------------------


def test_normalized_line_ignores_case_punctuation_quotes_and_speaker() -> None:
    same = ["The NPC said: 'Go AWAY, stranger!!'", "Villager: go away stranger", '"Go away, stranger."',
            "go   away \u2014 stranger", "\uff27o away stranger", "the villager said go away stranger"]
    assert {normalized_line(m) for m in same} == {"go away stranger"}
    assert len({text_key(m) for m in same}) == 1 and len(text_key(same[0])) == 16
    assert normalized_line("Don\u2019t come back") == normalized_line("dont come back")
    assert feedback_signature("ui", "anything") == "feedback | ui"
    assert feedback_signature("nar_output", "Villager: Go away!") == "feedback | nar_output | go away"


# -- the endpoint ----------------------------------------------------------------------------


def test_json_report(crashd: Crashd) -> None:
    response = send(crashd, {"message": "The bridge texture flickers", "category": "ui", "tester_id": "t-1",
                             "build": "1.4.0", "platform": "Windows"})
    assert response.status_code == 200, response.text
    [row] = rows(crashd)
    assert response.json() == {"id": row.id}
    assert (row.category, row.tester_id, row.build, row.platform, row.source) == ("ui", "t-1", "1.4.0", "Windows", "api")
    assert count(crashd, Crash) == 0
    group = crashd.client.get("/api/groups?project=game&kind=feedback", headers=crashd.admin).json()["groups"]
    assert [(g["signature"], g["kind"], g["crash_count"], g["tester_count"]) for g in group] == [
        ("feedback | ui", "feedback", 1, 1)]


def test_category_defaults_to_other(crashd: Crashd) -> None:
    assert send(crashd, {"message": "hi"}).status_code == 200
    assert rows(crashd)[0].category == "other"


def test_multipart_report_with_screenshot(crashd: Crashd) -> None:
    response = send(crashd, fields={"message": "Shop button does nothing", "category": "ui", "tester_id": "t-2"},
                    files=[("screenshot", "shot.png", PNG, "image/png"),
                           ("log", "game.log", b"line 1\n", "text/plain")])
    assert response.status_code == 200, response.text
    [row] = rows(crashd)
    assert [a["name"] for a in row.attachments] == ["screenshot", "log"]
    shot = crashd.client.get(f"/api/feedback/{row.id}/attachments/screenshot", headers=crashd.admin)
    assert shot.status_code == 200 and shot.content == PNG
    assert shot.headers["content-type"] == "image/png" and shot.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in shot.headers["content-security-policy"]
    log = crashd.client.get(f"/api/feedback/{row.id}/attachments/log", headers=crashd.admin)
    assert log.headers["content-type"] == "application/octet-stream" and log.content == b"line 1\n"
    assert log.headers["content-disposition"].startswith("attachment;")
    assert crashd.client.get(f"/api/feedback/{row.id}/attachments/screenshot").status_code == 401
    assert count(crashd, Crash) == 0


@pytest.mark.parametrize("body,status,code", [
    ({"message": "   "}, 400, "feedback_empty_message"),
    ({"category": "ui"}, 400, "feedback_empty_message"),
    ({"message": "x" * (16 * 1024 + 1)}, 413, "feedback_too_long"),
    ({"message": "x" * (10 * 1024 * 1024)}, 413, "feedback_too_long"),
    ({"message": "hello", "category": "gameplay"}, 400, "feedback_bad_category"),
    ({"message": "hello", "crash_id": str(uuid.uuid4())}, 400, "feedback_unknown_crash"),
])
def test_bad_json_input_is_refused_and_nothing_stored(crashd: Crashd, body: dict, status: int, code: str) -> None:
    response = send(crashd, body)
    assert (response.status_code, response.json()) == (status, {"detail": code})
    assert count(crashd, Feedback) == 0 and count(crashd, CrashGroup) == 0
    assert crashd.client.get("/api/discards", headers=crashd.admin).json()["today"].get(code) == 1


@pytest.mark.parametrize("fields,files,status,code", [
    ({"message": "look"}, [("screenshot", "shot.png", b"<svg onload=alert(1)>", "image/png")], 400,
     "feedback_bad_screenshot"),
    ({"message": "look"}, [("file", "a.jpg", b"MZ\x90\x00", "image/jpeg")], 400, "feedback_bad_screenshot"),
    ({"message": "x" * (10 * 1024 * 1024)}, [], 413, "feedback_too_long"),
    ({"message": ""}, [("screenshot", "shot.png", PNG, "image/png")], 400, "feedback_empty_message"),
])
def test_bad_multipart_input_is_refused_and_nothing_stored(crashd: Crashd, fields: dict, files: list, status: int,
                                                            code: str) -> None:
    response = send(crashd, fields=fields, files=files)
    assert (response.status_code, response.json()) == (status, {"detail": code})
    assert count(crashd, Feedback) == 0 and count(crashd, CrashGroup) == 0
    assert not [p for p in crashd.blob_files() if "feedback" in str(p)]


def test_wrong_key_is_refused(crashd: Crashd) -> None:
    response = send(crashd, {"message": "hi"}, key="nope")
    assert (response.status_code, response.json()) == (401, {"detail": "bad_key"})


def test_crash_of_another_project_is_refused(crashd: Crashd) -> None:
    other = queries.create_project(crashd.state.ctx.engine, name="other")
    url = f"/api/{other.id}/envelope/?sentry_key={other.ingest_key}"
    item = json.dumps({"event_id": uuid.uuid4().hex, "level": "fatal", "message": "elsewhere"}).encode()
    assert crashd.client.post(url, content=envelope(({"type": "event"}, item))).status_code == 200
    [crash] = queries_crashes(crashd)
    response = send(crashd, {"message": "it crashed", "crash_id": crash.crash_id})
    assert (response.status_code, response.json()) == (400, {"detail": "feedback_unknown_crash"})
    assert count(crashd, Feedback) == 0


def test_tied_to_a_crash_shows_on_crash_and_group(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    event_id = uuid.uuid4().hex
    crash_id = event_crash(crashd, event_id)
    crashd.drain()
    for tester in ("t-1", "t-2", "t-3"):
        assert send(crashd, {"message": f"crashed when {tester} opened the map", "category": "bug",
                             "tester_id": tester, "crash_id": crash_id}).status_code == 200
    detail = crashd.crash(crash_id)
    assert sorted(f["tester_id"] for f in detail["feedback"]) == ["t-1", "t-2", "t-3"]
    assert count(crashd, Crash) == 1
    client = reader(crashd, monkeypatch)
    page = page_of(client, f"/groups/{detail['group_id']}")
    assert "3 testers commented" in page
    assert "crashed when t-2 opened the map" in page
    crash_page = page_of(client, f"/crashes/{crash_id}")
    assert "crashed when t-1 opened the map" in crash_page


def test_tie_by_event_id_when_the_crash_comes_later(crashd: Crashd) -> None:
    event_id = str(uuid.uuid4())  # sentry-native writes event ids with dashes
    assert send(crashd, {"message": "the game froze then closed", "category": "bug", "tester_id": "t-9",
                         "event_id": event_id}).status_code == 200
    assert rows(crashd)[0].crash_id is None
    crash_id = event_crash(crashd, event_id)
    assert [f["tester_id"] for f in crashd.crash(crash_id)["feedback"]] == ["t-9"]
    assert listed(crashd, f"&crash={crash_id}")["total"] == 1


# -- grouping --------------------------------------------------------------------------------


def test_nar_output_groups_by_normalized_line(crashd: Crashd) -> None:
    spellings = ["Villager: Go away, stranger!", "go away stranger", '"GO AWAY, STRANGER."', "Go away... stranger?"]
    for n in range(12):
        response = send(crashd, {"message": spellings[n % 4], "category": "nar_output", "tester_id": f"tester-{n}",
                                 "build": "1.4.0" if n < 6 else "1.5.0"})
        assert response.status_code == 200, response.text
    assert send(crashd, {"message": "Villager: You smell of fish", "category": "nar_output",
                         "tester_id": "tester-0"}).status_code == 200
    assert send(crashd, {"message": "Go away stranger", "category": "ui", "tester_id": "tester-0"}).status_code == 200
    groups = crashd.client.get("/api/groups?project=game&kind=feedback", headers=crashd.admin).json()["groups"]
    summary = {g["signature"]: (g["crash_count"], g["tester_count"]) for g in groups}
    assert summary == {"feedback | nar_output | go away stranger": (12, 12),
                       "feedback | nar_output | you smell of fish": (1, 1), "feedback | ui": (1, 1)}
    big = next(g for g in groups if g["crash_count"] == 12)
    assert big["build_count"] == 2 and big["component"] == "nar_output"
    assert listed(crashd, f"&group={big['id']}")["total"] == 12
    assert len({r.text_key for r in rows(crashd) if r.category == "nar_output"}) == 2


def test_feedback_groups_stay_out_of_crash_lists_and_rates(crashd: Crashd) -> None:
    event_crash(crashd, uuid.uuid4().hex)
    crashd.drain()
    before = crashd.client.get("/api/builds?project=game", headers=crashd.admin).json()
    for n in range(3):
        send(crashd, {"message": "lag in the swamp", "category": "performance", "tester_id": f"t{n}",
                      "build": "game@1.0"})
    groups = crashd.client.get("/api/groups?project=game", headers=crashd.admin).json()
    assert [g["kind"] for g in groups["groups"]] == ["crash"] and groups["total"] == 1
    assert crashd.client.get("/api/builds?project=game", headers=crashd.admin).json() == before
    assert count(crashd, Crash) == 1


# -- GET /api/feedback -----------------------------------------------------------------------


def test_list_filters(crashd: Crashd) -> None:
    send(crashd, {"message": "a", "category": "ui", "tester_id": "t-1", "build": "1.0"})
    send(crashd, {"message": "b", "category": "login", "tester_id": "t-2", "build": "1.1"})
    send(crashd, {"message": "c", "category": "ui", "tester_id": "t-2", "build": "1.1"})
    assert listed(crashd)["total"] == 3
    assert [f["message"] for f in listed(crashd, "&category=ui")["feedback"]] == ["c", "a"]
    assert [f["message"] for f in listed(crashd, "&build=1.1&tester=t-2")["feedback"]] == ["c", "b"]
    page = listed(crashd, "&limit=1&offset=1")
    assert (len(page["feedback"]), page["total"], page["limit"], page["offset"]) == (1, 3, 1, 1)
    bad = crashd.client.get("/api/feedback?category=nope", headers=crashd.admin)
    assert bad.status_code == 400 and "category" in bad.json()["detail"]
    assert crashd.client.get("/api/feedback").status_code == 401


# -- Sentry envelopes ------------------------------------------------------------------------


def feedback_event(message: str = "The villager insulted me", **extra: object) -> dict:
    return {"event_id": uuid.uuid4().hex, "type": "feedback", "release": "game@2.0", "platform": "native",
            "user": {"id": "tester-7", "email": "alice@example.com"}, "tags": {"category": "nar_output"},
            "contexts": {"feedback": {"message": message, "contact_email": "alice@example.com",
                                      "name": "Alice Example", "url": "game://village"},
                         "os": {"name": "Windows", "version": "10"}}, **extra}


def test_envelope_feedback_with_screenshot_is_feedback_not_a_crash(crashd: Crashd) -> None:
    event = feedback_event()
    body = envelope(({"type": "feedback"}, json.dumps(event).encode()),
                    ({"type": "attachment", "filename": "screenshot.png", "content_type": "image/png"}, PNG),
                    header={"event_id": event["event_id"]})
    response = post_envelope(crashd, body)
    assert response.status_code == 200, response.text
    assert count(crashd, Crash) == 0
    [row] = rows(crashd)
    assert (row.source, row.category, row.tester_id, row.build, row.platform, row.url) == (
        "feedback", "nar_output", "tester-7", "game@2.0", "Windows", "game://village")
    assert [a["filename"] for a in row.attachments] == ["screenshot.png"]
    stored = json.dumps(row.model_dump(mode="json"))
    assert "alice@example.com" not in stored and "Alice Example" not in stored
    assert post_envelope(crashd, body).status_code == 200  # a retry: stored once
    assert count(crashd, Feedback) == 1


def test_envelope_feedback_with_bad_screenshot_is_refused(crashd: Crashd) -> None:
    body = envelope(({"type": "feedback"}, json.dumps(feedback_event()).encode()),
                    ({"type": "attachment", "filename": "screenshot.png", "content_type": "image/png"}, b"GIF-ish"))
    response = post_envelope(crashd, body)
    assert (response.status_code, response.json()) == (400, {"detail": "feedback_bad_screenshot"})
    assert count(crashd, Feedback) == 0 and count(crashd, Crash) == 0


def test_sentry_native_shaped_envelope(crashd: Crashd) -> None:
    """What sentry_capture_feedback(sentry_value_new_feedback(msg, email, name, &event_id))
    sends: a header with a dashed event id, a feedback item whose tags are a list of pairs."""
    crash_event = str(uuid.uuid4())
    crash_id = event_crash(crashd, crash_event)
    event_id = str(uuid.uuid4())
    event = {"event_id": event_id, "timestamp": 1767225600.5, "platform": "native", "level": "info",
             "release": "game@1.0", "user": {"id": "tester-n"}, "tags": [["category", "bug"]],
             "contexts": {"feedback": {"message": "It crashed when I opened the chest", "contact_email": "a@b.c",
                                       "name": "A", "associated_event_id": crash_event},
                          "os": {"name": "Linux"}},
             "sdk": {"name": "sentry.native", "version": "0.10.0"}}
    body = envelope(({"type": "feedback"}, json.dumps(event).encode()),
                    header={"event_id": event_id, "dsn": f"http://{crashd.key}@x/{crashd.project.id}"})
    assert post_envelope(crashd, body).status_code == 200
    [row] = rows(crashd)
    assert (row.crash_id, row.category, row.platform, row.event_id) == (crash_id, "bug", "Linux",
                                                                         uuid.UUID(crash_event).hex)
    assert count(crashd, Crash) == 1


def test_user_report_item(crashd: Crashd) -> None:
    event_id = uuid.uuid4().hex
    crash_id = event_crash(crashd, event_id)
    report = {"event_id": event_id, "name": "Bob", "email": "bob@example.com", "comments": "I was jumping"}
    assert post_envelope(crashd, envelope(({"type": "user_report"}, json.dumps(report).encode()))).status_code == 200
    [row] = rows(crashd)
    assert (row.source, row.message, row.crash_id, row.tester_id, row.build) == (
        "user_report", "I was jumping", crash_id, "tester-c", "game@1.0")
    assert "bob@example.com" not in json.dumps(row.model_dump(mode="json"))


def test_real_sentry_sdk_sends_feedback(live: LiveServer) -> None:
    crashd = live.crashd
    dsn = project_urls(crashd.settings, crashd.project, live.url)["dsn"]
    done = subprocess.run([sys.executable, str(CLIENT), str(dsn)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    [row] = rows(crashd)
    assert (row.source, row.message, row.category, row.tester_id, row.build) == (
        "feedback", "The blacksmith repeats the same line forever", "nar_output", "tester-sdk", "game@4.2")
    assert [a["content_type"] for a in row.attachments] == ["image/png"]
    assert count(crashd, Crash) == 0


# -- the dashboard ---------------------------------------------------------------------------


def page_of(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.text


def reader(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """A browser-like client signed in as a viewer."""
    create_user(crashd, "victor", "viewer", monkeypatch)
    client = TestClient(crashd.client.app)
    token = csrf_of(client.get("/login?next=/").text)
    response = client.post("/login", data={"username": "victor", "password": PASSWORD, "csrf_token": token,
                                           "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def test_feedback_page_escapes_and_filters(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    send(crashd, fields={"message": "<script>alert(1)</script> the shop", "category": "ui", "tester_id": "t-1",
                         "build": "1.0"}, files=[("screenshot", "s.png", PNG, "image/png")])
    send(crashd, {"message": "cannot log in", "category": "login", "tester_id": "t-2", "build": "1.1"})
    client = reader(crashd, monkeypatch)
    page = page_of(client, "/feedback?project=game")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    row = next(r for r in rows(crashd) if r.category == "ui")
    assert f'<img src="/api/feedback/{row.id}/attachments/screenshot"' in page
    assert "cannot log in" in page
    only_login = page_of(client, "/feedback?project=game&category=login")
    assert "cannot log in" in only_login and "the shop" not in only_login
    assert "1 tester" in page_of(client, "/feedback?project=game&tester=t-2")
    groups_page = page_of(client, "/")
    assert "feedback | ui" not in groups_page
