"""The crashd command line: project create/list, migrate, and `serve` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import REPO, serve_process
from minidump_writer import small_dump
from uploads import minidump_upload


def crashd(*args: str, data_dir: Path, timeout: int = 60, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**base, "CRASHD_DATA_DIR": str(data_dir), **env})


def test_project_create_json(tmp_path: Path) -> None:
    assert crashd("migrate", data_dir=tmp_path).returncode == 0
    done = crashd("project", "create", "nar-game", "--json", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"project", "ingest_key", "minidump_url", "submit_url", "dsn"} <= out.keys()
    assert out["dsn"] == f"http://{out['ingest_key']}@127.0.0.1:8000/{out['project_id']}"
    assert out["project"] == "nar-game"
    assert out["minidump_url"] == f"http://127.0.0.1:8000/api/{out['project_id']}/minidump/?sentry_key={out['ingest_key']}"
    assert out["submit_url"] == f"http://127.0.0.1:8000/submit?key={out['ingest_key']}"
    again = crashd("project", "create", "nar-game", "--json", data_dir=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = crashd("project", "list", "--json", data_dir=tmp_path)
    assert [json.loads(line)["ingest_key"] for line in listed.stdout.splitlines()] == [out["ingest_key"]]


def test_public_url_setting_is_used(tmp_path: Path) -> None:
    assert crashd("migrate", data_dir=tmp_path).returncode == 0
    done = crashd("project", "create", "g", "--json", data_dir=tmp_path, CRASHD_PUBLIC_URL="https://crash.example.test")
    out = json.loads(done.stdout)
    assert out["submit_url"].startswith("https://crash.example.test/submit?key=")
    assert out["dsn"] == f"https://{out['ingest_key']}@crash.example.test/{out['project_id']}"
    listed = crashd("project", "list", data_dir=tmp_path, CRASHD_PUBLIC_URL="https://crash.example.test")
    assert listed.stdout.split() == [str(out["project_id"]), "g", out["ingest_key"], out["dsn"]]


NO_DATABASE = "no crashd database at {}; set CRASHD_DATA_DIR or CRASHD_DATABASE_URL"
READERS = (("triage", "report"), ("project", "list"), ("project", "create", "g"), ("user", "list"),
           ("reprocess", "--all"), ("prune", "--older-than", "90d"), ("symbols", "prune", "--unused-for", "9d"))


def test_commands_refuse_a_database_that_does_not_exist(tmp_path: Path) -> None:
    """Run outside the repository on an empty data folder, a command says where it looked and
    creates nothing (issue 17: `triage report` made an empty database and reported no P0s)."""
    empty, cwd = tmp_path / "data", tmp_path / "elsewhere"
    empty.mkdir()
    cwd.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    for args in READERS:
        done = subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=60, env={**base, "CRASHD_DATA_DIR": str(empty)})
        assert done.returncode == 2, (args, done.stderr)
        assert NO_DATABASE.format(empty.resolve() / "crashd.db") in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert list(empty.iterdir()) == [] and list(cwd.iterdir()) == []
    # `crashd migrate` (and `crashd serve`: test_serve_embedded_default_end_to_end) create it
    assert crashd("migrate", data_dir=empty).returncode == 0 and (empty / "crashd.db").is_file()
    assert crashd("triage", "report", data_dir=empty).returncode == 0


def test_commands_refuse_a_postgres_database_without_crashd_tables(tmp_path: Path) -> None:
    """On PostgreSQL, a reachable database without crashd's tables is refused the same way,
    and no table is created."""
    import uuid

    import psycopg

    from conftest import PG_ADMIN_URL

    name = f"crashd_empty_{uuid.uuid4().hex[:8]}"
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            for args in (("triage", "report"), ("project", "create", "g")):
                done = crashd(*args, data_dir=tmp_path, CRASHD_DATABASE_URL=url)
                assert done.returncode == 2 and NO_DATABASE.format(url) in done.stderr, done.stderr
            with psycopg.connect(url) as conn:
                tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                                      "WHERE table_schema = 'public'").fetchone()
            assert tables == (0,)
            assert crashd("migrate", data_dir=tmp_path, CRASHD_DATABASE_URL=url).returncode == 0
            assert crashd("project", "create", "g", data_dir=tmp_path, CRASHD_DATABASE_URL=url).returncode == 0
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_project_urls_use_the_port_crashd_serve_listens_on(tmp_path: Path) -> None:
    """`make run PORT=8731`: `crashd project create` prints URLs on the port the server uses,
    not 8000; --base-url and CRASHD_PUBLIC_URL still win (issue 17)."""
    with serve_process(tmp_path) as serve:
        done = crashd("project", "create", "x", "--json", data_dir=tmp_path)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["dsn"] == f"http://{out['ingest_key']}@127.0.0.1:{serve.port}/{out['project_id']}"
        assert out["submit_url"] == f"http://127.0.0.1:{serve.port}/submit?key={out['ingest_key']}"
        body, ctype = minidump_upload(small_dump(3))
        assert httpx.post(out["minidump_url"], content=body, headers={"Content-Type": ctype}).status_code == 200
        listed = crashd("project", "list", "--json", data_dir=tmp_path)
        assert f"127.0.0.1:{serve.port}/" in listed.stdout and ":8000" not in listed.stdout
    given = crashd("project", "list", "--json", "--base-url", "http://h:9", data_dir=tmp_path)
    assert "http://h:9/submit" in given.stdout
    public = crashd("project", "list", "--json", data_dir=tmp_path, CRASHD_PUBLIC_URL="https://c.example.test")
    assert "https://c.example.test/submit" in public.stdout and f":{serve.port}/" not in public.stdout


def test_configuration_error_is_reported_not_raised(tmp_path: Path) -> None:
    done = crashd("migrate", data_dir=tmp_path, CRASHD_ENVIRONMENT="production")
    assert done.returncode == 2 and "CRASHD_ADMIN_TOKEN" in done.stderr and "Traceback" not in done.stderr
    secret = crashd("migrate", data_dir=tmp_path, CRASHD_ENVIRONMENT="production", CRASHD_ADMIN_TOKEN="changeme",
                    CRASHD_DATABASE_URL="postgresql://user:hunter2@db/x")
    assert secret.returncode == 2 and "hunter2" not in secret.stderr + secret.stdout


def test_serve_embedded_default_end_to_end(tmp_path: Path) -> None:
    """`crashd serve` with no configuration: prints its URLs, accepts an upload, processes it."""
    with serve_process(tmp_path) as serve:
        body, ctype = minidump_upload(small_dump(5), ver="2.0")
        crash_id = httpx.post(serve.upload_url, content=body, headers={"Content-Type": ctype}).text
        for _ in range(100):
            crash = httpx.get(f"{serve.url}/api/crashes/{crash_id}",
                              headers={"Authorization": f"Bearer {serve.admin_token}"}).json()
            if crash["status"] == "processed":
                break
            time.sleep(0.1)
        assert crash["status"] == "processed" and crash["build"] == "2.0"
        assert (tmp_path / "crashd.db").exists()


def test_stackwalk_json_one_document_per_dump(tmp_path: Path) -> None:
    from conftest import require_corpus

    corpus = require_corpus()
    cases = ["linux-x64-generated-crashpad-segv-O0", "win-x86-breakpad-minidump2"]
    dumps = [str(next((corpus / c).glob("*.dmp"))) for c in cases]
    args = ["stackwalk", *dumps, "--json"]
    for case in cases:
        args += ["--symbols", str(corpus / case / "symbols")]
    done = crashd(*args, data_dir=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    documents = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(documents) == 2
    linux, windows = documents
    assert linux["crash_info"] == {"type": "SIGSEGV / SEGV_MAPERR", "address": "0x0000000000000045",
                                   "crashing_thread": 0, "assertion": None}
    frame = linux["crashing_thread"]["frames"][0]
    assert {"frame", "trust", "module", "module_offset", "function", "function_offset", "file", "line", "inlines"} <= frame.keys()
    assert (frame["module"], frame["function"], frame["line"]) == ("crashme", "crash_here", 43)
    module = next(m for m in linux["modules"] if m["filename"] == "crashme")
    assert module["debug_id"] == "B19A4795B226ABBD7EE6DBD76B7952480" and module["loaded_symbols"] is True
    assert {"filename", "debug_file", "debug_id", "code_id", "base_addr", "end_addr", "missing_symbols"} <= module.keys()
    assert windows["system_info"]["cpu_arch"] == "x86"
    assert [f["function"] for f in windows["crashing_thread"]["frames"][:2]] == ["`anonymous namespace'::CrashFunction", "main"]


def test_stackwalk_human_output_and_missing_file(tmp_path: Path) -> None:
    from conftest import require_corpus

    case = require_corpus() / "linux-x64-breakpad-inline"
    done = crashd("stackwalk", str(next(case.glob("*.dmp"))), "--symbols", str(case / "symbols"), data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Thread 0 (crashed)" in done.stdout and "Found by: inlining" in done.stdout
    missing = crashd("stackwalk", str(tmp_path / "nope.dmp"), data_dir=tmp_path)
    assert missing.returncode == 1 and "nope.dmp" in missing.stderr and "Traceback" not in missing.stderr


def test_dashboard_hint_until_the_first_user(tmp_path: Path) -> None:
    """`crashd serve` says how to sign in while no user exists, and stops saying it after."""
    from schemas.settings import Settings
    from server.cli.serve import dashboard_hint
    from storage import users
    from storage.db import make_engine, migrate

    engine = make_engine(Settings(data_dir=tmp_path))
    migrate(engine)
    assert "crashd user create NAME --role admin" in dashboard_hint(engine)
    users.create_user(engine, name="ada", role="admin", password_hash="$argon2id$x")
    assert dashboard_hint(engine) == ""
    engine.dispose()
