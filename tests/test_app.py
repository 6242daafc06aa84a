"""The app's own errors go to CRASHD_SENTRY_DSN through sentry-sdk (a real SDK, a real socket);
the router's own 404 and 405 under /api/ are JSON like every other API error."""

from __future__ import annotations

import gzip
import http.server
import sqlite3
import threading
import time
from pathlib import Path

import brotli
import httpx

from conftest import Crashd, ServeProcess, serve_process
from minidump_writer import small_dump
from uploads import minidump_upload


class Recorder(http.server.BaseHTTPRequestHandler):
    """Stores every body POSTed to it (decompressed), as a Sentry server would receive it."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
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
