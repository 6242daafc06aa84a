"""CachedSymbolProvider: statuses (loaded, missing, corrupt, unavailable), one source lookup per
module, a bounded set of loaded modules, and settings wiring."""

from __future__ import annotations

import shutil
from pathlib import Path

from test_symbol_sources import PATH, SYM, TEST_APP_ID, SymbolServer, server  # noqa: F401 - a fixture

from schemas.settings import Settings
from schemas.stack import Module
from symbolicator.symbols.provider import CachedSymbolProvider
from symbolicator.symbols.sources import FetchResult, LocalDirSource
from symbolicator.symbols.types import SymbolProvider, SymbolStatus

from conftest import require_corpus

INLINE_ID = "BBA6FA10B8AAB33D00000000000000000"
ID = "0123456789ABCDEF0123456789ABCDEF0"


class CountingSource(LocalDirSource):
    """A local folder that counts how often it is asked."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls = 0

    def fetch(self, debug_file: str, debug_id: str) -> FetchResult:
        self.calls += 1
        return super().fetch(debug_file, debug_id)


class BrokenSource(LocalDirSource):
    def fetch(self, debug_file: str, debug_id: str) -> FetchResult:
        raise RuntimeError("disk on fire")


def module(debug_file: str | None, debug_id: str | None, code_file: str = "m") -> Module:
    return Module(base_addr=0x200000, size=0x100000, code_file=code_file, debug_file=debug_file, debug_id=debug_id)


def test_loaded_module_answers_every_lookup(tmp_path: Path) -> None:
    root = require_corpus() / "linux-x64-breakpad-inline" / "symbols"
    provider: SymbolProvider = CachedSymbolProvider([LocalDirSource(root)], tmp_path)
    inline = module("linux_inline", INLINE_ID.lower())
    assert provider.status(inline) is SymbolStatus.loaded
    assert [s.function for s in provider.symbolize(inline, 0x161B6)] == ["func()", "bar()", "foo()", "main"]
    assert provider.function_at(inline, 0x161B6).name == "main"
    assert provider.cfi_rules(inline, 0x161B6) is None  # this file has no STACK CFI
    assert provider.win_frame_info(inline, 0x161B6) is None


def test_x86_module_through_the_provider(tmp_path: Path) -> None:
    root = require_corpus() / "win-x86-breakpad-minidump2" / "symbols"
    provider = CachedSymbolProvider([LocalDirSource(root)], tmp_path)
    app = module("test_app.pdb", TEST_APP_ID, "c:\\test_app.exe")
    info = provider.win_frame_info(app, 0x429E)
    assert info is not None and info.type == 4 and info.program_string
    assert provider.function_at(app, 0x429E).name == "`anonymous namespace'::CrashFunction"
    frame = provider.symbolize(app, 0x429E)[-1]
    assert (frame.function, frame.file, frame.line) == ("`anonymous namespace'::CrashFunction", "c:\\test_app.cc", 58)


def test_missing_and_unidentified_modules(tmp_path: Path) -> None:
    provider = CachedSymbolProvider([LocalDirSource(tmp_path / "empty")], tmp_path / "cache")
    for m in (module("nothere.so", "AB" * 16 + "0"), module(None, "AB0"), module("a.so", None), module("..", "AB")):
        assert provider.status(m) is SymbolStatus.missing
        assert provider.symbolize(m, 0x10) == [] and provider.function_at(m, 0x10) is None
        assert provider.cfi_rules(m, 0x10) is None and provider.win_frame_info(m, 0x10) is None
    assert provider.reason(module("nothere.so", "AB" * 16 + "0")) == "not_found"
    assert provider.reason(module(None, "AB0")) == "no_debug_id"


def test_corrupt_module(tmp_path: Path) -> None:
    folder = tmp_path / "symbols" / "bad.so" / ID
    folder.mkdir(parents=True)
    (folder / "bad.so.sym").write_bytes(f"MODULE Linux x86_64 {ID} bad.so\nFUNC 1000 10 0 f\nINLINE x y z q r\n".encode())
    provider = CachedSymbolProvider([LocalDirSource(tmp_path / "symbols")], tmp_path / "cache")
    bad = module("bad.so", ID)
    assert provider.status(bad) is SymbolStatus.corrupt
    assert provider.reason(bad) == "symcache_failed"
    assert provider.symbolize(bad, 0x1000) == [] and provider.function_at(bad, 0x1000) is None
    (folder / "garbage").write_bytes(b"\x7fELF-but-not-really")
    (folder / "bad.so.sym").unlink()
    assert CachedSymbolProvider([LocalDirSource(tmp_path / "symbols")], tmp_path / "cache").status(bad) is SymbolStatus.corrupt


def test_a_failing_source_makes_the_module_unavailable(tmp_path: Path) -> None:
    provider = CachedSymbolProvider([BrokenSource(tmp_path)], tmp_path / "cache")
    m = module("a.so", "AB0")
    assert provider.status(m) is SymbolStatus.unavailable and provider.reason(m) == "RuntimeError"


def test_sources_are_asked_once_per_module(tmp_path: Path) -> None:
    source = CountingSource(require_corpus() / "linux-x64-breakpad-inline" / "symbols")
    provider = CachedSymbolProvider([source], tmp_path)
    inline, missing = module("linux_inline", INLINE_ID), module("other", "AB0")
    for offset in range(0x15B30, 0x161FF, 3):
        provider.symbolize(inline, offset)
        provider.cfi_rules(inline, offset)
        provider.function_at(missing, offset)
    assert source.calls == 2


def test_missing_is_rechecked_after_a_while(tmp_path: Path) -> None:
    source = CountingSource(tmp_path / "symbols")
    provider = CachedSymbolProvider([source], tmp_path / "cache", recheck_seconds=0)
    m = module("late.so", ID)
    assert provider.status(m) is SymbolStatus.missing
    folder = tmp_path / "symbols" / "late.so" / ID
    folder.mkdir(parents=True)
    (folder / "late.so.sym").write_bytes(f"MODULE Linux x86_64 {ID} late.so\nFUNC 1000 10 0 late\n".encode())
    assert provider.status(m) is SymbolStatus.loaded and provider.function_at(m, 0x1004).name == "late"


def test_loaded_modules_are_bounded(tmp_path: Path) -> None:
    root = require_corpus() / "win-x86-breakpad-minidump2" / "symbols"
    source = CountingSource(root)
    provider = CachedSymbolProvider([source], tmp_path, max_loaded=1)
    app = module("test_app.pdb", TEST_APP_ID)
    kernel = module("kernel32.pdb", next((root / "kernel32.pdb").iterdir()).name)
    for _ in range(3):
        assert provider.function_at(app, 0x41B0).name == "main"
        assert provider.function_at(kernel, 0x9B47) is not None
        assert len(provider._loaded) == 1
    assert source.calls == 6  # each reload asks again; the caches on disk are reused
    assert provider.loaded_bytes() > 0


def test_forget_drops_a_remembered_miss(tmp_path: Path) -> None:
    provider = CachedSymbolProvider([LocalDirSource(tmp_path / "symbols")], tmp_path / "cache")
    m = module("test_app.pdb", TEST_APP_ID)
    assert provider.status(m) is SymbolStatus.missing
    shutil.copytree(require_corpus() / "win-x86-breakpad-minidump2" / "symbols" / "test_app.pdb",
                    tmp_path / "symbols" / "test_app.pdb")
    assert provider.status(m) is SymbolStatus.missing  # remembered for recheck_seconds
    provider.forget("test_app.pdb", TEST_APP_ID)
    assert provider.status(m) is SymbolStatus.loaded


def test_a_store_change_in_another_process_drops_remembered_misses(tmp_path: Path) -> None:
    """The web process takes an upload and bumps the generation file; a worker process that
    remembered the module as missing looks again at once."""
    from symbolicator.symbols.sources import bump_generation, generation_file

    symbols = tmp_path / "symbols"
    provider = CachedSymbolProvider([LocalDirSource(symbols)], tmp_path / "cache",
                                    generation_file=generation_file(symbols))
    provider.generation_poll_seconds = 0
    m = module("test_app.pdb", TEST_APP_ID)
    assert provider.status(m) is SymbolStatus.missing
    shutil.copytree(require_corpus() / "win-x86-breakpad-minidump2" / "symbols" / "test_app.pdb",
                    symbols / "test_app.pdb")
    assert provider.status(m) is SymbolStatus.missing  # remembered: nothing said the store changed
    bump_generation(symbols)
    assert provider.status(m) is SymbolStatus.loaded


def test_from_settings_uses_uploaded_symbols_then_symbol_servers(server: SymbolServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, symbol_urls=[server.url])
    shutil.copytree(require_corpus() / "linux-x64-breakpad-inline" / "symbols", settings.symbols_dir)
    server.routes[PATH] = (200, SYM)
    provider = CachedSymbolProvider.from_settings(settings)
    try:
        assert provider.status(module("linux_inline", INLINE_ID)) is SymbolStatus.loaded
        app = module("test_app.pdb", TEST_APP_ID)
        assert provider.status(app) is SymbolStatus.loaded
        assert provider.function_at(app, 0x1004).name == "main"
        assert provider.status(module("gone.pdb", "AB0")) is SymbolStatus.missing
        server.routes["/symbols/down.pdb/AB0/down.sym"] = (503, b"")
        assert provider.status(module("down.pdb", "AB0")) is SymbolStatus.unavailable
        assert provider.reason(module("down.pdb", "AB0")) == "http_503"
        assert (settings.symbol_cache_dir / "linux_inline" / INLINE_ID).is_dir()
    finally:
        provider.close()


def test_a_bad_local_file_does_not_hide_a_good_upstream_one(server: SymbolServer, tmp_path: Path) -> None:
    from symbolicator.symbols.sources import HttpSource

    folder = tmp_path / "symbols" / "test_app.pdb" / TEST_APP_ID
    folder.mkdir(parents=True)
    (folder / "test_app.sym").write_bytes(
        b"MODULE windows x86 " + TEST_APP_ID.encode() + b" test_app.pdb\nFUNC 1000 10 0 f\nINLINE x y z q r\n")
    server.routes[PATH] = (200, SYM)
    upstream = HttpSource(server.url, tmp_path / "downloads")
    provider = CachedSymbolProvider([LocalDirSource(tmp_path / "symbols"), upstream], tmp_path / "cache")
    app = module("test_app.pdb", TEST_APP_ID)
    assert provider.status(app) is SymbolStatus.loaded and provider.function_at(app, 0x1000).name == "main"
    # a new worker: the bad local file is remembered as bad, the download's caches are reused
    index = tmp_path / "cache" / "test_app.pdb" / TEST_APP_ID / "symbols.index"
    built = index.stat().st_mtime_ns
    again = CachedSymbolProvider([LocalDirSource(tmp_path / "symbols"), upstream], tmp_path / "cache")
    assert again.function_at(app, 0x1000).name == "main" and index.stat().st_mtime_ns == built
    server.routes[PATH] = (404, b"")
    alone = CachedSymbolProvider([LocalDirSource(tmp_path / "symbols")], tmp_path / "cache2")
    assert alone.status(app) is SymbolStatus.corrupt
