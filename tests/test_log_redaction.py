"""Ingest keys and tokens stay out of the logs (server/log_redaction.py, issue 11 item 5): the
access log of a real `crashd serve` and our own log lines show ``[redacted]`` instead."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

import httpx

from server.log_redaction import RedactSecrets, redact

from conftest import serve_process


def test_query_values_of_secret_parameters_are_redacted() -> None:
    assert redact("POST /submit?key=3f9a HTTP/1.1") == "POST /submit?key=[redacted] HTTP/1.1"
    assert redact("/api/1/minidump/?sentry_key=abc&guid=7") == "/api/1/minidump/?sentry_key=[redacted]&guid=7"
    assert redact("/x?monkey=1&token_type=2&TOKEN=s") == "/x?monkey=1&token_type=2&TOKEN=[redacted]"
    assert redact("Sentry sentry_version=7, sentry_key=abc") == "Sentry sentry_version=7, sentry_key=[redacted]"


def test_our_log_lines_are_redacted_whatever_their_shape() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("crashd.test_log_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("upload to /submit?key=%s failed", "secret-1")  # the key as an argument
        logger.warning("%s %d", "/api/1/minidump/?sentry_key=secret-2", 200)  # inside an argument
        logger.warning("symbols from %s", httpx.URL("http://h/api/1/symbols/?token=secret-3"))  # an object
        try:
            raise ValueError("bad http://h/submit?key=secret-4")
        except ValueError:
            logger.exception("upload failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "secret-" not in text and text.count("[redacted]") >= 4, text


def test_the_access_log_of_crashd_serve_shows_no_key(tmp_path: Path) -> None:
    with serve_process(tmp_path) as server:
        key = re.search(r"sentry_key=(\w+)", server.upload_url).group(1)
        with httpx.Client(base_url=server.url) as client:
            client.post(f"/submit?key={key}", content=b"not multipart")
            client.post(server.upload_url.replace(f"http://127.0.0.1:{server.port}", ""), content=b"x")
            client.get("/api/groups?token=secret-token&project=1")
        time.sleep(0.5)
        server.proc.terminate()
        out, _ = server.proc.communicate(timeout=20)
    logs = out[out.index("Started server process"):]  # after the banner, which shows the URLs on purpose
    access = [line for line in logs.splitlines() if '"POST /submit' in line or "/minidump/" in line
              or "/api/groups" in line]
    assert len(access) == 3, out
    assert key not in logs and "secret-token" not in logs, logs
    assert all("[redacted]" in line for line in access), access
