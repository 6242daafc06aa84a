"""Dogfooding: crashd A reports its own errors (CRASHD_SENTRY_DSN, sentry-sdk) to crashd B's
project DSN. Both are real `crashd serve` processes (sentry_sdk.init is process-global, so
never in the test process). An exception inside A's request handler (GET /__broken__) must
arrive in B as a crash, processed and grouped."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import create_engine, select

from schemas.tables import Crash
from server.ingest.sentry import drop_envelope_endpoint_errors

from conftest import serve_process


def dsn_of(upload_url: str) -> str:
    """The DSN of the project whose minidump upload URL `crashd serve` printed."""
    parts = urlsplit(upload_url)
    key = parse_qs(parts.query)["sentry_key"][0]
    project_id = re.fullmatch(r"/api/(\d+)/minidump/", parts.path).group(1)
    return f"{parts.scheme}://{key}@{parts.netloc}/{project_id}"


def wait_for_groups(url: str, token: str, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        groups = httpx.get(f"{url}/api/groups?project=default", headers={"Authorization": f"Bearer {token}"}).json()
        if groups["groups"]:
            return groups["groups"]
        time.sleep(0.2)
    raise AssertionError("no crash arrived in the second crashd")


def test_an_exception_in_a_request_handler_arrives_as_a_crash_in_another_crashd(tmp_path: Path) -> None:
    with serve_process(tmp_path / "b") as b:
        dsn = dsn_of(b.upload_url)
        with serve_process(tmp_path / "a", CRASHD_SENTRY_DSN=dsn) as a:
            headers = {"Authorization": f"Bearer {a.admin_token}"}
            assert httpx.get(f"{a.url}/__broken__").status_code == 401  # not for anyone
            assert httpx.get(f"{a.url}/__broken__", headers=headers).status_code == 500
            groups = wait_for_groups(b.url, b.admin_token)
        assert [(g["signature"], g["crash_count"]) for g in groups] == [("broken_endpoint", 1)]
        engine = create_engine(f"sqlite:///{tmp_path / 'b' / 'crashd.db'}")
        with engine.connect() as conn:
            [row] = conn.execute(select(Crash.__table__)).all()
        engine.dispose()
        annotations = row.annotations
        assert annotations["sentry.exception.type"] == "RuntimeError"
        assert "raised on purpose" in annotations["sentry.exception.value"]
        assert annotations["sentry.sdk.name"] == "sentry.python.starlette"  # caught by the request integration
        assert annotations["sentry.environment"] == "development"
        assert row.submitted_via == "envelope" and row.status == "processed"


def test_errors_of_the_envelope_endpoint_are_not_reported_back() -> None:
    """An envelope endpoint failure reported through a crashd's envelope endpoint could loop."""
    event = {"exception": {"values": [{"type": "RuntimeError"}]}}
    for path in ("/api/3/envelope/", "/api/game/store/"):
        assert drop_envelope_endpoint_errors({**event, "request": {"url": f"http://crash:8000{path}"}}, {}) is None
    kept = {**event, "request": {"url": "http://crash:8000/__broken__"}}
    assert drop_envelope_endpoint_errors(kept, {}) is kept
    assert drop_envelope_endpoint_errors(event, {}) is event  # no request: a worker error
