"""Triage end to end on the real stack: crashd served by uvicorn, real `crashd worker --burst`
processes on RQ/Redis, PostgreSQL, corpus dumps with their symbols, and a webhook receiver
on a loopback port recording what the notification jobs post.

(A bad rules file stopping `crashd serve` and `crashd worker` is in tests/test_thresholds.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg
import pytest

from conftest import REPO, Crashd, LiveServer, _crashd, make_settings, require_corpus
from uploads import minidump_upload

SEGV = "linux-x64-generated-crashpad-segv-O0"
BETA = "0.9.9-staging-beta"


class Webhook:
    """An HTTP server that answers 200 to every POST and keeps the JSON bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/crashd"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[tuple[str, str]]:
        return [(b["event"], b["ticket"]["priority"]) for b in self.bodies]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def stack(tmp_path: Path, pg_database: str, redis_url: str, webhook: Webhook) -> Iterator[tuple[Crashd, LiveServer]]:
    """crashd on PostgreSQL + RQ, served by uvicorn, with the corpus dump's symbols."""
    require_corpus()
    settings = make_settings("postgres-rq", tmp_path, pg_database, redis_url, webhook_url=webhook.url)
    running = _crashd("postgres-rq", settings)
    crashd = next(running)
    shutil.copytree(require_corpus() / SEGV / "symbols", settings.symbols_dir, dirs_exist_ok=True)
    try:
        with LiveServer(crashd) as live:
            yield crashd, live
    finally:
        running.close()


def upload(crashd: Crashd, live: LiveServer, tester: str, build: str) -> str:
    """POST the corpus dump over HTTP as a new crash (its own guid: dedupe is per guid + dump)."""
    dump = (require_corpus() / SEGV / f"{SEGV}.dmp").read_bytes()
    body, ctype = minidump_upload(dump, guid=str(uuid.uuid4()), tester_id=tester, ver=build)
    response = httpx.post(f"{live.url}/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                          content=body, headers={"Content-Type": ctype}, timeout=60)
    assert response.status_code == 200, response.text
    return response.text


def run_workers(crashd: Crashd, count: int = 1) -> None:
    """`crashd worker --burst` processes, all at once, until the queue is empty."""
    settings = crashd.settings
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")},
           "CRASHD_DATA_DIR": str(settings.data_dir), "CRASHD_REDIS_URL": settings.redis_url or "",
           "CRASHD_QUEUE_NAME": settings.queue_name, "CRASHD_WEBHOOK_URL": settings.webhook_url or "",
           "CRASHD_DATABASE_URL": settings.effective_database_url.replace("postgresql+psycopg://", "postgresql://")}
    workers = [subprocess.Popen([sys.executable, "-m", "server.cli", "worker", "--burst"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err


def api(live: LiveServer, crashd: Crashd, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{live.url}{path}", headers=crashd.admin, timeout=60, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def tickets(live: LiveServer, crashd: Crashd) -> list[dict[str, Any]]:
    return api(live, crashd, "GET", "/api/tickets?project=game")["tickets"]


def post_sessions(crashd: Crashd, live: LiveServer, build: str, count: int) -> None:
    body = [{"session_id": f"{build}-{i}", "tester_id": f"tester-{i % 12}", "build": build,
             "started": "2026-11-25T10:00:00Z", "duration": 900, "status": "exited"} for i in range(count)]
    response = httpx.post(f"{live.url}/api/{crashd.project.id}/sessions/?sentry_key={crashd.key}", json=body, timeout=60)
    assert response.status_code == 200, response.text


def test_p1_p0_verified_regressed(stack: tuple[Crashd, LiveServer], webhook: Webhook) -> None:
    crashd, live = stack
    ids = [upload(crashd, live, f"tester-{tester}", f"{BETA}1") for tester in range(1, 5)]
    run_workers(crashd)
    [ticket] = tickets(live, crashd)
    assert [api(live, crashd, "GET", f"/api/crashes/{i}")["processed"].get("ticket_changes") for i in ids] == [
        None, None, [f"{ticket['id']}:opened"], None]
    assert (ticket["priority"], ticket["state"], ticket["rule"], ticket["title"]) == (
        "P1",
        "open",
        "spreading",
        "game: crash_here",
    )
    assert webhook.events() == [("opened", "P1")]

    upload(crashd, live, "tester-5", f"{BETA}1")
    upload(crashd, live, "tester-1", f"{BETA}1")
    run_workers(crashd)
    [ticket] = tickets(live, crashd)
    assert (ticket["priority"], ticket["rule"], ticket["testers_at_firing"]) == ("P0", "widespread", 5)
    assert webhook.events() == [("opened", "P1"), ("escalated", "P0")]
    assert {b["group"]["signature"] for b in webhook.bodies} == {"crash_here"}
    assert {b["ticket"]["id"] for b in webhook.bodies} == {ticket["id"]}

    resolved = api(
        live, crashd, "POST", f"/api/tickets/{ticket['id']}/resolve", json={"fixed_in": f"{BETA}2", "by": "dev"}
    )
    assert resolved["state"] == "resolved"  # no sessions yet: the numbers cannot say
    post_sessions(crashd, live, f"{BETA}1", 100)
    post_sessions(crashd, live, f"{BETA}2", 250)
    run_workers(crashd)  # the verification job the sessions enqueued, then the notify job
    detail = api(live, crashd, "GET", f"/api/tickets/{ticket['id']}")
    assert detail["state"] == "verified"
    verified = detail["history"][-1]
    assert (verified["action"], verified["actor"]) == ("verified", "system:verification")
    numbers = verified["details"]
    assert (
        numbers["base_crashes"],
        numbers["base_sessions"],
        numbers["target_crashes"],
        numbers["target_sessions"],
    ) == (6, 100, 0, 250)
    assert numbers["p_value"] < 0.05 and numbers["reason"] == "lower"
    assert [e for e, _ in webhook.events()] == ["opened", "escalated", "resolved", "verified"]

    upload(crashd, live, "tester-7", f"{BETA}3")
    run_workers(crashd)
    detail = api(live, crashd, "GET", f"/api/tickets/{ticket['id']}")
    assert (detail["state"], detail["fixed_in"]) == ("regressed", f"{BETA}2")
    assert [e["action"] for e in detail["history"]] == ["opened", "escalated", "resolved", "verified", "regressed"]
    assert [e for e, _ in webhook.events()] == ["opened", "escalated", "resolved", "verified", "regressed"]
    assert webhook.bodies[-1]["details"]["builds"] == [f"{BETA}3"]


def test_fifty_concurrent_crashes_give_one_ticket(stack: tuple[Crashd, LiveServer], webhook: Webhook) -> None:
    """50 crashes of one group from 10 testers, posted concurrently and processed by four
    worker processes at once: one ticket, one event (and one webhook call) per change."""
    crashd, live = stack
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: upload(crashd, live, f"tester-{i % 10}", f"{BETA}1"), range(50)))
    run_workers(crashd, count=4)
    with psycopg.connect(crashd.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM tickets").fetchone() == (1,)
        assert conn.execute("SELECT crash_count, tester_count FROM crash_groups").fetchall() == [(50, 10)]
    [ticket] = tickets(live, crashd)
    assert ticket["priority"] == "P0" and ticket["state"] == "open"
    history = [e["action"] for e in api(live, crashd, "GET", f"/api/tickets/{ticket['id']}")["history"]]
    assert history in (["opened"], ["opened", "escalated"])
    assert [event for event, _ in webhook.events()] == history


def test_in_process_worker_notifies_right_after_the_crash(tmp_path: Path, webhook: Webhook) -> None:
    """The embedded default (SQLite, in-process worker, no Redis): the ticket a crash opens
    reaches the webhook once the worker is done with that crash, not at the next sweeper tick
    (an hour away here: make_settings sets sweeper_interval_seconds=3600)."""
    settings = make_settings("sqlite-inprocess", tmp_path, None, None, webhook_url=webhook.url)
    assert settings.sweeper_interval_seconds == 3600 and not settings.redis_url
    running = _crashd("sqlite-inprocess", settings)
    crashd = next(running)
    try:
        crashd.add_corpus_symbols(SEGV)
        for tester in range(1, 4):
            crashd.upload_corpus(SEGV, guid=str(uuid.uuid4()), tester_id=f"tester-{tester}", ver=f"{BETA}1")
            crashd.drain()  # the crash, then the notify job it queued behind itself
            assert webhook.events() == ([("opened", "P1")] if tester == 3 else [])
        for tester in (4, 5):
            crashd.upload_corpus(SEGV, guid=str(uuid.uuid4()), tester_id=f"tester-{tester}", ver=f"{BETA}1")
        crashd.drain()
        assert webhook.events() == [("opened", "P1"), ("escalated", "P0")]
    finally:
        running.close()
