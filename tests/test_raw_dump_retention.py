"""Raw dump retention (CRASHD_RAW_DUMP_DAYS, `crashd prune --raw-dumps`): a crash done with
processing loses its raw minidump after N days while its processed report, row, group counts,
attachments and page stay; reprocessing it keeps its result with a note. Both backends."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from schemas.tables import utcnow
from server import cli
from storage.groups import CRASHES
from workers import retention
from workers.reprocess import enqueue_all

from conftest import Crashd
from dashboard_world import PASSWORD, create_user, csrf_of

CASE = "linux-x64-generated-crashpad-segv-O0"


def age(crashd: Crashd, crash_id: str, days: float) -> None:
    with crashd.state.ctx.engine.begin() as conn:
        conn.execute(update(CRASHES).where(CRASHES.c.crash_id == crash_id)
                     .values(received_at=utcnow() - timedelta(days=days)))


def minidump_key(crashd: Crashd, crash_id: str) -> str | None:
    with crashd.state.ctx.engine.connect() as conn:
        return conn.execute(select(CRASHES.c.minidump_key).where(CRASHES.c.crash_id == crash_id)).scalar_one()


def group_counts(crashd: Crashd, group_id: int) -> tuple[int, int]:
    group = crashd.client.get(f"/api/groups/{group_id}", headers=crashd.admin).json()
    return group["crash_count"], group["tester_count"]


@pytest.fixture
def crashes(crashd: Crashd) -> tuple[str, str]:
    """(old, new): two processed crashes of one group, the first received 40 days ago."""
    crashd.add_corpus_symbols(CASE)
    old = crashd.upload_corpus(CASE, guid="g1", tester_id="t1")
    new = crashd.upload_corpus(CASE, guid="g2", tester_id="t2")
    crashd.drain()
    age(crashd, old, 40)
    return old, new


def test_the_sweep_deletes_old_raw_dumps_and_keeps_the_crash(crashd: Crashd, crashes: tuple[str, str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = crashes
    before = crashd.crash(old)
    assert before["status"] == "processed" and before["minidump"]["deleted"] is None
    key = minidump_key(crashd, old)
    assert key is not None and crashd.state.ctx.blobs.exists(key)
    counts = group_counts(crashd, before["group_id"])

    assert crashd.settings.raw_dump_days == 30  # the default
    assert retention.tick(crashd.state.ctx) is None  # CRASHD_RETENTION_DAYS unset: no crash goes

    assert not crashd.state.ctx.blobs.exists(key) and minidump_key(crashd, old) is None
    assert minidump_key(crashd, new) is not None  # 0 days old: kept
    after = crashd.crash(old)
    assert after["status"] == "processed" and after["signature"] == before["signature"]
    assert after["stackwalk"] == before["stackwalk"]  # the processed report stays
    assert after["minidump"] == {"size": before["minidump"]["size"], "sha256": before["minidump"]["sha256"],
                                 "deleted": "raw dump deleted after 30 days"}
    assert after["processed"]["raw_dump"]["after_days"] == 30
    assert group_counts(crashd, before["group_id"]) == counts

    for url in (f"/api/crashes/{old}/minidump", f"/api/crashes/{old}/minidump?vendor_safe=1"):
        response = crashd.client.get(url, headers=crashd.admin)
        assert response.status_code == 410 and "raw dump deleted after 30 days" in response.json()["detail"]
    assert crashd.client.get(f"/api/crashes/{new}/minidump", headers=crashd.admin).status_code == 200

    page = crashd_page(crashd, old, monkeypatch)
    assert "Raw dump deleted after 30 days" in page and f'href="/crashes/{old}/minidump' not in page
    assert retention.raw_dump_tick(crashd.state.ctx) is not None  # nothing left to do: a no-op
    assert crashd.crash(old)["minidump"]["deleted"] == "raw dump deleted after 30 days"


def crashd_page(crashd: Crashd, crash_id: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The crash page as a signed-in admin sees it (and its minidump link answers 410)."""
    create_user(crashd, "alice", "admin", monkeypatch)
    client = TestClient(crashd.client.app)
    token = csrf_of(client.get("/login?next=/").text)
    client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": "/"})
    response = client.get(f"/crashes/{crash_id}")
    assert response.status_code == 200
    gone = client.get(f"/crashes/{crash_id}/minidump")
    assert gone.status_code == 410 and "raw dump deleted after 30 days" in gone.text
    return response.text


def test_reprocessing_keeps_the_result_with_a_note(crashd: Crashd, crashes: tuple[str, str]) -> None:
    old, _ = crashes
    before = crashd.crash(old)
    retention.tick(crashd.state.ctx)
    for _ in range(2):  # however often: one note
        assert enqueue_all(crashd.state.queue, [old]) == 1
        crashd.drain()
    after = crashd.crash(old)
    assert after["status"] == "processed" and after["processing_error"] is None
    assert (after["signature"], after["group_id"]) == (before["signature"], before["group_id"])
    assert after["stackwalk"] == before["stackwalk"]
    notes = after["processed"]["notes"]
    assert [n for n in notes if n.startswith("not processed again")] == [
        "not processed again: its raw dump was deleted after 30 days (CRASHD_RAW_DUMP_DAYS); "
        "this is the result of its last processing"]
    assert group_counts(crashd, before["group_id"])[0] == 2


def test_zero_days_keeps_raw_dumps_and_waiting_crashes_keep_theirs(crashd: Crashd,
                                                                   crashes: tuple[str, str]) -> None:
    old, new = crashes
    crashd.settings.raw_dump_days = 0
    try:
        assert retention.raw_dump_tick(crashd.state.ctx) is None
    finally:
        crashd.settings.raw_dump_days = 30
    assert minidump_key(crashd, old) is not None
    with crashd.state.ctx.engine.begin() as conn:  # waiting to be processed again: its dump is still needed
        conn.execute(update(CRASHES).where(CRASHES.c.crash_id == old).values(status="received"))
    pruned = retention.raw_dump_tick(crashd.state.ctx)
    assert pruned is not None and pruned.crashes == 0 and minidump_key(crashd, old) is not None


def test_crashd_prune_raw_dumps(crashd: Crashd, crashes: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    old, new = crashes
    monkeypatch.setenv("CRASHD_DATA_DIR", str(crashd.settings.data_dir))
    if crashd.settings.database_url:
        monkeypatch.setenv("CRASHD_DATABASE_URL", crashd.settings.database_url)
    monkeypatch.setattr(sys, "argv", ["crashd"])
    capsys.readouterr()
    assert cli.main(["prune", "--raw-dumps", "--older-than", "10d", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["raw_dumps"] == 1
    assert minidump_key(crashd, old) is not None
    assert cli.main(["prune", "--raw-dumps", "--older-than", "10d"]) == 0
    assert "deleted the raw dumps of 1 crashes" in capsys.readouterr().out
    assert minidump_key(crashd, old) is None and minidump_key(crashd, new) is not None
    assert crashd.crash(old)["minidump"]["deleted"] == "raw dump deleted after 10 days"
    assert crashd.crash(old)["status"] == "processed"
