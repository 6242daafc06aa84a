"""The queue: RQ jobs run by a real `crashd worker` process, enqueue failures and the sweeper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from test_symbols_api import TINY_ID, tiny_sym

from workers.queue import RQJobQueue, job_id
from workers.sweeper import sweep

from conftest import REPO, Crashd, _crashd, clean_queue, make_settings
from minidump_writer import small_dump
from uploads import minidump_upload


def upload(crashd: Crashd, tag: int) -> str:
    body, ctype = minidump_upload(small_dump(tag), guid=f"client-{tag}")
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                  content=body, headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    return response.text


def test_upload_enqueues_rq_job_with_crash_id(rq_crashd: Crashd) -> None:
    crash_id = upload(rq_crashd, 1)
    redis = Redis.from_url(rq_crashd.settings.redis_url)
    job = Job.fetch(job_id(crash_id), connection=redis)
    assert job.id == f"process:{crash_id}"
    assert job.func_name == "workers.jobs.process_crash" and job.args == (crash_id,)
    assert Queue(rq_crashd.settings.queue_name, connection=redis).job_ids == [job.id]


@pytest.mark.parametrize("mode", [[], ["--fork"]], ids=["warm", "fork"])
def test_crashd_worker_process_runs_the_jobs(rq_crashd: Crashd, mode: list[str]) -> None:
    crash_ids = [upload(rq_crashd, tag) for tag in (2, 3, 4)]
    settings = rq_crashd.settings
    env = {**os.environ, "CRASHD_DATA_DIR": str(settings.data_dir), "CRASHD_REDIS_URL": settings.redis_url,
           "CRASHD_QUEUE_NAME": settings.queue_name, "CRASHD_DATABASE_URL": settings.effective_database_url
           .replace("postgresql+psycopg://", "postgresql://")}
    done = subprocess.run([sys.executable, "-m", "server.cli", "worker", "--burst", *mode], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for crash_id in crash_ids:
        crash = rq_crashd.crash(crash_id)
        assert crash["status"] == "processed", crash
        assert crash["processed"]["minidump"]["size"] == crash["size"]


@pytest.fixture(params=["sqlite", "postgres"])
def dead_queue_crashd(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str):
    """crashd whose Redis is down (nothing listens on port 1): enqueue fails for real."""
    pg = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    settings = make_settings("postgres-rq", tmp_path, pg, "redis://127.0.0.1:1/0",
                             sweeper_stuck_after_seconds=0)
    if pg is None:
        settings.database_url = None
    yield from _crashd(f"{request.param}-dead-redis", settings)


def test_failed_enqueue_keeps_the_upload_and_the_sweeper_recovers(dead_queue_crashd: Crashd, redis_url: str) -> None:
    crashd = dead_queue_crashd
    crash_id = upload(crashd, 10)  # 200 although Redis is down
    assert crashd.crash(crash_id)["status"] == "received"
    heartbeat = crashd.client.get("/__heartbeat__")
    assert heartbeat.status_code == 503 and heartbeat.json()["checks"]["queue"].startswith("error")

    assert sweep(crashd.state.ctx, crashd.state.queue) == []  # Redis still down: nothing lost
    good = crashd.settings.model_copy(update={"redis_url": redis_url, "queue_name": f"sweep-{uuid.uuid4().hex[:6]}"})
    queue = RQJobQueue(good)
    try:
        assert sweep(crashd.state.ctx, queue) == [crash_id]
        assert sweep(crashd.state.ctx, queue) == []  # already pending: not enqueued twice
        crashd.settings = good
        crashd.drain()
        assert crashd.crash(crash_id)["status"] == "processed"
    finally:
        clean_queue(queue.queue)
        queue.close()


def test_sweeper_requeues_stuck_crash_in_process(tmp_path: Path) -> None:
    settings = make_settings("sqlite-inprocess", tmp_path, None, None, sweeper_stuck_after_seconds=0)
    for crashd in _crashd("sqlite-inprocess", settings):
        crash_id = upload(crashd, 20)
        crashd.drain()
        from sqlalchemy import text

        with crashd.state.ctx.engine.begin() as conn:  # as if the process died before the job ran
            conn.execute(text("UPDATE crashes SET status='received', processed=NULL"))
        assert sweep(crashd.state.ctx, crashd.state.queue) == [crash_id]
        crashd.drain()
        assert crashd.crash(crash_id)["status"] == "processed"


def test_missing_blob_marks_crash_failed_with_reason(crashd: Crashd) -> None:
    from workers.jobs import process_crash

    crash_id = upload(crashd, 30)
    crashd.drain()
    for path in crashd.blob_files():
        if path.suffix == ".dmp":
            path.unlink()
    assert process_crash(crash_id)["status"] == "failed"  # the job function itself, run again
    crash = crashd.crash(crash_id)
    assert crash["status"] == "failed"
    assert crash["processing_error"].startswith("minidump blob missing")


# -- retries of infrastructure failures (issue 11 items 6 and 14) ----------------------------


def age(crashd: Crashd, crash_id: str, seconds: float) -> None:
    """Move the crash's last update back in time (as if its worker had been gone that long)."""
    from datetime import timedelta

    from sqlalchemy import update

    from schemas.tables import Crash, utcnow
    from storage.db import session

    with session(crashd.state.ctx.engine) as s:
        s.execute(update(Crash).where(Crash.crash_id == crash_id).values(updated_at=utcnow() - timedelta(seconds=seconds)))
        s.commit()


def attempts(crashd: Crashd, crash_id: str) -> int:
    from storage import queries

    crash = queries.get_crash(crashd.state.ctx.engine, crash_id=crash_id)
    assert crash is not None
    return crash.attempts


def kill_mid_job(crashd: Crashd, crash_id: str) -> None:
    """What a SIGKILL of the worker leaves: the crash `processing` since long ago and, on RQ, its
    job `started`; RQ's registry clean-up later reports it abandoned to the job's callback."""
    from rq.exceptions import AbandonedJobError
    from rq.job import JobStatus

    from storage import queries
    from workers.retries import on_job_failure

    queries.claim_crash(crashd.state.ctx.engine, crash_id=crash_id)
    age(crashd, crash_id, 3 * crashd.settings.job_timeout_seconds)
    job = Job.create("workers.jobs.process_crash", args=(crash_id,), id=job_id(crash_id),
                     connection=Redis.from_url(crashd.settings.redis_url or "redis://127.0.0.1:6379/15"))
    if crashd.settings.redis_url:
        job.set_status(JobStatus.STARTED)
        job.save()
        Queue(crashd.settings.queue_name, connection=job.connection).started_job_registry.add(job, 3600)
    on_job_failure(job, job.connection, AbandonedJobError, AbandonedJobError(), None)


def test_crash_of_a_killed_worker_is_retried_and_processed(crashd: Crashd) -> None:
    crashd.settings.retry_backoff_seconds = 0
    crash_id = upload(crashd, 40)
    crashd.drain()
    kill_mid_job(crashd, crash_id)
    assert crashd.crash(crash_id)["status"] == "processing"  # abandoned: not failed at once

    assert sweep(crashd.state.ctx, crashd.state.queue) == [crash_id]  # the dead job does not block it
    crash = crashd.crash(crash_id)  # the in-process worker may have started it already
    assert crash["status"] in ("received", "processing") and attempts(crashd, crash_id) == 1
    assert crash["processing_error"].startswith("the worker stopped before it finished")
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert (crash["status"], attempts(crashd, crash_id), crash["processing_error"]) == ("processed", 0, None)
    assert crash["group_id"] is not None


def test_crash_whose_worker_keeps_dying_fails_after_max_attempts(crashd: Crashd) -> None:
    crashd.settings.max_attempts, crashd.settings.retry_backoff_seconds = 3, 3600
    crash_id = upload(crashd, 41)
    crashd.drain()
    for attempt in (1, 2):
        kill_mid_job(crashd, crash_id)
        assert sweep(crashd.state.ctx, crashd.state.queue) == []  # its retry waits for the backoff
        crash = crashd.crash(crash_id)
        assert (crash["status"], attempts(crashd, crash_id)) == ("received", attempt)
        assert crash["processing_error"].endswith(f"attempt {attempt} of 3, retried later")
    kill_mid_job(crashd, crash_id)
    sweep(crashd.state.ctx, crashd.state.queue)
    crash = crashd.crash(crash_id)
    assert (crash["status"], attempts(crashd, crash_id)) == ("failed", 3)
    assert crash["processing_error"] == (
        "the worker stopped before it finished (killed, or cut off from the database); gave up after 3 attempts")


def test_a_retry_is_enqueued_once_its_backoff_is_over(crashd: Crashd) -> None:
    from sqlalchemy import update

    from schemas.tables import Crash
    from storage.db import session

    crashd.settings.retry_backoff_seconds = 3600
    crash_id = upload(crashd, 42)
    crashd.drain()
    kill_mid_job(crashd, crash_id)
    assert sweep(crashd.state.ctx, crashd.state.queue) == []
    with session(crashd.state.ctx.engine) as s:  # an hour later
        s.execute(update(Crash).where(Crash.crash_id == crash_id).values(retry_after=Crash.updated_at))
        s.commit()
    assert sweep(crashd.state.ctx, crashd.state.queue) == [crash_id]
    crashd.drain()
    assert crashd.crash(crash_id)["status"] == "processed"


def blob(root: Path, key: str, age_seconds: float, data: bytes = b"x") -> Path:
    import time

    path = root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


def test_sweeper_deletes_orphan_blobs_after_the_grace_period(crashd: Crashd) -> None:
    """An upload killed before its 200 leaves blobs without a crash row: deleted once older
    than CRASHD_ORPHAN_BLOB_GRACE_SECONDS; a crash's own blobs and young ones stay."""
    crashd.settings.orphan_blob_grace_seconds = 600
    crash_id = upload(crashd, 43)
    crashd.drain()
    root = crashd.settings.blob_dir
    kept = crashd.blob_files()
    assert len(kept) == 2  # the dump and the report (the annotations are in the row)
    for path in kept:
        os.utime(path, (0, 0))  # a crash's blobs stay however old they are
    orphan, young = str(uuid.uuid4()), str(uuid.uuid4())
    doomed = [blob(root, f"minidumps/2026-12-01/{orphan}.dmp", 700), blob(root, f"annotations/2026-12-01/{orphan}.json", 700),
              blob(root, f"attachments/2026-12-01/{orphan}/00-log.txt", 700),
              blob(root, "minidumps/2026-12-01/.tmp-abc.part", 700)]  # a write cut short
    alive = [blob(root, f"minidumps/2026-12-05/{young}.dmp", 10),  # an upload still being stored
             blob(root, "minidumps/2026-12-01/not-a-crash.bin", 700)]  # not ours: never touched
    sweep(crashd.state.ctx, crashd.state.queue)
    assert not any(p.exists() for p in doomed)
    assert all(p.exists() for p in alive + kept)
    assert crashd.crash(crash_id)["status"] == "processed"


def test_sweeper_deletes_abandoned_symbol_uploads(crashd: Crashd) -> None:
    """symupload v2: an upload created and PUT but never completed leaves its record and file in
    the symbols folder's .staging/ (so does a conversion killed midway, its scratch folder):
    deleted once older than CRASHD_ORPHAN_BLOB_GRACE_SECONDS; a young upload is left alone."""
    crashd.settings.orphan_blob_grace_seconds = 600
    base, token = f"/api/{crashd.project.id}/symbols/v1", crashd.upload_token
    staging = crashd.settings.symbols_dir / ".staging"
    keys = []
    for _ in range(2):
        key = crashd.client.post(f"{base}/uploads:create?key={token}").json()["uploadKey"]
        assert crashd.client.put(f"{base}/uploads/{key}", content=tiny_sym()).status_code == 200
        keys.append(key)
    abandoned = [staging / f"v2-{keys[0]}.json", Path(json.loads((staging / f"v2-{keys[0]}.json").read_text())["path"])]
    scratch = staging / "tmp-killed"
    scratch.mkdir()
    (scratch / "symbols.index").write_bytes(b"x")
    then = time.time() - 700
    for path in [*abandoned, scratch]:
        os.utime(path, (then, then))
    young = sorted(set(staging.iterdir()) - {*abandoned, scratch})
    assert len(young) == 2  # the other upload's record and file
    sweep(crashd.state.ctx, crashd.state.queue)
    assert sorted(staging.iterdir()) == young
    body = f'{{symbol_id: {{debug_file: "libtiny.so", debug_id: "{TINY_ID}"}}, symbol_upload_type: "BREAKPAD"}}'
    assert crashd.client.post(f"{base}/uploads/{keys[0]}:complete?key={token}", content=body).status_code == 404
    done = crashd.client.post(f"{base}/uploads/{keys[1]}:complete?key={token}", content=body)
    assert (done.status_code, done.json()) == (200, {"result": "OK"}), done.text


def test_blob_keys_are_listed_in_order_from_a_cursor(tmp_path: Path) -> None:
    """The orphan pass examines a batch of keys a tick and resumes after the last one."""
    from storage.blobs import FSBlobStore

    store = FSBlobStore(tmp_path)
    keys = ["annotations/2026-12-01/a.json", "attachments/2026-12-01/a.json", "attachments/2026-12-01/a/00-x",
            "attachments/2026-12-01/b/00-y", "minidumps/2026-12-01/a.dmp", "minidumps/2026-12-02/b.dmp"]
    for key in reversed(keys):
        store.put_bytes(key, b"1")
    store.check()  # a probe at the root is no key
    assert [k for k, _ in store.iter_keys()] == keys
    for index, key in enumerate(keys):
        assert [k for k, _ in store.iter_keys(after=key)] == keys[index + 1:]


def test_worker_started_while_redis_is_down_waits_instead_of_exiting(tmp_path: Path) -> None:
    """Issue 11 item 7: it waits (one log line, not one per attempt) and stops on SIGTERM.
    Resuming when Redis returns: tests/faults/test_worker_faults.py."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    env.update(CRASHD_DATA_DIR=str(tmp_path), CRASHD_REDIS_URL="redis://127.0.0.1:1/0", PYTHONUNBUFFERED="1")
    worker = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4)  # about four connection attempts
        assert worker.poll() is None, worker.communicate()[0]
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=15)[0]
    finally:
        worker.kill()
    assert worker.returncode == 0, output
    assert output.count("Redis unreachable") == 1, output


def test_two_queues_on_one_redis_keep_their_own_notify_and_triage_jobs(tmp_path: Path, redis_url: str) -> None:
    """RQ keeps a job under rq:job:<id> for every queue of a Redis database: with the bare ids
    "notify" and "triage-verify-1", a second deployment (or a second test process) sharing the
    Redis overwrote the first one's waiting job, whose queue then ran nothing."""
    from workers.triage_jobs import sessions_arrived, tick

    queues = []
    try:
        for name in ("a", "b"):
            settings = make_settings("postgres-rq", tmp_path / name, None, redis_url)
            queues.append(RQJobQueue(settings))
        for queue in queues:
            queue.enqueue_notify()
            sessions_arrived(None, queue, 1)  # on RQ it only enqueues: no context needed
            tick(None, queue)
        for queue in queues:
            jobs = [queue.queue.fetch_job(job) for job in queue.queue.job_ids]
            assert len(jobs) == 3, queue.queue.job_ids
            assert {job.origin for job in jobs if job is not None} == {queue.queue.name}
            assert sorted(job.func_name for job in jobs if job is not None) == [
                "workers.jobs.deliver_notifications", "workers.triage_jobs.periodic_job",
                "workers.triage_jobs.verify_job"]
    finally:
        for queue in queues:
            clean_queue(queue.queue)
            queue.close()


def test_retry_delay_doubles_up_to_an_hour_whatever_the_attempts(tmp_path: Path) -> None:
    """With CRASHD_MAX_ATTEMPTS set high, the 43rd attempt's 2 ** 42 x 30 s overflowed timedelta."""
    from datetime import timedelta

    from workers.retries import retry_delay

    settings = make_settings("sqlite-inprocess", tmp_path, None, None, retry_backoff_seconds=30)
    assert [retry_delay(settings, a) for a in (1, 2, 3)] == [timedelta(seconds=30), timedelta(seconds=60),
                                                             timedelta(seconds=120)]
    assert retry_delay(settings, 50) == retry_delay(settings, 1000) == timedelta(hours=1)
