"""The queue: RQ jobs run by a real `crashd worker` process, enqueue failures and the sweeper."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from conftest import REPO, Crashd, _crashd, clean_queue, make_settings
from minidump_writer import small_dump
from uploads import minidump_upload
from workers.queue import RQJobQueue, job_id
from workers.sweeper import sweep


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


def test_worker_without_redis_explains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    env["CRASHD_DATA_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "server.cli", "worker", "--burst"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "CRASHD_REDIS_URL" in done.stderr


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
