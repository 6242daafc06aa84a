"""The processing job on both backends: real corpus dumps, with and without symbols."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job

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


def test_job_time_limit_is_retried_then_failed_with_the_reason(crashd: Crashd, redis_url: str) -> None:
    """A job killed by RQ's time limit is an infrastructure failure (issue 11 item 6): RQ's
    on_failure callback sends the crash back for a retry, and marks it failed at
    CRASHD_MAX_ATTEMPTS, the reason in words (no exception text)."""
    from rq.timeouts import JobTimeoutException

    from storage import queries
    from workers.retries import on_job_failure

    crashd.settings.max_attempts, crashd.settings.retry_backoff_seconds = 2, 3600
    crash_id = upload(crashd, require_corpus().joinpath(SEGV, f"{SEGV}.dmp").read_bytes())
    crashd.drain()
    job = Job.create("workers.jobs.process_crash", args=(crash_id,), connection=Redis.from_url(redis_url))
    timeout = JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")
    on_job_failure(job, job.connection, JobTimeoutException, timeout, None)
    assert crashd.crash(crash_id)["status"] == "processed"  # a late report about a finished job: ignored
    for status in ("received", "failed"):
        queries.claim_crash(crashd.state.ctx.engine, crash_id=crash_id)  # the job runs, and is killed
        on_job_failure(job, job.connection, JobTimeoutException, timeout, None)
        crash = crashd.crash(crash_id)
        assert crash["status"] == status and crash["processing_error"].startswith(
            "processing ran past the job time limit (CRASHD_JOB_TIMEOUT_SECONDS)")
    assert crash["processing_error"].endswith("gave up after 2 attempts")
    assert "Exception" not in crash["processing_error"] and "1 seconds" not in crash["processing_error"]


def block_reports(crashd: Crashd) -> "Path":
    """Make every report write fail in the blob store, as on a full disk: a file where the
    folder processed/ goes (root ignores permissions; this fails for root too)."""
    blocker = crashd.settings.blob_dir / "processed"
    shutil.rmtree(blocker, ignore_errors=True)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")
    return blocker


def test_crash_whose_report_cannot_be_stored_is_retried_not_processed(crashd: Crashd) -> None:
    """Issue 11 item 9: with the blob store full, a crash used to end `processed` without a
    signature or group. It goes back for a retry and is processed once the store works."""
    crashd.settings.retry_backoff_seconds = 0
    dump = require_corpus().joinpath(SEGV, f"{SEGV}.dmp").read_bytes()
    blocker = block_reports(crashd)
    crash_id = upload(crashd, dump)
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "received" and crash["signature"] is None and crash["group_id"] is None
    assert crash["processing_error"] == ("ReportRule: the blob store could not read or write a blob (disk full or "
                                         "unavailable); attempt 1 of 5, retried later")
    blocker.unlink()
    from workers.sweeper import sweep

    assert sweep(crashd.state.ctx, crashd.state.queue) == [crash_id]
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed" and crash["signature"] and crash["group_id"] is not None
    assert crash["processing_error"] is None


def test_crash_without_a_report_is_failed_with_notes_in_words(crashd: Crashd) -> None:
    """A rule that fails on the dump itself (not the infrastructure) leaves no report: the
    crash is failed at once, not `processed` without a signature, and the note says in words
    which step failed (the exception text goes to the log only)."""
    from workers.pipeline import run_pipeline
    from workers.rules import DEFAULT_RULES, ReportRule

    class ChokingReportRule(ReportRule):
        def action(self, ctx, state) -> None:
            raise ValueError("frame 7 points at 0xdeadbeef")

    rules = tuple(ChokingReportRule() if isinstance(r, ReportRule) else r for r in DEFAULT_RULES)
    crash_id = upload(crashd, require_corpus().joinpath(SEGV, f"{SEGV}.dmp").read_bytes())
    crashd.drain()
    assert run_pipeline(crashd.state.ctx, crash_id, rules)["status"] == "failed"
    crash = crashd.crash(crash_id)
    assert crash["status"] == "failed"
    assert crash["processing_error"] == "no report could be built from this crash (the notes say which step failed)"
    assert "ChokingReportRule could not build the report (the worker log has the error)" in crash["processed"]["notes"]
    assert not any("0xdeadbeef" in note or "ValueError" in note for note in crash["processed"]["notes"])
