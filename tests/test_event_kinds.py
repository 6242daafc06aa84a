"""Kinds of events (triage/kinds.py): what decides crash, hang, error and message; rules that
look at some kinds only; and, on both backends, what ingest stores, what the API shows and
which events open tickets or count in crash rates."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from triage.kinds import KINDS, kind_of_event, kind_of_minidump, level_of, most_severe
from triage.thresholds import GroupStats, RulesError, WindowStats, evaluate, parse_rules

from conftest import Crashd, _crashd, make_settings
from minidump_writer import small_dump
from uploads import minidump_upload

DAY = timedelta(hours=24)


def exception(handled: bool | None = None, mechanism: str = "generic", kind: str = "ValueError",
              function: str = "load_level") -> dict[str, Any]:
    value: dict[str, Any] = {"type": kind, "value": "bad input",
                             "stacktrace": {"frames": [{"function": "main"}, {"function": function}]}}
    if handled is not None:
        value["mechanism"] = {"type": mechanism, "handled": handled}
    return {"exception": {"values": [value]}}


# -- the decision -----------------------------------------------------------------------------


@pytest.mark.parametrize("event, kind", [
    ({"message": "level loaded", "level": "info"}, "message"),
    ({"logentry": {"formatted": "disk full"}, "level": "error"}, "message"),  # an error *message*: no exception
    ({"message": "it died", "level": "fatal"}, "crash"),
    ({**exception(handled=True), "level": "error"}, "error"),
    ({**exception(), "level": "error"}, "error"),  # no mechanism: a captured exception
    ({**exception(handled=False), "level": "error"}, "crash"),
    ({**exception(handled=True), "level": "fatal"}, "crash"),
    ({**exception(handled=False, mechanism="AppHang", kind="App Hanging")}, "hang"),
    ({**exception(handled=False, mechanism="ANR", kind="ApplicationNotResponding")}, "hang"),
    ({**exception(handled=True, mechanism="watchdog_termination", kind="WatchdogTermination")}, "hang"),
    ({"message": "main thread stuck", "tags": {"hang": "1"}}, "hang"),
    ({"message": "stuck", "extra": {"hang_reason": "frame took 30 s"}}, "hang"),
    ({"message": "not stuck", "tags": {"hang": "0"}}, "message"),
    ({"exception": {"values": [{"type": "Cause"}, {"type": "Err", "mechanism": {"handled": False}}]}}, "crash"),
    ({"exception": [{"type": "OldShape"}]}, "error"),  # a bare list of exceptions
    ({"exception": "garbage", "level": ["odd"]}, "message"),
    ({}, "message"),
])
def test_kind_of_event(event: dict[str, Any], kind: str) -> None:
    assert kind_of_event(event) == kind


@pytest.mark.parametrize("raw, level", [
    ("fatal", "fatal"), ("ERROR", "error"), ("warn", "warning"), ("warning", "warning"), ("info", "info"),
    ("debug", "debug"), ("critical", "fatal"), (3, "fatal"), (-1, "debug"), (None, "error"), ("loud", "error"),
    (True, "error"), (2.5, "error"),
])
def test_level_of(raw: Any, level: str) -> None:
    assert level_of({"level": raw} if raw is not None else {}) == level


def test_kind_of_minidump() -> None:
    assert kind_of_minidump({"ver": "1.0"}) == "crash"
    assert kind_of_minidump({"Hang": "1"}) == "hang" and kind_of_minidump({"hang_reason": "watchdog"}) == "hang"
    assert kind_of_minidump({"hang": "false"}) == "crash"
    assert kind_of_minidump({}, exception(handled=False, mechanism="AppHang")) == "hang"
    assert kind_of_minidump({}, {"message": "x", "level": "info"}) == "crash"  # a dump is never a message


def test_most_severe() -> None:
    assert [most_severe(a, b) for a, b in [("message", "crash"), ("error", "hang"), ("message", "error"),
                                           ("crash", "hang"), ("hang", "hang"), ("odd", "message")]] == [
        "crash", "hang", "error", "crash", "hang", "message"]


# -- rules ----------------------------------------------------------------------------------


def rules_text(**fields: object) -> str:
    base: dict[str, object] = {"name": "r", "window": "24h", "min_testers": 3, "priority": "P1", **fields}
    return "[[rule]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in base.items())


def test_rules_look_at_crashes_and_hangs_unless_they_say_otherwise() -> None:
    [default] = parse_rules(rules_text())
    [errors] = parse_rules(rules_text(kinds=["error", "error", "message"]))
    assert default.kinds == ("crash", "hang") and errors.kinds == ("error", "message")
    numbers = {DAY: WindowStats(5, 9, ("1.0",))}
    fired = {kind: ([f.rule.name for f in evaluate([default], GroupStats("game", numbers, kind))],
                    [f.rule.name for f in evaluate([errors], GroupStats("game", numbers, kind))]) for kind in KINDS}
    assert fired == {"crash": (["r"], []), "hang": (["r"], []), "error": ([], ["r"]), "message": ([], ["r"]),
                     "feedback": ([], [])}
    assert evaluate([errors], GroupStats("game", numbers, "error"))[0].reason.endswith("kinds error, message")


@pytest.mark.parametrize("kinds", [["warning"], [], "crash", [1]])
def test_a_bad_kinds_field_is_refused_like_any_bad_field(kinds: object) -> None:
    with pytest.raises(RulesError, match=r"rule #1 \('r'\): field 'kinds': must be a non-empty list of crash, hang, "
                                         r"error, message"):
        parse_rules(rules_text(kinds=kinds))


# -- end to end on both backends ------------------------------------------------------------


def send_event(crashd: Crashd, event: dict[str, Any], *, path: str = "envelope") -> str:
    """Post one Sentry event (an envelope, or /store/'s JSON body); returns its crash id."""
    event = {"event_id": uuid.uuid4().hex, "release": "game@1.0", **event}
    if path == "envelope":
        payload = json.dumps(event).encode()
        body = (json.dumps({"event_id": event["event_id"]}).encode() + b"\n"
                + json.dumps({"type": "event", "length": len(payload)}).encode() + b"\n" + payload + b"\n")
        content_type = "application/x-sentry-envelope"
    else:
        body, content_type = json.dumps(event).encode(), "application/json"
    response = crashd.client.post(f"/api/{crashd.project.id}/{path}/?sentry_key={crashd.key}", content=body,
                                  headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    return str(uuid.UUID(response.json()["id"]))


def crash_of_event(crashd: Crashd, event_id: str) -> dict[str, Any]:
    found = [c for c in groups_crashes(crashd) if c["annotations"].get("sentry.event_id") == event_id.replace("-", "")]
    assert len(found) == 1, event_id
    return found[0]


def groups_crashes(crashd: Crashd) -> list[dict[str, Any]]:
    out = []
    for group in crashd.client.get("/api/groups?project=game", headers=crashd.admin).json()["groups"]:
        page = crashd.client.get(f"/api/groups/{group['id']}", headers=crashd.admin).json()
        out += [crashd.crash(c["crash_id"]) for c in page["crashes"]]
    return out


def send_dump(crashd: Crashd, tester: str, **fields: str) -> str:
    body, content_type = minidump_upload(small_dump(1), tester_id=tester, ver="game@1.0", **fields)
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}", content=body,
                                  headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    return response.text


def tickets(crashd: Crashd) -> list[dict[str, Any]]:
    return crashd.client.get("/api/tickets?project=game", headers=crashd.admin).json()["tickets"]


def groups(crashd: Crashd, query: str = "") -> dict[str, dict[str, Any]]:
    found = crashd.client.get(f"/api/groups?project=game{query}", headers=crashd.admin).json()["groups"]
    return {g["signature"]: g for g in found}


def test_five_testers_sending_a_message_open_no_ticket_and_a_crash_does(crashd: Crashd) -> None:
    for tester in range(5):
        send_event(crashd, {"message": "level loaded", "level": "info", "user": {"id": f"tester-{tester}"}},
                   path="store" if tester % 2 else "envelope")
    crashd.drain()
    assert tickets(crashd) == []
    message = groups(crashd)["level loaded"]
    assert (message["kind"], message["tester_count"]) == ("message", 5)
    page = crashd.client.get(f"/api/groups/{message['id']}", headers=crashd.admin).json()
    assert page["kind"] == "message"
    assert {(c["kind"], c["level"]) for c in page["crashes"]} == {("message", "info")}
    crash = crashd.crash(page["crashes"][0]["crash_id"])
    assert (crash["kind"], crash["level"], crash["status"]) == ("message", "info", "processed")

    dumps = [send_dump(crashd, f"tester-{tester}") for tester in range(5)]
    crashd.drain()
    assert {(crashd.crash(c)["kind"], crashd.crash(c)["level"]) for c in dumps} == {("crash", "fatal")}
    [ticket] = tickets(crashd)
    dump_group = crashd.crash(dumps[0])["group_id"]
    assert (ticket["group_id"], ticket["priority"], ticket["rule"]) == (dump_group, "P0", "widespread")
    assert [g["kind"] for g in groups(crashd, "&kind=crash").values()] == ["crash"]
    assert list(groups(crashd, "&kind=message")) == ["level loaded"]
    assert crashd.client.get("/api/groups?kind=fatal", headers=crashd.admin).status_code == 400


def test_unhandled_is_a_crash_handled_an_error_and_the_group_takes_the_worst(crashd: Crashd) -> None:
    handled = send_event(crashd, {**exception(handled=True), "level": "error"})
    crashd.drain()
    [group] = groups(crashd).values()
    assert (group["signature"], group["kind"]) == ("load_level", "error")
    assert (crash_of_event(crashd, handled)["kind"], crash_of_event(crashd, handled)["level"]) == ("error", "error")

    unhandled = send_event(crashd, {**exception(handled=False), "level": "error"})
    crashd.drain()
    assert crash_of_event(crashd, unhandled)["kind"] == "crash"
    [group] = groups(crashd).values()
    assert (group["crash_count"], group["kind"]) == (2, "crash")  # one unhandled one makes it a crash group
    send_event(crashd, {**exception(handled=True), "level": "warning"})
    crashd.drain()
    assert groups(crashd)["load_level"]["kind"] == "crash"  # and it stays one

    hang = send_event(crashd, {**exception(handled=False, mechanism="AppHang", kind="App Hanging"), "level": "error"})
    crashd.drain()
    assert crash_of_event(crashd, hang)["kind"] == "hang"
    hang_dump = send_dump(crashd, "tester-9", hang="1")
    crashd.drain()
    assert crashd.crash(hang_dump)["kind"] == "hang"
    assert groups(crashd)[crashd.crash(hang_dump)["signature"]]["kind"] == "hang"


@pytest.fixture
def error_rules(backend: str, services: tuple[str | None, str | None], tmp_path: Path) -> Iterator[Crashd]:
    """crashd whose only rule opens a P1 ticket for handled errors that 3 testers hit."""
    path = tmp_path / "rules.toml"
    path.write_text(rules_text(name="errors", min_testers=3, kinds=["error"]))
    pg, redis = services
    yield from _crashd(backend, make_settings(backend, tmp_path, pg, redis, rules_file=path))


def test_a_rule_on_errors_fires_on_errors_only(error_rules: Crashd) -> None:
    crashd = error_rules
    for tester in range(3):
        send_event(crashd, {**exception(handled=False), "user": {"id": f"tester-{tester}"}})
        send_event(crashd, {"message": "low memory", "level": "warning", "user": {"id": f"tester-{tester}"}})
        send_dump(crashd, f"tester-{tester}")
    crashd.drain()
    assert tickets(crashd) == []  # crashes and messages: the rule looks at errors only
    for tester in range(3):
        send_event(crashd, {**exception(handled=True, function="save_game"), "user": {"id": f"tester-{tester}"}},
                   path="store")
    crashd.drain()
    by_kind = {g["kind"]: g for g in groups(crashd).values()}
    assert set(by_kind) == {"crash", "error", "message"}
    [ticket] = tickets(crashd)
    assert (ticket["group_id"], ticket["priority"], ticket["rule"]) == (by_kind["error"]["id"], "P1", "errors")


def test_a_message_does_not_raise_the_crash_rate(crashd: Crashd) -> None:
    sessions = [{"session_id": f"s{n}", "tester_id": f"tester-{n}", "build": "game@1.0", "status": "exited",
                 "started": "2026-03-01T12:00:00Z"} for n in range(4)]
    response = crashd.client.post(f"/api/{crashd.project.id}/sessions/?sentry_key={crashd.key}", json=sessions)
    assert response.status_code == 200, response.text
    for level in ("info", "warning"):
        send_event(crashd, {"message": f"a {level} line", "level": level})
    send_event(crashd, {**exception(handled=True), "level": "error"})
    crashd.drain()

    def build() -> dict[str, Any]:
        rows = crashd.client.get("/api/builds?project=game", headers=crashd.admin).json()["builds"]
        return {r["build"]: r for r in rows}["game@1.0"]

    assert (build()["sessions"], build()["crashes"], build()["crash_rate"]) == (4, 0, 0.0)
    compare = crashd.client.get("/api/builds/compare?project=game&base=game@0.9&target=game@1.0",
                                headers=crashd.admin).json()
    assert compare["groups"] == []  # no crash group, only messages and errors
    send_dump(crashd, "tester-1")
    crashd.drain()
    assert build()["crashes"] == 1
    compare = crashd.client.get("/api/builds/compare?project=game&base=game@0.9&target=game@1.0",
                                headers=crashd.admin).json()
    assert [(g["target_crashes"], g["target_rate"]) for g in compare["groups"]] == [(1, 0.25)]
