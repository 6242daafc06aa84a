"""The real sentry-sdk pointed at crashd's DSN (tests/clients/sentry_sdk_client.py, one
subprocess per scenario: sentry_sdk.init() is process-global), on both backends: each event
lands as a crash and GET /api/groups?project= shows its group; sessions feed crash rates; an
envelope the SDK serialized (tests/clients/*.envelope) replayed gzip-compressed."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import sentry_sdk
from sqlalchemy import select

from schemas.tables import Crash, GameSession
from server.cli.projects import project_urls

from conftest import REPO, Crashd, LiveServer
from minidump_writer import small_dump

CLIENT = Path(__file__).parent / "clients" / "sentry_sdk_client.py"
RECORDED = Path(__file__).parent / "clients" / "sentry-python-2.75-exception.envelope"


def run_client(live: LiveServer, scenario: str, *args: str) -> None:
    dsn = project_urls(live.crashd.settings, live.crashd.project, live.url)["dsn"]
    assert dsn == f"http://{live.crashd.key}@127.0.0.1:{live.port}/{live.crashd.project.id}"
    done = subprocess.run([sys.executable, str(CLIENT), scenario, str(dsn), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def crashes(crashd: Crashd) -> list[Crash]:
    with crashd.state.ctx.engine.connect() as conn:
        return [Crash.model_validate(dict(r._mapping)) for r in conn.execute(select(Crash.__table__))]


def groups(crashd: Crashd) -> list[tuple[str, int]]:
    body = crashd.client.get(f"/api/groups?project={crashd.project.name}", headers=crashd.admin).json()
    return [(g["signature"], g["crash_count"]) for g in body["groups"]]


def processed_crash(crashd: Crashd) -> dict:
    crashd.drain()
    [crash] = crashes(crashd)
    detail = crashd.crash(crash.crash_id)
    assert detail["status"] == "processed", detail
    return detail


def test_capture_exception(live: LiveServer) -> None:
    run_client(live, "exception")
    detail = processed_crash(live.crashd)
    assert (detail["build"], detail["tester_id"], detail["submitted_via"]) == ("game@4.2", "tester-sdk", "envelope")
    annotations = detail["annotations"]
    assert annotations["sentry.tags.map"] == "dust" and annotations["sentry.environment"] == "qa"
    assert annotations["sentry.exception.type"] == "ZeroDivisionError"
    assert annotations["sentry.sdk.name"] == "sentry.python"
    frames = [f["function"] for f in detail["processed"]["top_frames"]]
    assert frames == ["load_level", "start_game", "exception"]  # the traceback: raise up to the try
    assert detail["processed"]["crash_reason"] == "ZeroDivisionError: division by zero"
    assert groups(live.crashd) == [("load_level", 1)]


def test_capture_message(live: LiveServer) -> None:
    run_client(live, "message")
    detail = processed_crash(live.crashd)
    assert detail["annotations"]["sentry.message"] == "the level took more than 30 s to load"
    assert detail["annotations"]["sentry.level"] == "warning"
    assert groups(live.crashd) == [("the level took more than 30 s to load", 1)]


def test_envelope_with_minidump_attachment(live: LiveServer, tmp_path: Path) -> None:
    dump = small_dump(77)
    (tmp_path / "crash.dmp").write_bytes(dump)
    run_client(live, "minidump", str(tmp_path / "crash.dmp"))
    crashd = live.crashd
    detail = processed_crash(crashd)
    assert detail["minidump"]["size"] == len(dump) and detail["processed"]["minidump"]["size"] == len(dump)
    assert (detail["build"], detail["tester_id"]) == ("game@4.2", "tester-sdk")
    assert detail["annotations"]["sentry.event_id"] == "0123456789abcdef0123456789abcdef"
    assert sorted(a["name"] for a in detail["attachments"]) == ["__sentry-event", "game.log"]
    stored = crashd.client.get(f"/api/crashes/{detail['crash_id']}/minidump", headers=crashd.admin)
    assert stored.content == dump
    assert groups(crashd) == [(detail["signature"], 1)]


def test_sessions_with_release_and_auto_session_tracking(live: LiveServer) -> None:
    run_client(live, "sessions")
    with live.crashd.state.ctx.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(GameSession.__table__))]
    single = [r for r in rows if not r["session_id"].startswith("agg-")]
    aggregated = [r for r in rows if r["session_id"].startswith("agg-")]
    assert [(r["build"], r["tester_id"], r["status"]) for r in single] == [("game@4.2", "tester-sdk", "exited")]
    assert len(aggregated) == 3 and {(r["build"], r["status"]) for r in aggregated} == {("game@4.2", "exited")}
    assert crashes(live.crashd) == []
    builds = live.crashd.client.get(f"/api/builds?project={live.crashd.project.name}", headers=live.crashd.admin)
    assert builds.status_code == 200 and "game@4.2" in builds.text


def test_recorded_envelope_replayed_with_gzip(crashd: Crashd) -> None:
    recorded = RECORDED.read_bytes()
    header = json.loads(recorded.split(b"\n", 1)[0])
    assert header["trace"]["release"] == "game@4.2"  # what sentry-sdk 2.75 wrote
    response = crashd.client.post(f"/api/{crashd.project.id}/envelope/?sentry_key={crashd.key}",
                                  content=gzip.compress(recorded),
                                  headers={"Content-Type": "application/x-sentry-envelope", "Content-Encoding": "gzip"})
    assert (response.status_code, response.json()) == (200, {"id": header["event_id"]})
    detail = processed_crash(crashd)
    assert detail["processed"]["signature"] == "load_level"
    assert groups(crashd) == [("load_level", 1)]


def test_sdk_envelope_round_trip_parses_like_relay() -> None:
    """sentry-sdk's own deserializer reads the recorded file the way our parser does."""
    from server.ingest.envelope import parse_envelope

    theirs = sentry_sdk.envelope.Envelope.deserialize(RECORDED.read_bytes())
    ours = parse_envelope(RECORDED.read_bytes())
    assert [i.type for i in theirs.items] == [i.type for i in ours.items] == ["event"]
    assert theirs.items[0].get_event() == ours.items[0].json
