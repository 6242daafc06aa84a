"""The app's own errors go to CRASHD_SENTRY_DSN through sentry-sdk (a real SDK, a real socket);
the router's own 404 and 405 under /api/ are JSON like every other API error."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import brotli
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from schemas.settings import Settings
from server.app import create_app
from server.caches import Credentials, ProjectKeys
from server.state import ServerState
from workers import jobs
from workers.queue import make_queue

from conftest import ADMIN_TOKEN, Crashd, LiveServer, ServeProcess, _crashd, free_port, make_settings, serve_process
from minidump_writer import small_dump
from uploads import ingest_requests, minidump_upload


class Recorder(http.server.BaseHTTPRequestHandler):
    """Stores every body POSTed to it (decompressed), as a Sentry server would receive it."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        elif self.headers.get("Content-Encoding") == "br":  # sentry-sdk's choice when brotli is installed
            body = brotli.decompress(body)
        Recorder.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_internal_error_is_reported_to_sentry_dsn(tmp_path: Path) -> None:
    sink = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        with serve_process(tmp_path, CRASHD_SENTRY_DSN=f"http://publickey@127.0.0.1:{sink.server_port}/1") as serve:
            _break_database_and_get_500(serve, tmp_path)
        assert any(b"OperationalError" in b for b in Recorder.bodies)
    finally:
        sink.shutdown()


def _break_database_and_get_500(serve: ServeProcess, tmp_path: Path) -> None:
    body, ctype = minidump_upload(small_dump(1))
    crash_id = httpx.post(serve.upload_url, content=body, headers={"Content-Type": ctype}).text
    with sqlite3.connect(tmp_path / "crashd.db") as db:  # break the database under the server
        db.execute("ALTER TABLE attachments RENAME TO attachments_gone")
    response = httpx.get(f"{serve.url}/api/crashes/{crash_id}", headers={"Authorization": f"Bearer {serve.admin_token}"})
    assert response.status_code == 500
    assert "Traceback" not in response.text
    deadline = time.monotonic() + 15
    while not any(b"OperationalError" in b for b in Recorder.bodies):
        assert time.monotonic() < deadline, "no error event reached the Sentry DSN"
        time.sleep(0.1)



def test_router_errors_under_api_are_json(crashd: Crashd) -> None:
    """Found by fuzzing against /api/openapi.json: a path no /api route matches (``/api/tickets/abc``
    for ``{ticket_id:int}``, a negative id) was Starlette's text/plain "Not Found", where the
    document promises ``{"detail": ...}``."""
    for path in ("/api/tickets/abc", "/api/groups/-1", "/api/no-such-thing"):
        response = crashd.client.get(path, headers=crashd.admin)
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"}), path
    wrong_method = crashd.client.get(f"/api/{crashd.project.id}/minidump/")
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"detail": "Method Not Allowed"})
    assert wrong_method.headers["allow"] == "POST"
    elsewhere = crashd.client.get("/no-such-page")  # outside /api/: Starlette's plain text, as before
    assert (elsewhere.status_code, elsewhere.text) == (404, "Not Found")
    assert elsewhere.headers["content-type"].startswith("text/plain")


# -- a dependency down or hung: 503 within seconds (issue 11, items 8 and 13) ----------------


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers a byte: a
    hung PostgreSQL or Redis as a client sees it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """app served by uvicorn on a loopback port (real sockets: a dropped connection shows)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def unreachable_app(tmp_path: Path, database_port: int, redis_port: int | None = None, **extra: object) -> Starlette:
    """crashd whose PostgreSQL (and Redis, when given) listens on a port that never answers
    usefully; no migration is tried, so the app starts as a running server would be found."""
    settings = Settings(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, sweeper_interval_seconds=3600,
                        database_url=f"postgresql://postgres@127.0.0.1:{database_port}/crashd",
                        redis_url=f"redis://127.0.0.1:{redis_port}/0" if redis_port else None,
                        db_connect_timeout_seconds=2, redis_socket_timeout_seconds=0.5, **extra)
    ctx = jobs.build_context(settings)
    (settings.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
    state = ServerState(settings, ctx, make_queue(settings), ADMIN_TOKEN, settings.data_dir / "tmp",
                        ProjectKeys(ctx.engine), credentials=Credentials(ctx.engine, 5.0))
    return create_app(settings, state)


def test_every_ingest_path_answers_503_when_postgresql_is_down(tmp_path: Path) -> None:
    """Issue 11 item 8: with PostgreSQL down (a closed port), each ingest path answered 500
    once the project-key cache had expired. Now 503 + Retry-After in the endpoint's words."""
    with TestClient(unreachable_app(tmp_path, free_port())) as client:
        for path, body, headers in ingest_requests():
            response = client.post(path, content=body, headers=headers)
            assert (response.status_code, response.headers.get("retry-after")) == (503, "60"), (path, response.text)
            if path.startswith("/submit"):
                assert response.text == "Discarded=storage_unavailable\n"
            else:
                assert response.json() == {"detail": "storage_unavailable"}, path
        read = client.get("/api/crashes/1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert (read.status_code, read.json()) == (503, {"detail": "storage_unavailable"})  # an outage, not a bug


def test_a_large_refused_upload_gets_its_answer(tmp_path: Path) -> None:
    """The 503 comes after the body is read to its end: answering while a client still sends
    20 MB and closing made the client see a reset instead of an answer."""
    dump, dump_type = minidump_upload(small_dump(1) + os.urandom(20 * 1024 * 1024))
    with serving(unreachable_app(tmp_path, free_port())) as url:
        for _ in range(3):
            response = httpx.post(f"{url}/submit?key=k", content=dump, headers={"Content-Type": dump_type}, timeout=30)
            assert (response.status_code, response.text) == (503, "Discarded=storage_unavailable\n")


def test_hung_postgresql_and_redis_answer_within_seconds(tmp_path: Path) -> None:
    """Issue 11 item 13: toward a hung PostgreSQL an upload waited 60 s (forever, here) and so did
    the heartbeat. Now an upload gets 503 within a few seconds and the heartbeat answers
    within 2 s naming each dependency that is down."""
    with black_hole() as pg_port, black_hole() as redis_port:
        with serving(unreachable_app(tmp_path, pg_port, redis_port)) as url:
            for path, body, headers in ingest_requests()[:2]:
                started = time.monotonic()
                response = httpx.post(f"{url}{path}", content=body, headers=headers, timeout=20)
                assert response.status_code == 503 and time.monotonic() - started < 5, path
            for _ in range(2):  # the second finds the first's database check still hanging
                started = time.monotonic()
                heartbeat = httpx.get(f"{url}/__heartbeat__", timeout=20)
                assert time.monotonic() - started < 2
                checks = heartbeat.json()["checks"]
                assert heartbeat.status_code == 503 and checks["blob_store"] == "ok", checks
                assert checks["database"].startswith("error") and checks["queue"].startswith("error"), checks


def test_hung_redis_still_stores_the_upload(tmp_path: Path, pg_database: str) -> None:
    """Redis hung: the upload is stored and answered 200 within seconds; the sweeper enqueues it
    later (issue 11 item 13; before, RQ's enqueue waited forever)."""
    hole = contextlib.ExitStack()
    with hole:
        redis_port = hole.enter_context(black_hole())
        settings = make_settings("postgres-rq", tmp_path, pg_database, f"redis://127.0.0.1:{redis_port}/0",
                                 redis_socket_timeout_seconds=0.5)
        for crashd in _crashd("postgres-hung-redis", settings):
            with LiveServer(crashd) as live:
                body, ctype = minidump_upload(small_dump(1))
                started = time.monotonic()
                response = httpx.post(f"{live.url}/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                      content=body, headers={"Content-Type": ctype}, timeout=20)
                assert response.status_code == 200 and time.monotonic() - started < 3
                assert crashd.crash(response.text)["status"] == "received"
                heartbeat = httpx.get(f"{live.url}/__heartbeat__", timeout=20)
                assert heartbeat.status_code == 503 and heartbeat.json()["checks"]["database"] == "ok"
            hole.close()  # Redis refuses from now on: the fixture's clean-up gives up at once
