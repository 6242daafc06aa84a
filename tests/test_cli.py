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
    done = crashd("project", "create", "g", "--json", data_dir=tmp_path, CRASHD_PUBLIC_URL="https://crash.example.test")
    assert json.loads(done.stdout)["submit_url"].startswith("https://crash.example.test/submit?key=")


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
