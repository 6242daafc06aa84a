"""Reprocessing: late symbols move crashes to the right group by themselves; `crashd reprocess`."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, Crashd, require_corpus
from uploads import minidump_upload

SEGV = "linux-x64-generated-crashpad-segv-O0"


def upload_dump(crashd: Crashd, guid: str) -> str:
    dump = (require_corpus() / SEGV / f"{SEGV}.dmp").read_bytes()
    body, ctype = minidump_upload(dump, guid=guid, ver="1.0.0")
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                  content=body, headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    return response.text


def groups(crashd: Crashd) -> dict[str, tuple[int, int]]:
    response = crashd.client.get("/api/groups?project=game", headers=crashd.admin)
    assert response.status_code == 200, response.text
    return {g["signature"]: (g["crash_count"], g["tester_count"]) for g in response.json()["groups"]}


def upload_symbols(crashd: Crashd) -> None:
    sym = next((require_corpus() / SEGV / "symbols" / "crashme").rglob("*.sym"))
    response = crashd.client.post(
        f"/api/{crashd.project.id}/symbols/?key={crashd.upload_token}",
        files={"symbol_file": (sym.name, sym.read_bytes())},
        data={
            "debug_file": "crashme",
            "debug_identifier": sym.parent.name,
            "code_file": "crashme",
            "os": "Linux",
            "cpu": "x86_64",
        },
    )
    assert response.status_code == 200, response.text


def test_late_symbols_move_crashes_to_the_symbolicated_group(crashd: Crashd) -> None:
    crash_ids = [upload_dump(crashd, f"tester-{i}") for i in range(3)]
    crashd.drain()
    before = groups(crashd)
    assert len(before) == 1
    (unsymbolicated,) = before
    assert "crash_here" not in unsymbolicated and before[unsymbolicated] == (3, 3)
    assert all(crashd.crash(c)["group_id"] is not None for c in crash_ids)

    upload_symbols(crashd)  # symupload-style: the server reprocesses the 3 crashes itself
    crashd.drain()
    after = groups(crashd)
    assert unsymbolicated not in after  # the old group is empty, so not listed
    (symbolicated,) = after
    assert symbolicated.startswith("crash_here") and after[symbolicated] == (3, 3)
    crash = crashd.crash(crash_ids[0])
    assert crash["signature"] == symbolicated and crash["processed"]["missing_symbols"] == [
        m for m in crash["processed"]["missing_symbols"] if not m.startswith("crashme/")
    ]


def run_reprocess(crashd: Crashd, *selector: str) -> subprocess.CompletedProcess[str]:
    """`crashd reprocess <selector>` as a real process on the test's data, database and queue."""
    env = {**os.environ, "CRASHD_DATA_DIR": str(crashd.settings.data_dir)}
    if crashd.settings.database_url:
        env.update(CRASHD_DATABASE_URL=crashd.settings.database_url, CRASHD_REDIS_URL=crashd.settings.redis_url or "",
                   CRASHD_QUEUE_NAME=crashd.settings.queue_name)
    return subprocess.run([sys.executable, "-m", "server.cli", "reprocess", *selector], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_reprocess_command_reprocesses_a_group(crashd: Crashd) -> None:
    crash_id = upload_dump(crashd, "tester-1")
    crashd.drain()
    first = crashd.crash(crash_id)
    done = run_reprocess(crashd, "--group", str(first["group_id"]))
    assert done.returncode == 0, done.stderr
    assert "1 crashes" in done.stderr and "reprocess [" in done.stderr
    crashd.drain()  # RQ: the command only enqueued
    again = crashd.crash(crash_id)
    assert again["processed_at"] > first["processed_at"] and again["group_id"] == first["group_id"]
    assert groups(crashd)[first["signature"]] == (1, 1)


def test_reprocess_all_and_since(crashd: Crashd) -> None:
    """--all and --since hand plain crash ids to the queue (a regression: they once passed
    database rows, which RQ turned into job ids like "process:('…',)")."""
    ids = [upload_dump(crashd, f"tester-{i}") for i in range(2)]
    crashd.drain()
    before = {c: crashd.crash(c)["processed_at"] for c in ids}
    for selector in (["--all"], ["--since", "1h"]):
        done = run_reprocess(crashd, *selector)
        assert done.returncode == 0, done.stderr
        assert "2 crashes" in done.stderr
        crashd.drain()
        for crash_id in ids:
            crash = crashd.crash(crash_id)
            assert crash["status"] == "processed" and crash["processed_at"] > before[crash_id]
            before[crash_id] = crash["processed_at"]


def test_reprocess_failed_retries_the_failed_crashes(crashd: Crashd) -> None:
    """Issue 11 item 6: `crashd reprocess --failed` gives failed crashes their attempts again
    (here: failed after one attempt while the blob store could not take reports)."""
    crashd.settings.max_attempts = 1
    blocker = crashd.settings.blob_dir / "processed"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")  # a file where the report folder goes: every report write fails
    crash_id = upload_dump(crashd, "tester-1")
    crashd.drain()
    assert crashd.crash(crash_id)["status"] == "failed"
    blocker.unlink()
    done = run_reprocess(crashd, "--failed")
    assert done.returncode == 0, done.stderr
    assert "1 crashes" in done.stderr
    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed" and crash["group_id"] is not None and crash["processing_error"] is None
