"""POST /api/<project>/sessions/, storage/sessions.py and the builds API (GET /api/builds,
GET /api/builds/compare), on both backends; the compare test groups real corpus crashes
through the real pipeline."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from schemas.tables import GameSession
from storage import queries, sessions

from conftest import Crashd

SEGV = "linux-x64-generated-crashpad-segv-O0"  # signature crash_here
ABORT = "linux-x64-generated-crashpad-abort-O2"  # signature process_item
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def session(session_id: str, build: str = "1.0", status: str = "ok", tester: str = "t1", **extra: Any) -> dict[str, Any]:
    return {"session_id": session_id, "tester_id": tester, "build": build, "started": T0.isoformat(),
            "duration": 60.0, "status": status, **extra}


def post(crashd: Crashd, payload: Any, *, key: str | None = None, project: str | None = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None):
    url = f"/api/{project or crashd.project.id}/sessions/"
    if key is None:
        key = crashd.key
    if key:
        url += f"?sentry_key={key}"
    body = raw if raw is not None else json.dumps(payload).encode()
    return crashd.client.post(url, content=body, headers={"Content-Type": "application/json", **(headers or {})})


def stored(crashd: Crashd) -> dict[str, dict[str, Any]]:
    table = GameSession.__table__
    with crashd.state.ctx.engine.connect() as conn:
        return {r.session_id: dict(r._mapping) for r in conn.execute(select(table))}


def discards(crashd: Crashd) -> dict[str, int]:
    return crashd.client.get("/api/discards", headers=crashd.admin).json()["all_time"]


# -- POST /api/<project>/sessions/ ----------------------------------------------------------


def test_one_session(crashd: Crashd) -> None:
    response = post(crashd, session("s1", status="exited", started=1772366400))  # epoch seconds
    assert (response.status_code, response.json()) == (200, {"accepted": 1})
    row = stored(crashd)["s1"]
    assert (row["project_id"], row["tester_id"], row["build"], row["status"], row["duration"]) == (
        crashd.project.id, "t1", "1.0", "exited", 60.0)
    assert queries.as_utc(row["started"]) == datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("wrap", ["list", "object"])
def test_a_batch(crashd: Crashd, wrap: str) -> None:
    batch = [session(f"s{i}", build=f"1.{i % 2}", status="crashed" if i % 4 == 0 else "exited") for i in range(10)]
    response = post(crashd, batch if wrap == "list" else {"sessions": batch}, project="game")  # by name
    assert (response.status_code, response.json()) == (200, {"accepted": 10})
    engine = crashd.state.ctx.engine
    assert sessions.sessions_per_build(engine, project_id=crashd.project.id) == {"1.0": 5, "1.1": 5}
    assert sessions.crashed_sessions_per_build(engine, project_id=crashd.project.id) == {"1.0": 3}


def test_posting_again_updates_the_status_not_the_count(crashd: Crashd) -> None:
    assert post(crashd, [session("s1"), session("s2")]).json() == {"accepted": 2}
    first_update = queries.as_utc(stored(crashd)["s1"]["updated_at"])
    again = session("s1", status="crashed", duration=95.5, build="9.9", tester="someone-else")
    assert post(crashd, [again, session("s2")]).json() == {"accepted": 2}
    rows = stored(crashd)
    assert len(rows) == 2
    # Status and duration change; build, tester and start are the first report's.
    assert (rows["s1"]["status"], rows["s1"]["duration"], rows["s1"]["build"], rows["s1"]["tester_id"]) == (
        "crashed", 95.5, "1.0", "t1")
    assert queries.as_utc(rows["s1"]["updated_at"]) > first_update
    assert sessions.sessions_per_build(crashd.state.ctx.engine, project_id=crashd.project.id) == {"1.0": 2}


def test_a_late_ok_does_not_undo_how_a_session_ended(crashd: Crashd) -> None:
    """A retried `ok` report arriving after `crashed` (out of order) keeps `crashed`."""
    post(crashd, session("s1", status="ok", duration=10.0))
    post(crashd, session("s1", status="crashed", duration=50.0))
    assert post(crashd, session("s1", status="ok", duration=20.0)).json() == {"accepted": 1}
    assert (stored(crashd)["s1"]["status"], stored(crashd)["s1"]["duration"]) == ("crashed", 50.0)
    post(crashd, session("s1", status="abnormal", duration=None))  # one final status may follow another
    assert (stored(crashd)["s1"]["status"], stored(crashd)["s1"]["duration"]) == ("abnormal", 50.0)


def test_the_same_session_twice_in_one_batch_counts_once(crashd: Crashd) -> None:
    response = post(crashd, [session("s1"), session("s1", status="crashed")])
    assert response.json() == {"accepted": 1}
    assert stored(crashd)["s1"]["status"] == "crashed"  # the last report wins


def test_gzipped_body_and_large_batch(crashd: Crashd) -> None:
    batch = [session(f"s{i:04d}", tester=f"t{i % 37}") for i in range(1200)]  # more than one INSERT
    response = post(crashd, None, raw=gzip.compress(json.dumps(batch).encode()), headers={"Content-Encoding": "gzip"})
    assert response.json() == {"accepted": 1200}
    assert len(stored(crashd)) == 1200
    assert sessions.active_testers(crashd.state.ctx.engine, project_id=crashd.project.id) == 37


def test_optional_fields_and_defaults(crashd: Crashd) -> None:
    response = post(crashd, {"session_id": 42, "started": "2026-03-01T12:00:00Z", "build": " ", "tester_id": 7})
    assert response.json() == {"accepted": 1}
    row = stored(crashd)["42"]
    assert (row["status"], row["build"], row["tester_id"], row["duration"]) == ("ok", None, "7", None)
    assert sessions.sessions_per_build(crashd.state.ctx.engine, project_id=crashd.project.id) == {"": 1}
    assert post(crashd, []).json() == {"accepted": 0}


def test_started_with_a_zone_is_stored_as_utc(crashd: Crashd) -> None:
    post(crashd, session("z", started="2026-03-01T14:00:00+02:00"))
    assert queries.as_utc(stored(crashd)["z"]["started"]) == T0


MALFORMED = {
    "not json": (b"{nope", "bad_json"),
    "not utf-8": (b"\xff\xfe[]", "bad_json"),
    "a number": (b"42", "bad_json"),
    "sessions not a list": (json.dumps({"sessions": {"a": 1}}).encode(), "bad_json"),
    "item not an object": (json.dumps([session("ok1"), "s2"]).encode(), "bad_session"),
    "missing session_id": (json.dumps({"started": 1772366400, "status": "ok"}).encode(), "missing_session_id"),
    "empty session_id": (json.dumps(session("  ")).encode(), "missing_session_id"),
    "session_id too long": (json.dumps(session("x" * 101)).encode(), "bad_session_id"),
    "bad status": (json.dumps(session("s1", status="exploded")).encode(), "bad_status"),
    "status not a string": (json.dumps(session("s1", status=3)).encode(), "bad_status"),
    "bad started": (json.dumps(session("s1", started="yesterday")).encode(), "bad_started"),
    "missing started": (json.dumps({"session_id": "s1", "status": "ok"}).encode(), "bad_started"),
    "started before 2000": (json.dumps(session("s1", started=0)).encode(), "bad_started"),
    "started out of range": (json.dumps(session("s1", started=1e300)).encode(), "bad_started"),
    "started true": (json.dumps(session("s1", started=True)).encode(), "bad_started"),
    "negative duration": (json.dumps(session("s1", duration=-1)).encode(), "bad_duration"),
    "duration text": (json.dumps(session("s1", duration="long")).encode(), "bad_duration"),
    "build an object": (json.dumps(session("s1", build={"v": 1})).encode(), "bad_build"),
    "build a float": (json.dumps(session("s1", build=1.10)).encode(), "bad_build"),
    "tester a list": (json.dumps(session("s1", tester=["a"])).encode(), "bad_tester_id"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_sessions_are_refused_and_counted(crashd: Crashd, case: str) -> None:
    body, reason = MALFORMED[case]
    response = post(crashd, None, raw=body)
    assert (response.status_code, response.json()) == (400, {"detail": f"malformed_{reason}"})
    assert stored(crashd) == {}  # all or nothing: the valid session of a batch is not kept either
    assert discards(crashd) == {f"sessions_malformed_{reason}": 1}


def test_body_over_the_limit(crashd: Crashd) -> None:
    crashd.settings.max_upload_bytes = 2000
    batch = [session(f"s{i}") for i in range(50)]
    response = post(crashd, batch)
    assert (response.status_code, response.json()) == (413, {"detail": "too_large"})
    assert post(crashd, batch[:5]).json() == {"accepted": 5}
    assert discards(crashd) == {"sessions_too_large": 1}


def test_authentication(crashd: Crashd) -> None:
    other = queries.create_project(crashd.state.ctx.engine, name="other")
    assert (post(crashd, session("s1"), key="").status_code, post(crashd, session("s1"), key="").json()) == (
        401, {"detail": "missing_key"})
    assert post(crashd, session("s1"), key="0" * 32).json() == {"detail": "bad_key"}
    wrong = post(crashd, session("s1"), key=other.ingest_key)  # the path names project "game"
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "bad_key"})
    header = crashd.client.post(f"/api/{crashd.project.id}/sessions/", content=json.dumps(session("s1")),
                                headers={"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={crashd.key}"})
    assert header.json() == {"accepted": 1}
    assert list(stored(crashd)) == ["s1"]
    assert discards(crashd) == {"sessions_missing_key": 2, "sessions_bad_key": 2}


def test_a_session_id_of_another_project_is_left_alone(crashd: Crashd) -> None:
    other = queries.create_project(crashd.state.ctx.engine, name="other")
    assert post(crashd, session("shared", status="exited"), key=other.ingest_key, project="other").json() == {"accepted": 1}
    assert post(crashd, session("shared", status="crashed")).json() == {"accepted": 0}
    row = stored(crashd)["shared"]
    assert (row["project_id"], row["status"]) == (other.id, "exited")


# -- storage/sessions.py --------------------------------------------------------------------


def test_concurrent_upserts_of_one_batch_keep_one_row_each(crashd: Crashd) -> None:
    engine, project_id = crashd.state.ctx.engine, crashd.project.id
    batch = [{"session_id": f"s{i}", "started": T0, "status": "exited", "build": "1.0"} for i in range(50)]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sessions.upsert_sessions(engine, project_id=project_id, sessions=batch)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    table = GameSession.__table__
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 50


def test_windows_and_active_testers(crashd: Crashd) -> None:
    engine, project_id = crashd.state.ctx.engine, crashd.project.id
    old, new = T0 - timedelta(days=10), T0
    sessions.upsert_sessions(engine, project_id=project_id, sessions=[
        {"session_id": "a", "tester_id": "t1", "build": "1.0", "started": old, "status": "crashed"},
        {"session_id": "b", "tester_id": "t2", "build": "1.0", "started": new, "status": "exited"},
        {"session_id": "c", "tester_id": "t2", "build": "1.1", "started": new, "status": "crashed"},
        {"session_id": "d", "tester_id": None, "build": "1.1", "started": new, "status": "abnormal"},
        # a naive start is UTC; one in another zone is converted
        {"session_id": "e", "tester_id": "t3", "build": "1.1",
         "started": (new + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5))), "status": "ok"},
    ])
    since = T0 - timedelta(days=1)
    assert sessions.sessions_per_build(engine, project_id=project_id) == {"1.0": 2, "1.1": 3}
    assert sessions.sessions_per_build(engine, project_id=project_id, since=since) == {"1.0": 1, "1.1": 3}
    assert sessions.sessions_per_build(engine, project_id=project_id, since=T0 + timedelta(minutes=30)) == {"1.1": 1}
    assert sessions.crashed_sessions_per_build(engine, project_id=project_id) == {"1.0": 1, "1.1": 1}
    assert sessions.crashed_sessions_per_build(engine, project_id=project_id, since=since) == {"1.1": 1}
    assert sessions.active_testers(engine, project_id=project_id) == 3
    assert sessions.active_testers(engine, project_id=project_id, since=since) == 2
    assert sessions.active_testers(engine, project_id=project_id, build="1.0") == 2
    assert sessions.active_testers(engine, project_id=project_id, build="1.0", since=since) == 1
    assert sessions.active_testers(engine, project_id=project_id, build="2.0") == 0
    other = queries.create_project(engine, name="other")
    assert sessions.sessions_per_build(engine, project_id=other.id) == {}
    assert sessions.active_testers(engine, project_id=other.id) == 0


# -- the builds API, with crashes grouped by the real pipeline ------------------------------






def play(crashd: Crashd, build: str, count: int, crashed: int) -> None:
    """count sessions of build by 10 testers, the first `crashed` of them crashed."""
    batch = [session(f"{build}-{i}", build=build, tester=f"tester-{i % 10}",
                     status="crashed" if i < crashed else "exited") for i in range(count)]
    assert post(crashd, batch).json() == {"accepted": count}


def test_compare_reports_the_significant_drop(crashd: Crashd) -> None:
    """crash_here: 6 crashes in 300 sessions of 1.0, none in 300 of 1.1 -> a significant
    drop (p = 0.5**6). process_item: 1 -> 2, not a drop."""
    crashd.add_corpus_symbols(SEGV, ABORT)
    for i in range(6):
        crashd.upload_corpus(SEGV, guid=f"segv-{i}", tester_id=f"tester-{i}", ver="1.0")
    crashd.upload_corpus(ABORT, guid="abort-0", tester_id="tester-0", ver="1.0")
    for i in range(2):
        crashd.upload_corpus(ABORT, guid=f"abort-{i + 1}", tester_id=f"tester-{i}", ver="1.1")
    crashd.drain()
    play(crashd, "1.0", 300, crashed=7)
    play(crashd, "1.1", 300, crashed=2)

    response = crashd.client.get("/api/builds/compare?project=game&base=1.0&target=1.1", headers=crashd.admin)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert {k: doc[k] for k in ("base", "target", "base_sessions", "target_sessions")} == {
        "base": "1.0", "target": "1.1", "base_sessions": 300, "target_sessions": 300}
    assert doc["base_crash_rate"] == pytest.approx(7 / 300)
    assert doc["target_crash_rate"] == pytest.approx(2 / 300)
    groups = doc["groups"]
    assert [g["signature"] for g in groups] == ["crash_here", "process_item"]  # biggest drop first
    fixed, other = groups
    assert {k: fixed[k] for k in ("component", "base_crashes", "target_crashes", "target_rate", "change", "significant")} == {
        "component": "game", "base_crashes": 6, "target_crashes": 0, "target_rate": 0.0, "change": -1.0,
        "significant": True}
    assert fixed["base_rate"] == pytest.approx(6 / 300)
    assert fixed["p_value"] == pytest.approx(0.5**6)
    assert isinstance(fixed["group_id"], int)
    assert (other["base_crashes"], other["target_crashes"], other["significant"], other["reason"]) == (1, 2, False, "not_lower")
    assert sessions.group_crashes_per_build(crashd.state.ctx.engine, group_id=fixed["group_id"]) == {"1.0": 6}
    assert sessions.active_testers(crashd.state.ctx.engine, project_id=crashd.project.id, build="1.1") == 10

    # Too few sessions of the target: the same drop is not significant.
    few = crashd.client.get("/api/builds/compare?project=game&base=1.0&target=1.1&min_sessions=301",
                            headers=crashd.admin).json()
    assert few["groups"][0]["signature"] == "crash_here"
    assert (few["groups"][0]["significant"], few["groups"][0]["reason"]) == (False, "too_few_sessions")
    # A build nobody played: rates unknown (null), never 0.
    unplayed = crashd.client.get("/api/builds/compare?project=game&base=1.0&target=2.0", headers=crashd.admin).json()
    assert (unplayed["target_sessions"], unplayed["target_crash_rate"]) == (0, None)
    assert all(g["target_rate"] is None and g["p_value"] is None and not g["significant"] for g in unplayed["groups"])

    builds = crashd.client.get("/api/builds?project=game", headers=crashd.admin).json()["builds"]
    assert [(b["build"], b["sessions"], b["crashed_sessions"], b["crashes"]) for b in builds] == [
        ("1.0", 300, 7, 7), ("1.1", 300, 2, 2)]
    assert builds[0]["crash_rate"] == pytest.approx(7 / 300)
    assert builds[0]["first_seen"] is not None


def test_builds_are_listed_in_version_order(crashd: Crashd) -> None:
    for build in ["1.0", "0.9.10", "nightly", "0.9.9-staging-beta10", "0.9.9", "0.9.9-staging-beta2"]:
        post(crashd, session(f"s-{build}", build=build, status="crashed" if build == "0.9.9" else "exited"))
    post(crashd, {"session_id": "no-build", "started": (T0 - timedelta(days=1)).isoformat()})  # seen first
    builds = crashd.client.get("/api/builds?project=game", headers=crashd.admin).json()["builds"]
    assert [b["build"] for b in builds] == [
        "0.9.9-staging-beta2", "0.9.9-staging-beta10", "0.9.9", "0.9.10", "1.0", "", "nightly"]
    assert [b["crash_rate"] for b in builds] == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert builds[5]["first_seen"] == (T0 - timedelta(days=1)).isoformat()
    later = crashd.client.get("/api/builds?project=game&since=2999-01-01", headers=crashd.admin).json()
    assert later == {"builds": []}


@pytest.mark.parametrize("path, status", [
    ("/api/builds?project=game", 401),
    ("/api/builds/compare?project=game&base=1.0&target=1.1", 401),
])
def test_builds_api_needs_the_admin_token(crashd: Crashd, path: str, status: int) -> None:
    assert crashd.client.get(path).status_code == status
    assert crashd.client.get(path, headers={"Authorization": f"Bearer {crashd.key}"}).status_code == status


@pytest.mark.parametrize("query, status", [
    ("project=nope&base=1.0&target=1.1", 404),
    ("base=1.0&target=1.1", 400),
    ("project=game&base=1.0", 400),
    ("project=game&base=1.0&target=1.1&alpha=2", 400),
    ("project=game&base=1.0&target=1.1&min_sessions=many", 400),
])
def test_compare_query_errors(crashd: Crashd, query: str, status: int) -> None:
    response = crashd.client.get(f"/api/builds/compare?{query}", headers=crashd.admin)
    assert response.status_code == status
    assert "detail" in response.json()


def test_builds_query_errors(crashd: Crashd) -> None:
    assert crashd.client.get("/api/builds", headers=crashd.admin).status_code == 400
    # found by fuzzing: these were 500s (timedelta past datetime's range, SQLite OverflowError)
    too_far = crashd.client.get("/api/builds?project=game&since=999999d", headers=crashd.admin)
    assert too_far.status_code == 400 and "out of range" in too_far.json()["detail"]
    for ref in ("99999999999999999999", "%C2%B3"):
        assert crashd.client.get(f"/api/builds?project={ref}", headers=crashd.admin).status_code == 404
    assert crashd.client.get("/api/builds?project=nope", headers=crashd.admin).status_code == 404
    assert crashd.client.get("/api/builds?project=game&since=yesterday", headers=crashd.admin).status_code == 400
