"""sources: the Breakpad folder layout on disk, and an upstream symbol server over real HTTP
(a http.server on 127.0.0.1 in a thread): hit, 404 remembered, 5xx and timeouts not."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from symbolicator.symbols.sources import MISS_NAME, FetchStatus, HttpSource, LocalDirSource, breakpad_layout, sym_file_name

from conftest import free_port, require_corpus

TEST_APP_ID = "5A9832E5287241C1838ED98914E9B7FF1"
SYM = b"MODULE windows x86 5A9832E5287241C1838ED98914E9B7FF1 test_app.pdb\nFUNC 1000 10 0 main\n"


# -- the layout -------------------------------------------------------------------------------


def test_breakpad_layout_names() -> None:
    assert breakpad_layout("test_app.pdb", TEST_APP_ID.lower()) == ("test_app.pdb", TEST_APP_ID)
    assert breakpad_layout("c:\\build\\out\\test_app.pdb", TEST_APP_ID) == ("test_app.pdb", TEST_APP_ID)
    assert breakpad_layout("/usr/lib/libc.so.6", "AB0") == ("libc.so.6", "AB0")
    # a dot-name could reach into the store's own folders: .projects/<id>/ is another project's store
    for debug_file, debug_id in [(None, TEST_APP_ID), ("a.pdb", None), ("", "AB"), ("..", "AB"),
                                 ("a.pdb", "../../etc"), ("a.pdb", "5A98-32E5"), (".projects", "1"),
                                 ("/lib/.staging", "AB")]:
        assert breakpad_layout(debug_file, debug_id) is None, (debug_file, debug_id)


def test_sym_file_names() -> None:
    assert sym_file_name("test_app.pdb") == "test_app.sym"
    assert sym_file_name("KERNEL32.PDB") == "KERNEL32.sym"
    assert sym_file_name("libc.so.6") == "libc.so.6.sym"
    assert sym_file_name("crash-client") == "crash-client.sym"


def test_local_dir_finds_corpus_symbols_ignoring_id_case() -> None:
    root = require_corpus() / "win-x86-breakpad-minidump2" / "symbols"
    source = LocalDirSource(root)
    found = source.fetch("test_app.pdb", TEST_APP_ID.lower())
    assert found.status is FetchStatus.found
    assert found.path == root / "test_app.pdb" / TEST_APP_ID / "test_app.sym"
    assert source.fetch("c:\\symbols\\test_app.pdb", TEST_APP_ID).path == found.path
    assert source.fetch("TEST_APP.PDB", TEST_APP_ID).path == found.path  # Windows stores ignore case
    assert source.fetch("test_app.pdb", "0" * 33).status is FetchStatus.not_found
    assert source.fetch("nothere.pdb", TEST_APP_ID).status is FetchStatus.not_found
    assert source.fetch("test_app.pdb", None).status is FetchStatus.not_found


def test_local_dir_prefers_the_sym_file_and_skips_partial_files(tmp_path: Path) -> None:
    folder = tmp_path / "app.pdb" / TEST_APP_ID
    folder.mkdir(parents=True)
    (folder / ".app.sym-upload.part").write_bytes(SYM)
    (folder / "upload.tmp").write_bytes(SYM)
    source = LocalDirSource(tmp_path)
    assert source.fetch("app.pdb", TEST_APP_ID).status is FetchStatus.not_found
    (folder / "app.pdb").write_bytes(b"Microsoft C/C++ MSF 7.00\r\n")
    assert source.fetch("app.pdb", TEST_APP_ID).path == folder / "app.pdb"  # a native PDB will do
    (folder / "other.sym").write_bytes(SYM)
    assert source.fetch("app.pdb", TEST_APP_ID).path == folder / "other.sym"
    (folder / "app.sym").write_bytes(SYM)
    assert source.fetch("app.pdb", TEST_APP_ID).path == folder / "app.sym"


# -- an upstream symbol server over HTTP --------------------------------------------------------


@dataclass
class SymbolServer:
    """Answers from routes {path: (status, body)}; counts requests per path."""

    url: str
    routes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0


@pytest.fixture
def server() -> Iterator[SymbolServer]:
    port = free_port()
    state = SymbolServer(f"http://127.0.0.1:{port}/symbols")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            if state.delay:
                time.sleep(state.delay)
            status, body = state.routes.get(self.path, (404, b"not here"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


PATH = f"/symbols/test_app.pdb/{TEST_APP_ID}/test_app.sym"


def test_http_hit_is_downloaded_once(server: SymbolServer, tmp_path: Path) -> None:
    server.routes[PATH] = (200, SYM)
    source = HttpSource(server.url, tmp_path)
    found = source.fetch("test_app.pdb", TEST_APP_ID.lower())
    assert found.status is FetchStatus.found and found.path is not None
    assert found.path.read_bytes() == SYM and found.path.name == "test_app.sym"
    assert found.path.parent.name == TEST_APP_ID and found.path.parent.parent.name == "test_app.pdb"
    assert source.fetch("test_app.pdb", TEST_APP_ID).path == found.path
    assert server.hits == {PATH: 1}  # the second answer came from disk
    assert not [p for p in found.path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_http_404_is_remembered_for_the_miss_ttl(server: SymbolServer, tmp_path: Path) -> None:
    source = HttpSource(server.url, tmp_path, miss_ttl_seconds=3600)
    first = source.fetch("test_app.pdb", TEST_APP_ID)
    assert (first.status, first.reason) == (FetchStatus.not_found, "http_404")
    again = source.fetch("test_app.pdb", TEST_APP_ID)
    assert (again.status, again.reason) == (FetchStatus.not_found, "cached_http_404")
    assert server.hits == {PATH: 1}
    # once the miss is older than the TTL, the server is asked again (and now has it)
    server.routes[PATH] = (200, SYM)
    assert HttpSource(server.url, tmp_path, miss_ttl_seconds=0).fetch("test_app.pdb", TEST_APP_ID).status is FetchStatus.found
    assert server.hits == {PATH: 2}


def test_http_server_error_is_not_remembered(server: SymbolServer, tmp_path: Path) -> None:
    server.routes[PATH] = (500, b"boom")
    source = HttpSource(server.url, tmp_path)
    for _ in range(2):
        result = source.fetch("test_app.pdb", TEST_APP_ID)
        assert (result.status, result.reason) == (FetchStatus.unavailable, "http_500")
    assert server.hits == {PATH: 2}
    folder = source.local.root / "test_app.pdb" / TEST_APP_ID
    assert not (folder / MISS_NAME).exists()
    server.routes[PATH] = (200, SYM)
    assert source.fetch("test_app.pdb", TEST_APP_ID).status is FetchStatus.found


def test_http_timeout_and_refused_connection_are_unavailable(server: SymbolServer, tmp_path: Path) -> None:
    server.routes[PATH] = (200, SYM)
    server.delay = 1.0
    slow = HttpSource(server.url, tmp_path, timeout_seconds=0.2)
    assert slow.fetch("test_app.pdb", TEST_APP_ID).reason == "timeout"
    refused = HttpSource(f"http://127.0.0.1:{free_port()}", tmp_path)
    result = refused.fetch("test_app.pdb", TEST_APP_ID)
    assert result.status is FetchStatus.unavailable and result.reason == "ConnectError"


def test_http_answer_that_is_not_a_sym_file_is_malformed(server: SymbolServer, tmp_path: Path) -> None:
    server.routes[PATH] = (200, b"<html>login required</html>")
    source = HttpSource(server.url, tmp_path)
    result = source.fetch("test_app.pdb", TEST_APP_ID)
    assert (result.status, result.reason) == (FetchStatus.malformed, "not_a_sym_file")
    assert source.fetch("test_app.pdb", TEST_APP_ID).status is FetchStatus.malformed  # remembered
    assert server.hits == {PATH: 1}
    assert not list((source.local.root / "test_app.pdb" / TEST_APP_ID).glob("*.sym"))


def test_http_source_serves_a_real_corpus_file(server: SymbolServer, tmp_path: Path) -> None:
    sym = next((require_corpus() / "win-x86-breakpad-minidump2" / "symbols" / "kernel32.pdb").glob("*/kernel32.sym"))
    server.routes[f"/symbols/kernel32.pdb/{sym.parent.name}/kernel32.sym"] = (200, sym.read_bytes())
    found = HttpSource(server.url + "/", tmp_path).fetch("kernel32.pdb", sym.parent.name)
    assert found.status is FetchStatus.found and found.path is not None
    assert found.path.read_bytes() == sym.read_bytes()
