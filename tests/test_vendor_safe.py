"""Vendor-safe dumps (symbolicator/vendor_safe.py, server/api/dumps.py): the memory the stack
walks do not read is zeroed, the environment too, and every thread walks exactly as in the raw
dump: on every corpus dump, on dumps with planted secrets, and through both download routes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from schemas.stack import Thread
from symbolicator.minidump import read_minidump
from symbolicator.minidump.layout import read_layout
from symbolicator.process import local_provider, walk_all_threads
from symbolicator.symbols.types import SymbolProvider
from symbolicator.vendor_safe import (
    ENVIRONMENT_STREAMS,
    NotVendorSafe,
    compare_walks,
    frame_keys,
    merge,
    stack_kept,
    subtract,
    vendor_safe,
)

from conftest import Crashd, corpus_params, require_corpus
from dashboard_world import PASSWORD, create_user, csrf_of
from minidump_writer import (
    ARCH_AMD64,
    LINUX_CMD_LINE,
    LINUX_ENVIRON,
    PLATFORM_LINUX,
    MinidumpWriter,
    ModuleSpec,
    ThreadSpec,
    amd64_context,
    elf_build_id,
)

SECRET = b"SECRET_TOKEN=zk-4f9a0c"


def walk(data: bytes, provider: SymbolProvider) -> list[Thread]:
    return walk_all_threads(read_minidump(data), provider)[0]


def check_copy(raw: bytes, copy: bytes, provider: SymbolProvider) -> int:
    """Assert what the copy must be: the same size, every frame of every thread the same,
    nothing changed outside captured memory and the environment streams, and every byte of
    memory outside what the walks read zero. Returns how many bytes differ."""
    assert len(copy) == len(raw)
    before, after = walk(raw, provider), walk(copy, provider)
    assert [frame_keys(t) for t in after] == [frame_keys(t) for t in before]
    layout = read_layout(raw)
    spans: dict[int, tuple[int, int]] = {}
    walk_all_threads(read_minidump(raw), provider, spans=spans)
    kept = merge(stack_kept(read_minidump(raw), layout, spans) + layout.structure
                 + [(r, r + s) for t, (r, s) in layout.streams.items() if t not in ENVIRONMENT_STREAMS])
    zeroable = merge([(m.rva, m.rva + m.size) for m in layout.memory]
                     + [(r, r + s) for t, (r, s) in layout.streams.items() if t in ENVIRONMENT_STREAMS])
    for start, end in subtract(zeroable, kept):
        assert copy[start:end] == bytes(end - start), f"bytes {start:#x}..{end:#x} are not zero"
    changed = [i for i in range(len(raw)) if raw[i] != copy[i]] if len(raw) < 4 << 20 else []
    outside = subtract(merge([(i, i + 1) for i in changed]), zeroable)
    assert outside == [], f"bytes outside memory and the environment changed: {outside[:3]}"
    return len(changed)


# -- the corpus -------------------------------------------------------------------------------


@pytest.mark.parametrize("dump_path", corpus_params())
def test_vendor_safe_walks_identically_on_the_corpus(dump_path: Path | None, tmp_path: Path) -> None:
    if dump_path is None:
        require_corpus()
        return
    raw = dump_path.read_bytes()
    provider = local_provider([dump_path.parent / "symbols"], tmp_path / "cache")
    made = vendor_safe(raw, provider)  # raises NotVendorSafe when any thread walks differently
    assert check_copy(raw, made.data, provider) <= made.zeroed
    if any(t.frames for t in walk(raw, provider)):
        assert made.kept > 0 and made.threads == len(read_minidump(raw).threads)


def test_the_comparison_sees_a_dump_that_walks_differently(tmp_path: Path) -> None:
    """Zeroing every stack whole changes the walks: the check is not vacuous."""
    raw = secret_dump()
    provider = local_provider([symbols_for(tmp_path, raw)], tmp_path / "cache")
    layout = read_layout(raw)
    copy = bytearray(raw)
    for memory in layout.memory:
        if memory.stack_of is not None:
            copy[memory.rva : memory.rva + memory.size] = bytes(memory.size)
    difference = compare_walks(walk(raw, provider), walk(bytes(copy), provider))
    assert difference is not None and difference.startswith("thread 0 walks differently from frame 1 on")


def test_no_copy_of_bytes_that_are_no_minidump() -> None:
    with pytest.raises(NotVendorSafe, match="not a minidump"):
        vendor_safe(b"PK\x03\x04" + bytes(200), local_provider([], Path("/nonexistent")))


# -- planted secrets --------------------------------------------------------------------------

SYMBOLS = """MODULE Linux x86_64 ID game
FILE 0 game.c
FUNC 1000 100 0 crash_here
1000 100 10 0
FUNC 2000 100 0 caller
2000 100 20 0
FUNC 3000 100 0 main
3000 100 30 0
STACK CFI INIT 1000 100 .cfa: $rsp 16 + .ra: .cfa -8 + ^
"""
MODULE = ModuleSpec(0x400000, 0x10000, "/opt/game/game", elf_build_id(bytes(range(1, 21))))
STACK, STACK_SIZE, SP = 0x7000_0000, 0x1000, 0x7000_0100  # 256 bytes under the stack pointer
WORKER_STACK, WORKER_SP = 0x7100_0000, 0x7100_0000


def stack_bytes(base: int, size: int, values: dict[int, int], secrets: tuple[int, ...]) -> bytes:
    data = bytearray(size)
    for address, value in values.items():
        struct.pack_into("<Q", data, address - base, value)
    for address in secrets:
        data[address - base : address - base + len(SECRET)] = SECRET
    return bytes(data)


def secret_dump() -> bytes:
    """A Linux amd64 crash whose secrets sit where no walk reads: under the crashing thread's
    stack pointer and past its last frame, past a second thread's frames, in a heap range of
    the memory list and of the memory64 list, in the environment and on the command line."""
    crashing = stack_bytes(STACK, STACK_SIZE, {
        SP + 0x08: 0x402010,  # crash_here's return address into caller (CFI: .cfa - 8)
        SP + 0x20: SP + 0x40, SP + 0x28: 0x403010,  # caller's frame record: saved rbp, return into main
        SP + 0x40: 0, SP + 0x48: 0,  # main's record ends the rbp chain; the scan after it finds nothing
    }, secrets=(STACK + 0x20, STACK + 0xF00))
    worker = stack_bytes(WORKER_STACK, STACK_SIZE, {WORKER_SP + 0x08: 0x403010}, secrets=(WORKER_STACK + 0xE00,))
    writer = MinidumpWriter().add_system_info(arch=ARCH_AMD64, platform=PLATFORM_LINUX)
    writer.add_thread_list([
        ThreadSpec(7, amd64_context(rip=0x401010, rsp=SP, rbp=SP + 0x20), STACK, crashing),
        ThreadSpec(8, amd64_context(rip=0x401020, rsp=WORKER_SP, rbp=0), WORKER_STACK, worker),
    ])
    writer.add_module_list([MODULE])
    writer.add_exception(7, 0xB, context=amd64_context(rip=0x401010, rsp=SP, rbp=SP + 0x20))
    writer.add_memory_list([(0x5555_0000, b"player=alice;" + SECRET + b";" + bytes(64))])
    writer.add_memory64_list([(0x5556_0000, SECRET + bytes(32)), (0x5557_0000, b"heap:" + SECRET)])
    writer.add_stream(LINUX_ENVIRON, b"HOME=/home/alice\0" + SECRET + b"\0")
    writer.add_stream(LINUX_CMD_LINE, b"/opt/game/game\0--auth=" + SECRET + b"\0")
    return writer.build()


def symbols_for(tmp_path: Path, dump: bytes) -> Path:
    module = read_minidump(dump).modules[0]
    assert module.debug_file is not None and module.debug_id is not None
    folder = tmp_path / "symbols" / module.debug_file / module.debug_id
    folder.mkdir(parents=True)
    (folder / f"{module.debug_file}.sym").write_text(SYMBOLS.replace("ID", module.debug_id))
    return tmp_path / "symbols"


def test_planted_secrets_are_gone_and_the_walks_stay(tmp_path: Path) -> None:
    raw = secret_dump()
    provider = local_provider([symbols_for(tmp_path, raw)], tmp_path / "cache")
    threads = walk(raw, provider)
    assert [(f.function, f.trust.value) for f in threads[0].frames] == [
        ("crash_here", "context"), ("caller", "cfi"), ("main", "frame_pointer")]
    assert len(threads[1].frames) >= 2  # the worker's top frame and its caller
    assert raw.count(SECRET) == 8
    made = vendor_safe(raw, provider)
    assert made.data.count(SECRET) == 0 and b"alice" not in made.data
    check_copy(raw, made.data, provider)
    copy = read_minidump(made.data)
    assert copy.linux.get("environ", "").strip() == "" and copy.linux.get("cmdline", "").strip() == ""
    stack = copy.threads[0].stack
    assert stack is not None and raw_stack(raw, 0) != stack.data
    kept = stack.data[SP - STACK : SP - STACK + 0x50]
    assert kept == raw_stack(raw, 0)[SP - STACK : SP - STACK + 0x50]  # the frames' words stay
    assert stack.data[: SP - STACK] == bytes(SP - STACK)  # under the stack pointer: zero


def raw_stack(raw: bytes, index: int) -> bytes:
    stack = read_minidump(raw).threads[index].stack
    assert stack is not None
    return stack.data


# -- the download routes ----------------------------------------------------------------------

CASE = "linux-x64-generated-crashpad-segv-O0"  # a real Crashpad handler's dump, with symbols


def processed_crash(crashd: Crashd) -> str:
    crashd.add_corpus_symbols(CASE)
    crash_id = crashd.upload_corpus(CASE)
    crashd.drain()
    assert crashd.crash(crash_id)["status"] == "processed"
    return crash_id


def test_vendor_safe_download_api(crashd: Crashd, tmp_path: Path) -> None:
    crash_id = processed_crash(crashd)
    url = f"/api/crashes/{crash_id}/minidump"
    assert crashd.client.get(f"{url}?vendor_safe=1").status_code == 401
    raw = crashd.client.get(url, headers=crashd.admin)
    safe = crashd.client.get(f"{url}?vendor_safe=1", headers=crashd.admin)
    assert raw.status_code == 200 and safe.status_code == 200, safe.text
    assert safe.headers["content-type"] == "application/x-dmp"
    assert f'filename="{crash_id}-vendor-safe.dmp"' in safe.headers["content-disposition"]
    assert "zeroed=" in safe.headers["x-crashd-vendor-safe"]
    assert len(safe.content) == len(raw.content) and safe.content != raw.content
    provider = local_provider([require_corpus() / CASE / "symbols"], tmp_path / "cache")
    check_copy(raw.content, safe.content, provider)
    assert crashd.client.get("/api/crashes/nope/minidump?vendor_safe=1", headers=crashd.admin).status_code == 404


def test_vendor_safe_download_dashboard(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    crash_id = processed_crash(crashd)
    create_user(crashd, "alice", "admin", monkeypatch)
    client = TestClient(crashd.client.app)
    token = csrf_of(client.get("/login?next=/").text)
    assert client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": "/"},
                       follow_redirects=False).status_code == 303
    page = client.get(f"/crashes/{crash_id}")
    assert f'href="/crashes/{crash_id}/minidump?vendor_safe=1"' in page.text and "Download vendor-safe dump" in page.text
    safe = client.get(f"/crashes/{crash_id}/minidump?vendor_safe=1")
    api = crashd.client.get(f"/api/crashes/{crash_id}/minidump?vendor_safe=1", headers=crashd.admin)
    assert safe.status_code == 200 and safe.content == api.content
    anonymous = TestClient(crashd.client.app).get(f"/crashes/{crash_id}/minidump?vendor_safe=1",
                                                  follow_redirects=False)
    assert anonymous.status_code in (302, 303, 401) and anonymous.content != safe.content
