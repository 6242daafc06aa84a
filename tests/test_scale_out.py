"""Scaled out past one machine: 2 `crashd serve` and 2 `crashd worker` processes, each with a
data folder of its own (no shared local disk), sharing only PostgreSQL (a fresh database),
Redis (a queue of their own) and the object store (SeaweedFS, a prefix of their own). Clients
alternate between the two servers: crash uploads, a symbol upload, a late-symbol reprocess,
a ticket, the dashboard and the JSON API all work, and every count is exact (issue 18)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg
import pytest
from redis import Redis
from rq import Queue

from conftest import PG_ADMIN_URL, REDIS_URL, REPO, clean_queue, require_corpus
from faults.services import CrashdProcess, wait_until
from s3_server import S3Server
from uploads import minidump_upload

ADMIN = "scale-out-admin-token-0123456789"
SEGV = "linux-x64-generated-crashpad-segv-O0"  # crash_here() once its symbols are there
OTHERS = ["linux-x64-breakpad-divide-by-zero", "win-x64-breakpad-fastfail", "mac-x64-rust-simple-crashpad",
          "linux-x64-rust-linux-mini"]
PASSWORD = "scale-out-password-0123"


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database of this test; dropped after."""
    name = f"crashd_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cluster(tmp_path: Path, database: str, redis_url: str, s3_server: S3Server) -> Iterator[dict[str, Any]]:
    """Two servers and two workers, started together (they migrate under one advisory lock)."""
    require_corpus()
    queue = f"crashd-scale-{uuid.uuid4().hex[:8]}"
    env = {"CRASHD_DATABASE_URL": database, "CRASHD_REDIS_URL": REDIS_URL, "CRASHD_QUEUE_NAME": queue,
           "CRASHD_ADMIN_TOKEN": ADMIN, "CRASHD_SESSION_SECRET": "scale-out-session-secret-0123456789abcdef",
           "CRASHD_SWEEPER_INTERVAL_SECONDS": "3600", **s3_server.env(prefix=queue)}
    machines = {name: {**env, "CRASHD_DATA_DIR": str(tmp_path / name)} for name in ("web1", "web2", "w1", "w2")}
    procs = [CrashdProcess("serve", machines["web1"], tmp_path), CrashdProcess("serve", machines["web2"], tmp_path),
             CrashdProcess("worker", machines["w1"], tmp_path), CrashdProcess("worker", machines["w2"], tmp_path)]
    try:
        for proc in procs:
            proc.start(wait=False)
        for proc in procs[:2]:
            wait_until(proc._answers, 60, f"crashd serve: {proc.log()[-2000:]}")
        yield {"servers": procs[:2], "workers": procs[2:], "database": database, "env": machines["web1"],
               "tmp": tmp_path}
    finally:
        for proc in procs:
            proc.stop()
        clean_queue(Queue(queue, connection=Redis.from_url(REDIS_URL)))


def statuses(database: str) -> dict[str, int]:
    with psycopg.connect(database) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM crashes GROUP BY status").fetchall())


def ingest_key(database: str) -> str:
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT ingest_key FROM projects WHERE name = 'default'").fetchone()[0]


def corpus_dump(case: str) -> Path:
    """The case's minidump (its one .dmp: the generated cases name it after the case, others not)."""
    [dump] = sorted((require_corpus() / case).glob("*.dmp"))
    return dump


def upload(server: CrashdProcess, key: str, case: str, tester: str) -> str:
    dump = corpus_dump(case).read_bytes()
    body, ctype = minidump_upload(dump, guid=str(uuid.uuid4()), tester_id=tester, ver="2.0.0-beta1")
    response = httpx.post(f"{server.url}/api/1/minidump/?sentry_key={key}", content=body,
                          headers={"Content-Type": ctype}, timeout=60)
    assert response.status_code == 200, response.text
    return response.text.strip()


def api(server: CrashdProcess, path: str, **kwargs: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def all_processed(database: str, count: int) -> None:
    wait_until(lambda: statuses(database) == {"processed": count}, 90, f"{count} crashes processed",
               interval=0.2)


def test_two_servers_two_workers_share_only_postgres_redis_and_the_object_store(cluster: dict[str, Any]) -> None:
    web = cluster["servers"]
    database = cluster["database"]
    key = ingest_key(database)

    # A crash before its symbols: processed, crashme's frames unnamed.
    late = upload(web[0], key, SEGV, "tester-1")
    all_processed(database, 1)
    before = api(web[1], f"/api/crashes/{late}")  # the other server reads the worker's report
    assert f"crashme/{'B19A4795B226ABBD7EE6DBD76B7952480'}" in before["processed"]["missing_symbols"]
    assert before["processed"]["signature"] != "crash_here"

    # The symbols reach the other server; the crash is reprocessed by a worker that has never
    # seen a symbol file on its disk, and moves to its symbolicated signature.
    for sym in sorted((require_corpus() / SEGV / "symbols").rglob("*.sym")):
        response = httpx.post(f"{web[1].url}/api/_/symbols/", content=sym.read_bytes(), timeout=60,
                              headers={"Authorization": f"Bearer {ADMIN}"})
        assert response.status_code == 200 and response.json()["files"][0]["status"] == "stored", response.text
    wait_until(lambda: api(web[0], f"/api/crashes/{late}")["processed"]["signature"] == "crash_here", 60,
               "the late-symbol reprocess")
    assert not list((cluster["tmp"] / "web1" / "symbols").rglob("*.sym"))  # not on web1's disk...
    fetched = [p for w in ("w1", "w2") for p in (cluster["tmp"] / w / "cache" / "symbols").rglob("crashme.sym")]
    assert fetched  # ...but fetched from the object store into a worker's cache folder

    # More crashes, alternating servers: two more testers of crash_here (a P1 ticket) and
    # four other bugs.
    ids = [late]
    ids += [upload(web[i % 2], key, SEGV, f"tester-{i}") for i in (2, 3)]
    ids += [upload(web[i % 2], key, case, f"tester-{10 + i}") for i, case in enumerate(OTHERS)]
    all_processed(database, 7)
    assert len(set(ids)) == 7
    for i, crash_id in enumerate(ids):
        crash = api(web[i % 2], f"/api/crashes/{crash_id}")
        assert crash["status"] == "processed" and crash["processed"]["signature"], crash_id
    dump = httpx.get(f"{web[1].url}/api/crashes/{ids[-1]}/minidump", headers={"Authorization": f"Bearer {ADMIN}"})
    assert dump.content == corpus_dump(OTHERS[-1]).read_bytes()

    groups = {g["signature"]: g for g in api(web[0], "/api/groups?project=default&limit=50")["groups"]}
    assert (groups["crash_here"]["crash_count"], groups["crash_here"]["tester_count"]) == (3, 3)
    assert sum(g["crash_count"] for g in groups.values()) == 7
    wait_until(lambda: len(api(web[1], "/api/tickets?project=default")["tickets"]) == 1, 30, "the ticket")
    [ticket] = api(web[1], "/api/tickets?project=default")["tickets"]
    assert (ticket["priority"], ticket["state"], ticket["rule"]) == ("P1", "open", "spreading")

    # The dashboard: signed in on one server, the session holds on the other.
    subprocess.run([sys.executable, "-m", "server.cli", "user", "create", "alice", "--role", "admin"], cwd=REPO,
                   input=PASSWORD + "\n", text=True, check=True, timeout=60,
                   env={**_base_env(), **cluster["env"], "CRASHD_DATA_DIR": str(cluster["tmp"] / "cli")})
    with httpx.Client(base_url=web[0].url, timeout=30) as browser:
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login?next=/").text)
        assert token
        signed = browser.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token.group(1),
                                              "next": "/"})
        assert signed.status_code == 303, signed.text
        page = httpx.get(f"{web[1].url}/groups/{groups['crash_here']['id']}", cookies=browser.cookies, timeout=30)
        assert page.status_code == 200 and "crash_here" in page.text
        crash_page = httpx.get(f"{web[1].url}/crashes/{late}", cookies=browser.cookies, timeout=30)
        assert crash_page.status_code == 200 and "crash_here" in crash_page.text
    assert statuses(database) == {"processed": 7}
    assert all(w.alive() for w in cluster["workers"])


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CRASHD_", "AWS_"))}


def test_a_forking_worker_reads_the_object_store(tmp_path: Path, database: str, s3_server: S3Server) -> None:
    """`crashd worker --fork`: each job runs in a child of the worker. obstore's runtime does not
    survive a fork once used, so the parent must never touch the object store; the children
    build their own store (workers/context.current_context) and process the crash."""
    queue = f"crashd-scale-{uuid.uuid4().hex[:8]}"
    env = {"CRASHD_DATABASE_URL": database, "CRASHD_REDIS_URL": REDIS_URL, "CRASHD_QUEUE_NAME": queue,
           "CRASHD_ADMIN_TOKEN": ADMIN, "CRASHD_SWEEPER_INTERVAL_SECONDS": "3600", **s3_server.env(prefix=queue)}
    server = CrashdProcess("serve", {**env, "CRASHD_DATA_DIR": str(tmp_path / "web")}, tmp_path)
    try:
        server.start()
        key = ingest_key(database)
        ids = [upload(server, key, SEGV, f"tester-{i}") for i in range(2)]
        worker = subprocess.run([sys.executable, "-m", "server.cli", "worker", "--fork", "--burst"], cwd=REPO,
                                env={**_base_env(), **env, "CRASHD_DATA_DIR": str(tmp_path / "worker")},
                                capture_output=True, text=True, timeout=120)
        assert worker.returncode == 0, worker.stderr[-3000:]
        assert statuses(database) == {"processed": 2}
        assert all(api(server, f"/api/crashes/{crash_id}")["processed"]["signature"] for crash_id in ids)
    finally:
        server.stop()
        clean_queue(Queue(queue, connection=Redis.from_url(REDIS_URL)))
