"""Debug files no crash uses: processing records each module's last use (SymbolUseRule),
`crashd symbols prune` and CRASHD_SYMBOL_RETENTION_DAYS delete the unused ones whole (store
folder, cache folder, rows), on SQLite and on PostgreSQL + RQ."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from schemas.tables import utcnow
from server import cli
from storage.symbol_use import SYMBOL_FILES, mark_used
from symbolicator.minidump import read_minidump
from symbolicator.symbols.cache import module_cache_dir
from symbolicator.symbols.sources import store_root
from workers import jobs, symbol_prune

from conftest import Crashd
from dashboard_world import BETA2, TICK, World, game_dump, seed, upload_crash
from uploads import multipart

UNUSED_ID = "0123456789ABCDEF0123456789ABCDEF0"
UNUSED_SYM = f"MODULE Linux x86_64 {UNUSED_ID} libunused.so\nFUNC 1000 10 0 never_called\n"


def upload(crashd: Crashd, name: str, text: str) -> None:
    body, ctype = multipart({}, [("symbol_file", name, text.encode(), "application/octet-stream")])
    response = crashd.client.post(f"/api/{crashd.project.id}/symbols/?key={crashd.upload_token}", content=body,
                                  headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text


def modules(crashd: Crashd) -> dict[str, tuple[object, object]]:
    """debug_file -> (last_used_at, uploaded_at) of the symbol_files rows."""
    with crashd.state.ctx.engine.connect() as conn:
        rows = conn.execute(select(SYMBOL_FILES.c.debug_file, SYMBOL_FILES.c.last_used_at,
                                   SYMBOL_FILES.c.uploaded_at)).all()
    return {r.debug_file: (r.last_used_at, r.uploaded_at) for r in rows}


def age(crashd: Crashd, debug_file: str, **days: int) -> None:
    """Move a module's uploaded_at / last_used_at that many days back."""
    values = {f"{k}_at": utcnow() - timedelta(days=v) for k, v in days.items()}
    with crashd.state.ctx.engine.begin() as conn:
        conn.execute(update(SYMBOL_FILES).where(SYMBOL_FILES.c.debug_file == debug_file).values(**values))


@pytest.fixture
def world(crashd: Crashd) -> World:
    """The dashboard world (its crashes load the `game` module's symbols) and a module no
    crash loads, both uploaded 100 days ago."""
    world = seed(crashd)
    upload(crashd, "libunused.so.sym", UNUSED_SYM)
    age(crashd, "game", uploaded=100)
    age(crashd, "libunused.so", uploaded=100)
    return world


def folders(crashd: Crashd, debug_file: str, debug_id: str) -> list[Path]:
    """The module's folders in the project's symbol store and in its caches."""
    settings, project_id = crashd.settings, crashd.project.id
    return [store_root(settings.symbols_dir, project_id) / debug_file / debug_id,
            module_cache_dir(store_root(settings.symbol_cache_dir, project_id), debug_file, debug_id)]


def test_processing_records_use_once_a_day(crashd: Crashd, world: World) -> None:
    used, _ = modules(crashd)["game"]
    assert used is not None  # the world's crashes loaded it
    assert modules(crashd)["libunused.so"][0] is None
    game_id = read_minidump(game_dump(TICK)).modules[0].debug_id
    engine, now = crashd.state.ctx.engine, utcnow()
    assert mark_used(engine, modules={("game", game_id)}, now=now) == 0  # used today already
    assert mark_used(engine, modules={("GAME", game_id.lower())}, now=now + timedelta(days=2)) == 1  # case-blind
    assert mark_used(engine, modules={("game", None), ("", "")}, now=now) == 0


def test_a_worker_records_a_module_once_a_day_without_asking_again(crashd: Crashd, world: World) -> None:
    with crashd.state.ctx.engine.begin() as conn:  # forget the use in the database only
        conn.execute(update(SYMBOL_FILES).values(last_used_at=None))
    upload_crash(crashd, crashd.client, game_dump(TICK, 90), "tester-2", BETA2)
    crashd.drain()
    assert modules(crashd)["game"][0] is None  # this process recorded it today: no query
    jobs.current_context().symbols_marked.clear()  # a new worker process
    upload_crash(crashd, crashd.client, game_dump(TICK, 91), "tester-2", BETA2)
    crashd.drain()
    assert modules(crashd)["game"][0] is not None


def test_prune_deletes_only_modules_no_crash_used(crashd: Crashd, world: World) -> None:
    game_id = read_minidump(game_dump(TICK)).modules[0].debug_id
    for folder in folders(crashd, "libunused.so", UNUSED_ID) + folders(crashd, "game", game_id):
        assert folder.is_dir(), folder
    before = utcnow() - timedelta(days=90)
    dry = symbol_prune.prune_symbols(crashd.state.ctx, before=before, dry_run=True)
    assert (dry.modules, dry.bytes) == (1, len(UNUSED_SYM)) and "libunused.so" in modules(crashd)
    generation = crashd.settings.symbols_dir / ".generation"
    stamp = generation.stat().st_mtime_ns
    done = symbol_prune.prune_symbols(crashd.state.ctx, before=before)
    assert (done.modules, done.bytes, done.failed) == (1, len(UNUSED_SYM), [])
    assert sorted(modules(crashd)) == ["game"]
    for folder in folders(crashd, "libunused.so", UNUSED_ID):
        assert not folder.exists() and not folder.parent.exists(), folder  # <debug_file>/ too
    for folder in folders(crashd, "game", game_id):
        assert folder.is_dir(), folder
    assert generation.stat().st_mtime_ns >= stamp
    listed = crashd.client.get("/api/symbols?project=game", headers=crashd.admin).json()
    assert "libunused.so" not in json.dumps(listed)

    age(crashd, "game", last_used=95)  # no crash for 95 days: it goes too
    assert symbol_prune.prune_symbols(crashd.state.ctx, before=before).modules == 1
    assert modules(crashd) == {} and not any(f.exists() for f in folders(crashd, "game", game_id))


def test_a_module_uploaded_recently_is_kept_until_crashes_had_time(crashd: Crashd, world: World) -> None:
    upload(crashd, "libnew.so.sym", UNUSED_SYM.replace("libunused.so", "libnew.so").replace(UNUSED_ID, "F" * 33))
    pruned = symbol_prune.prune_symbols(crashd.state.ctx, before=utcnow() - timedelta(days=90))
    assert pruned.modules == 1 and sorted(modules(crashd)) == ["game", "libnew.so"]


def test_crashd_symbols_prune_command_and_sweeper_tick(crashd: Crashd, world: World,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRASHD_DATA_DIR", str(crashd.settings.data_dir))
    if crashd.settings.database_url:
        monkeypatch.setenv("CRASHD_DATABASE_URL", crashd.settings.database_url)
    monkeypatch.setattr(sys, "argv", ["crashd"])
    capsys.readouterr()
    assert cli.main(["symbols", "prune"]) == 2
    assert "--unused-for 90d, or set CRASHD_SYMBOL_RETENTION_DAYS" in capsys.readouterr().err
    assert cli.main(["symbols", "prune", "--unused-for", "90d", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would delete 1 modules (0.0 MB) unused since ")
    assert "libunused.so" in modules(crashd)

    ctx = crashd.state.ctx
    assert symbol_prune.tick(ctx) is None  # unset: keep everything
    ctx.settings.symbol_retention_days = 90
    try:
        pruned = symbol_prune.tick(ctx)
    finally:
        ctx.settings.symbol_retention_days = None
    assert pruned is not None and pruned.modules == 1 and sorted(modules(crashd)) == ["game"]
    assert cli.main(["symbols", "prune", "--unused-for", "90d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["modules"] == 0
