"""Regrouping end to end on real processes: `crashd serve` and `crashd worker` processes on
PostgreSQL and Redis, uploads over HTTP, a fake GitHub on a loopback port.

One bug keeps one ticket and one tracker issue through late symbols arriving while 50
crashes of it are processed by 4 workers; two NAR panics in two functions are two groups,
named by those functions; merging their two ticketed groups leaves one live ticket and closes
the other's issue as a duplicate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select
from test_regroup import hub  # noqa: F401 - the fake GitHub fixture
from test_reprocess import SEGV
from test_tickets_backends import FakeTracker, backend_fields

from schemas.settings import Settings
from schemas.tables import Crash, Notification
from storage.db import session

from conftest import REPO, Crashd, ServeProcess, _crashd, make_settings, require_corpus, serve_process
from uploads import minidump_upload

REALCRASH = REPO / "tests" / "data" / "realcrash"
NAR_DUMPS = {"nar::nar_generate_line": "game-nar-unwrap-O2-nar-abort.dmp",
             "nar::nar_load_persona": "game-nar-expect-O2-nar-abort.dmp"}
SETTLE_SECONDS = 180


@pytest.fixture
def stack(tmp_path: Path, pg_database: str, redis_url: str, hub: FakeTracker) -> Iterator[tuple[Crashd, ServeProcess]]:
    """crashd's database and project (PostgreSQL, RQ on its own queue) served by a real
    `crashd serve` process; the Crashd's client reads the same database."""
    require_corpus()
    settings = make_settings("postgres-rq", tmp_path, pg_database, redis_url, queue_name=f"e2e-{uuid.uuid4().hex[:8]}",
                             **backend_fields(hub, "github"))
    running = _crashd("postgres-rq", settings)
    crashd = next(running)
    try:
        with serve_process(settings.data_dir, **environment(settings)) as serve:
            yield crashd, serve
    finally:
        running.close()


def environment(settings: Settings) -> dict[str, str]:
    """The CRASHD_* variables that make a process of crashd use these settings."""
    database = settings.effective_database_url.replace("postgresql+psycopg://", "postgresql://")
    return {"CRASHD_DATA_DIR": str(settings.data_dir), "CRASHD_DATABASE_URL": database,
            "CRASHD_REDIS_URL": settings.redis_url or "", "CRASHD_QUEUE_NAME": settings.queue_name,
            "CRASHD_ADMIN_TOKEN": settings.admin_token or "", "CRASHD_GITHUB_REPO": settings.github_repo or "",
            "CRASHD_GITHUB_TOKEN": settings.github_token or "", "CRASHD_GITHUB_API_URL": settings.github_api_url}


def workers(settings: Settings, count: int, *, burst: bool) -> list[subprocess.Popen[str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    command = [sys.executable, "-m", "server.cli", "worker", *(["--burst"] if burst else [])]
    return [subprocess.Popen(command, cwd=REPO, env={**base, **environment(settings)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(count)]


def burst(settings: Settings) -> None:
    """One `crashd worker --burst` until the queue is empty."""
    [worker] = workers(settings, 1, burst=True)
    _, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err


def upload(crashd: Crashd, serve: ServeProcess, dump: Path, tester: str) -> None:
    body, ctype = minidump_upload(dump.read_bytes(), guid=str(uuid.uuid4()), tester_id=tester, ver="0.9.9-beta1")
    response = httpx.post(f"{serve.url}/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}", content=body,
                          headers={"Content-Type": ctype}, timeout=60)
    assert response.status_code == 200, response.text


def upload_symbols(crashd: Crashd, serve: ServeProcess) -> None:
    sym = next((require_corpus() / SEGV / "symbols" / "crashme").rglob("*.sym"))
    response = httpx.post(f"{serve.url}/api/{crashd.project.id}/symbols/?key={crashd.upload_token}",
                          files={"symbol_file": (sym.name, sym.read_bytes())},
                          data={"debug_file": "crashme", "debug_identifier": sym.parent.name, "code_file": "crashme",
                                "os": "Linux", "cpu": "x86_64"}, timeout=60)
    assert response.status_code == 200, response.text


def api(crashd: Crashd, serve: ServeProcess, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{serve.url}{path}", headers=crashd.admin, timeout=60, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def groups(crashd: Crashd, serve: ServeProcess) -> dict[str, dict[str, Any]]:
    return {g["signature"]: g for g in api(crashd, serve, "GET", "/api/groups?project=game&limit=200")["groups"]}


def tickets(crashd: Crashd, serve: ServeProcess) -> list[dict[str, Any]]:
    return api(crashd, serve, "GET", "/api/tickets?project=game")["tickets"]


def settle(crashd: Crashd, done: Callable[[], bool], what: str) -> None:
    """Wait until every crash is processed, every notification sent, and done() holds."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        with session(crashd.state.ctx.engine) as s:
            unfinished = s.execute(select(func.count()).select_from(Crash).where(Crash.status != "processed")).scalar()
            unsent = s.execute(select(func.count()).select_from(Notification)
                               .where(Notification.status != "sent")).scalar()
        if not unfinished and not unsent and done():
            return
        assert time.monotonic() < deadline, f"not settled after {SETTLE_SECONDS}s: {what} " \
                                            f"({unfinished} crashes unprocessed, {unsent} notifications unsent)"
        time.sleep(0.5)


def test_late_symbols_during_a_storm_then_a_merge(stack: tuple[Crashd, ServeProcess], hub: FakeTracker) -> None:
    crashd, serve = stack
    settings = crashd.settings
    dump = require_corpus() / SEGV / f"{SEGV}.dmp"

    # 5 testers before the build's symbols: one P0 ticket, one GitHub issue.
    for i in range(5):
        upload(crashd, serve, dump, f"tester-{i}")
    burst(settings)
    settle(crashd, lambda: hub.issues == 1, "the first P0")
    [first] = tickets(crashd, serve)
    assert first["priority"] == "P0" and not first["signature"].startswith("crash_here")

    # 50 more crashes of the bug from 10 testers, 4 workers running, the symbols arrive midway.
    running = workers(settings, 4, burst=False)
    try:
        with ThreadPoolExecutor(8) as pool:
            sent = [pool.submit(upload, crashd, serve, dump, f"tester-{i % 10}") for i in range(50)]
            while sum(f.done() for f in sent) < 20:
                time.sleep(0.05)
            upload_symbols(crashd, serve)
            for future in sent:
                future.result()

        def symbolicated() -> bool:
            now = groups(crashd, serve)
            return len(now) == 1 and next(iter(now)).startswith("crash_here")
        settle(crashd, symbolicated, "55 crashes in the symbolicated group")
    finally:
        for worker in running:
            worker.terminate()
        for worker in running:
            worker.communicate(timeout=60)
    [(signature, group)] = groups(crashd, serve).items()
    assert (group["crash_count"], group["tester_count"]) == (55, 10)
    [ticket] = tickets(crashd, serve)  # merged ones are listed too: there are none
    assert (ticket["id"], ticket["group_id"], ticket["signature"]) == (first["id"], group["id"], signature)
    history = api(crashd, serve, "GET", f"/api/tickets/{ticket['id']}")["history"]
    actions = [e["action"] for e in history]
    assert (actions.count("opened"), actions.count("regrouped"), actions.count("duplicate")) == (1, 1, 0), actions
    assert hub.issues == 1
    assert sum(1 for r in hub.requests if r.method == "POST" and r.path == "/gh/repos/studio/game/issues") == 1

    # Two NAR panics in two functions: two groups, named by them; 5 testers each: two tickets.
    shutil.copytree(REALCRASH / "symbols", settings.symbols_dir, dirs_exist_ok=True)
    for name in NAR_DUMPS.values():
        for i in range(5):
            upload(crashd, serve, REALCRASH / "dumps" / name, f"player-{i}")
    burst(settings)
    settle(crashd, lambda: hub.issues == 3, "two NAR tickets")
    now = groups(crashd, serve)
    assert set(NAR_DUMPS) <= set(now) and all(now[s]["crash_count"] == 5 for s in NAR_DUMPS)
    by_signature = {t["signature"]: t for t in tickets(crashd, serve)}
    older, newer = (by_signature[s] for s in NAR_DUMPS)  # nar_generate_line's was opened first

    # A person decides they are one bug: merge; one live ticket, the other issue closed.
    done = api(crashd, serve, "POST", f"/api/groups/{now['nar::nar_load_persona']['id']}/merge",
               json={"into": now["nar::nar_generate_line"]["id"]})
    assert done["crashes_moved"] == 5
    burst(settings)
    gone_issue = newer["external_key"] or api(crashd, serve, "GET", f"/api/tickets/{newer['id']}")["external_key"]

    def closed() -> bool:
        return any(r.method == "PATCH" and r.path == f"/gh/repos/studio/game/issues/{gone_issue}"
                   and (r.body or {}).get("state") == "closed" for r in hub.requests)
    settle(crashd, closed, "the duplicate's issue closed")
    live = [t for t in tickets(crashd, serve) if t["merged_into"] is None and t["signature"] in NAR_DUMPS]
    assert [t["id"] for t in live] == [older["id"]]
    assert live[0]["crash_count"] == 10 and hub.issues == 3
    merged = api(crashd, serve, "GET", f"/api/tickets/{newer['id']}")
    assert (merged["state"], merged["merged_into"]) == ("duplicate", older["id"])
