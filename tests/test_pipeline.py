"""The processing job on both backends: real corpus dumps, with and without symbols."""

from __future__ import annotations

import shutil

import pytest
from rq.job import Job
from redis import Redis

from conftest import Crashd, require_corpus
from uploads import minidump_upload

SEGV = "linux-x64-generated-crashpad-segv-O0"


def upload(crashd: Crashd, dump: bytes, **fields: str) -> str:
    body, ctype = minidump_upload(dump, **fields)
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                  content=body, headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    return response.text


def test_processed_crash_with_symbols(crashd: Crashd) -> None:
    case = require_corpus() / SEGV
    shutil.copytree(case / "symbols", crashd.settings.symbols_dir)
    crash_id = upload(crashd, (case / f"{SEGV}.dmp").read_bytes(), prod="crashme", ver="1.0.0")
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed", crash
    summary = crash["processed"]
    assert summary["crash_reason"] == "SIGSEGV / SEGV_MAPERR" and summary["crash_address"] == "0x0000000000000045"
    assert [f["function"] for f in summary["top_frames"][:5]] == ["crash_here", "level2", "level2", "level2", "level1"]
    assert "crashme/B19A4795B226ABBD7EE6DBD76B7952480" in summary["loaded_symbols"]
    walk = crash["stackwalk"]
    frames = walk["crashing_thread"]["frames"]
    assert (frames[0]["function"], frames[0]["line"], frames[0]["trust"]) == ("crash_here", 43, "context")
    assert {f["trust"] for f in frames[1:8]} == {"cfi"}
    assert walk["system_info"]["os"] == "Linux" and walk["thread_count"] == len(walk["threads"])


def test_processed_crash_without_symbols_lists_missing(crashd: Crashd) -> None:
    case = require_corpus() / SEGV
    crash_id = upload(crashd, (case / f"{SEGV}.dmp").read_bytes())
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed"
    assert "crashme/B19A4795B226ABBD7EE6DBD76B7952480" in crash["processed"]["missing_symbols"]
    top = crash["stackwalk"]["crashing_thread"]["frames"][0]
    assert top["function"] is None and top["missing_symbols"] is True and top["module"] == "crashme"


@pytest.mark.parametrize("case", ["malformed-rust-invalid-range", "malformed-rust-invalid-record-count"])
def test_malformed_corpus_dumps_are_processed_with_notes(crashd: Crashd, case: str) -> None:
    dump = next((require_corpus() / case).glob("*.dmp")).read_bytes()
    crash_id = upload(crashd, dump)
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed"
    assert crash["processed"]["notes"], crash["processed"]


def test_upload_annotations_win_over_annotations_in_the_dump(crashd: Crashd) -> None:
    case = require_corpus() / "mac-x64-rust-simple-crashpad"
    dump = next(case.glob("*.dmp")).read_bytes()
    from symbolicator.minidump import read_minidump

    inside = read_minidump(dump).annotations
    assert inside, "this corpus dump carries Crashpad annotations"
    key = next(iter(inside))
    crash_id = upload(crashd, dump, **{key: "from-the-form"})
    crashd.drain()
    annotations = crashd.crash(crash_id)["processed"]["annotations"]
    assert annotations[key] == "from-the-form"
    assert all(annotations[k] == v for k, v in inside.items() if k != key)


def test_time_limit_gives_partial_result_and_note(crashd: Crashd) -> None:
    crashd.settings.job_timeout_seconds = 0  # every deadline is already past
    case = require_corpus() / SEGV
    crash_id = upload(crashd, (case / f"{SEGV}.dmp").read_bytes())
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed"
    notes = [n for t in crash["stackwalk"]["threads"] for n in t["notes"]]
    assert any("time limit" in n for n in notes)


def test_rq_failure_callback_marks_the_crash_failed(crashd: Crashd, redis_url: str) -> None:
    """A job killed by RQ's time limit must not stay `processing` forever (the sweeper would
    retry it): RQ's on_failure callback marks it failed with the reason."""
    from rq.timeouts import JobTimeoutException

    from workers.pipeline import mark_timed_out

    crash_id = upload(crashd, require_corpus().joinpath(SEGV, f"{SEGV}.dmp").read_bytes())
    crashd.drain()
    job = Job.create("workers.jobs.process_crash", args=(crash_id,), connection=Redis.from_url(redis_url))
    mark_timed_out(job, job.connection, JobTimeoutException, JobTimeoutException("Task exceeded maximum timeout value (1 seconds)"), None)
    crash = crashd.crash(crash_id)
    assert crash["status"] == "failed" and "JobTimeoutException" in crash["processing_error"]
