"""The embedded default's database queue (workers/db_queue.py), the worker process that
`crashd serve` supervises (server/cli/supervisor.py), `crashd serve --workers N`, and the
group commit of uploads on SQLite (storage/group_commit.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from schemas.tables import Crash, utcnow
from server.app import create_app
from server.state import build_state
from storage import queries
from workers import jobs
from workers.db_queue import DatabaseJobQueue, DatabaseWorker

from conftest import REPO, Crashd, _reset_postgres, make_settings, serve_process
from minidump_writer import small_dump
from uploads import minidump_upload


@pytest.fixture(params=["sqlite", "postgres"])
def db_crashd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Crashd]:
    """crashd as `crashd serve` runs it without Redis: uploads wait in the crashes table."""
    from starlette.testclient import TestClient

    pg = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    settings = make_settings("sqlite-inprocess", tmp_path, None, None, database_url=pg)
    state = build_state(settings, database_queue=True)
    if pg:
        _reset_postgres(pg)
    assert isinstance(state.queue, DatabaseJobQueue)
    jobs.install_context(state.ctx)
    project = queries.create_project(state.ctx.engine, name="game")
    try:
        with TestClient(create_app(settings, state)) as client:
            yield Crashd(f"{request.param}-dbqueue", settings, state, client, project)
    finally:
        state.ctx.engine.dispose()
        jobs.install_context(None)


def upload(crashd: Crashd, tag: int, guid: str | None = None) -> str:
    body, ctype = minidump_upload(small_dump(tag), guid=guid or f"client-{tag}")
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                  content=body, headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    return response.text


def status(crashd: Crashd, crash_id: str) -> str:
    crash = queries.get_crash(crashd.state.ctx.engine, crash_id=crash_id)
    assert crash is not None
    return crash.status


def work(crashd: Crashd, **options: object) -> DatabaseWorker:
    worker = DatabaseWorker(crashd.state.ctx.engine, threading.Event(), poll_seconds=0.01)
    worker.run(burst=True, **options)
    return worker


def test_an_upload_waits_received_until_a_worker_takes_it(db_crashd: Crashd) -> None:
    crash_ids = [upload(db_crashd, tag) for tag in (1, 2, 3)]
    assert [status(db_crashd, c) for c in crash_ids] == ["received"] * 3  # nothing ran it yet
    worker = work(db_crashd)
    assert worker.jobs == 3
    for crash_id in crash_ids:
        crash = queries.get_crash(db_crashd.state.ctx.engine, crash_id=crash_id)
        assert crash is not None and crash.status == "processed" and crash.group_id is not None, crash


def test_version_says_the_database_is_the_queue(db_crashd: Crashd) -> None:
    assert db_crashd.client.get("/__version__").json()["queue"] == "database"


def test_max_jobs_leaves_the_rest_received_oldest_first(db_crashd: Crashd) -> None:
    crash_ids = [upload(db_crashd, tag) for tag in (4, 5, 6)]
    work(db_crashd, max_jobs=2)
    assert [status(db_crashd, c) for c in crash_ids] == ["processed", "processed", "received"]


def test_a_retry_waits_until_it_is_due(db_crashd: Crashd) -> None:
    crash_id = upload(db_crashd, 7)
    engine = db_crashd.state.ctx.engine
    with engine.begin() as conn:
        conn.execute(queries.CRASHES.update().where(queries.CRASHES.c.crash_id == crash_id)
                     .values(retry_after=utcnow() + timedelta(hours=1)))
    assert work(db_crashd).jobs == 0 and status(db_crashd, crash_id) == "received"
    with engine.begin() as conn:
        conn.execute(queries.CRASHES.update().where(queries.CRASHES.c.crash_id == crash_id)
                     .values(retry_after=utcnow() - timedelta(seconds=1)))
    assert work(db_crashd).jobs == 1 and status(db_crashd, crash_id) == "processed"


def test_two_workers_never_take_one_crash(db_crashd: Crashd) -> None:
    crash_ids = [upload(db_crashd, tag) for tag in range(10, 22)]
    engine = db_crashd.state.ctx.engine
    taken: list[str] = []
    lock = threading.Lock()

    def take_all() -> None:
        for crash_id in queries.due_received_ids(engine, limit=100):
            if queries.take_received(engine, crash_id=crash_id):
                with lock:
                    taken.append(crash_id)

    threads = [threading.Thread(target=take_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(crash_ids)  # each exactly once
    assert {status(db_crashd, c) for c in crash_ids} == {"processing"}


def test_enqueue_puts_a_processed_crash_back_but_not_one_in_processing(db_crashd: Crashd) -> None:
    done, busy = upload(db_crashd, 30), upload(db_crashd, 31)
    work(db_crashd)
    engine = db_crashd.state.ctx.engine
    assert queries.take_received(engine, crash_id=busy) is False  # processed: not received
    with engine.begin() as conn:
        conn.execute(queries.CRASHES.update().where(queries.CRASHES.c.crash_id == busy)
                     .values(status="processing"))
    db_crashd.state.queue.enqueue(done)
    db_crashd.state.queue.enqueue(busy)
    assert (status(db_crashd, done), status(db_crashd, busy)) == ("received", "processing")
    assert db_crashd.state.queue.is_pending(done)  # the sweeper leaves received crashes alone
    assert work(db_crashd).jobs == 1 and status(db_crashd, done) == "processed"


def test_group_commit_answers_every_upload_and_dedupes_within_a_batch(tmp_path: Path) -> None:
    """16 threads insert at once on SQLite: every crash is committed with its own answer, and
    uploads that share a fingerprint (a client's retries) store one crash, whichever batch
    they land in."""
    settings = make_settings("sqlite-inprocess", tmp_path, None, None)
    state = build_state(settings)
    engine = state.ctx.engine
    project = queries.create_project(engine, name="game")
    try:
        def insert(index: int) -> tuple[str, bool]:
            now = utcnow()
            crash_id = str(uuid.uuid4())
            crash = Crash(crash_id=crash_id, project_id=project.id, received_at=now,
                          updated_at=now, submitted_via="minidump", annotations_key=f"annotations/{crash_id}.json")
            fingerprint = f"retry-{index % 8}" if index < 32 else f"unique-{index}"
            return queries.insert_crash(engine, crash=crash, attachments=[], fingerprint=fingerprint,
                                        window=timedelta(hours=1))

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(insert, range(96)))
        created = [crash_id for crash_id, new in answers if new]
        assert len(created) == 8 + 64  # one per retried fingerprint, every unique one
        retried = {}
        for index, (crash_id, _new) in enumerate(answers[:32]):
            retried.setdefault(index % 8, set()).add(crash_id)
        assert all(len(ids) == 1 for ids in retried.values())  # every retry got the winner's id
        with engine.connect() as conn:
            stored = {row[0] for row in conn.execute(queries.CRASHES.select().with_only_columns(
                queries.CRASHES.c.crash_id))}
        assert stored == set(created)  # the losers' rows are gone
    finally:
        state.queue.close()
        engine.dispose()


def test_crashd_worker_without_redis_takes_crashes_from_the_database(db_crashd: Crashd) -> None:
    crash_ids = [upload(db_crashd, tag) for tag in (40, 41)]
    settings = db_crashd.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    env["CRASHD_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        env["CRASHD_DATABASE_URL"] = settings.database_url
    done = subprocess.run([sys.executable, "-m", "server.cli", "worker", "--burst"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [status(db_crashd, c) for c in crash_ids] == ["processed", "processed"]
    forked = subprocess.run([sys.executable, "-m", "server.cli", "worker", "--fork"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert forked.returncode == 2 and "CRASHD_REDIS_URL" in forked.stderr


def _post(url: str, tag: int) -> str:
    body, ctype = minidump_upload(small_dump(tag), guid=f"serve-{tag}-{uuid.uuid4()}")
    response = httpx.post(url, content=body, headers={"Content-Type": ctype}, timeout=30)
    assert response.status_code == 200, response.text
    return response.text.strip()


def _wait_processed(server_url: str, token: str, crash_ids: list[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    pending = set(crash_ids)
    while pending and time.monotonic() < deadline:
        for crash_id in list(pending):
            answer = httpx.get(f"{server_url}/api/crashes/{crash_id}", headers={"Authorization": f"Bearer {token}"})
            if answer.status_code == 200 and answer.json()["status"] == "processed":
                pending.discard(crash_id)
        time.sleep(0.2)
    assert not pending, f"not processed within {seconds} s: {pending}"


def _worker_pid(serve_pid: int) -> int:
    children = subprocess.run(["pgrep", "-P", str(serve_pid), "-f", "server.cli worker"],
                              capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children
    return int(children[0])


def test_serve_supervises_its_worker_process(tmp_path: Path) -> None:
    """`crashd serve` starts a worker process, starts another when it dies, and the worker
    ends with the server, even when the server is killed."""
    with serve_process(tmp_path / "data") as server:
        worker = _worker_pid(server.proc.pid)
        _wait_processed(server.url, server.admin_token, [_post(server.upload_url, 1)])
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "server.cli worker"],
                                   capture_output=True, text=True).stdout.split()
            if found and int(found[0]) != worker:
                break
            time.sleep(0.2)
        replacement = _worker_pid(server.proc.pid)
        assert replacement != worker
        _wait_processed(server.url, server.admin_token, [_post(server.upload_url, 2)])
        server.proc.kill()  # no clean stop: the worker must not outlive it
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(replacement):
            time.sleep(0.1)
        assert not _alive(replacement)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie has ended


def test_serve_with_two_web_processes_shares_one_database(tmp_path: Path) -> None:
    """`crashd serve --workers 2`: both web processes answer on one port, every upload is
    stored once and processed, and the counts add up."""
    with serve_process(tmp_path / "data", "--workers", "2") as server:
        assert "2 web processes" in server.banner, server.banner
        with ThreadPoolExecutor(8) as pool:
            crash_ids = list(pool.map(lambda tag: _post(server.upload_url, tag), range(40)))
        assert len(set(crash_ids)) == 40
        _wait_processed(server.url, server.admin_token, crash_ids, seconds=120)
        web = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(web) >= 3  # two web processes (and uvicorn's) plus the worker


def test_serve_with_two_worker_processes_processes_every_crash_once(tmp_path: Path) -> None:
    """`crashd serve --worker-processes 2`: two workers take crashes from the database, each
    crash is processed once, and both worker processes are supervised children."""
    with serve_process(tmp_path / "data", "--worker-processes", "2") as server:
        assert "2 worker processes on the database queue" in server.banner, server.banner
        workers = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "server.cli worker"],
                                 capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
        with ThreadPoolExecutor(8) as pool:
            crash_ids = list(pool.map(lambda tag: _post(server.upload_url, tag), range(60)))
        assert len(set(crash_ids)) == 60
        _wait_processed(server.url, server.admin_token, crash_ids, seconds=120)
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'crashd.db'}")
    try:
        with engine.connect() as conn:
            counts = dict(conn.execute(text("SELECT status, count(*) FROM crashes GROUP BY status")).all())
            grouped = conn.execute(text("SELECT sum(crash_count) FROM crash_groups")).scalar_one()
    finally:
        engine.dispose()
    assert counts == {"processed": 60} and grouped == 60  # counted once each, in one group or another


def test_the_group_commits_connection_is_held_between_batches_and_closed_by_dispose(tmp_path: Path) -> None:
    """storage/group_commit.py keeps one connection for its batches; dispose() closes it (the
    test suite makes hundreds of engines: their held files would add up)."""
    from storage.group_commit import _committers

    settings = make_settings("sqlite-inprocess", tmp_path, None, None)
    state = build_state(settings)
    engine = state.ctx.engine
    project = queries.create_project(engine, name="game")

    def insert(tag: str) -> None:
        now = utcnow()
        row = queries.crash_row(crash_id=str(uuid.uuid4()), project_id=project.id, received_at=now, updated_at=now,
                                submitted_via="minidump", annotations_key="")
        assert queries.insert_crash(engine, crash=row, attachments=[], fingerprint=tag,
                                    window=timedelta(hours=1))[1] is True

    insert("first")
    committer = _committers[engine]["crashes"]
    held = committer._conn
    assert held is not None and not held.closed
    insert("second")
    assert committer._conn is held  # the same connection for the next batch
    state.queue.close()
    engine.dispose()
    assert committer._conn is None and held.closed
    insert("after dispose")  # the engine still works: the next batch connects again
    assert committer._conn is not None and committer._conn is not held
    engine.dispose()
    assert committer._conn is None  # no file of the database stays open after dispose()
