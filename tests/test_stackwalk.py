"""The stack walker on dumps built here: each unwinding method, on amd64, x86 and arm64."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from symbolicator.limits import Limits
from symbolicator.minidump import read_minidump
from symbolicator.process import local_provider, process_minidump

from minidump_writer import (
    ARCH_AMD64,
    ARCH_ARM64,
    ARCH_X86,
    PLATFORM_LINUX,
    PLATFORM_WINDOWS,
    MinidumpWriter,
    ModuleSpec,
    ThreadSpec,
    amd64_context,
    arm64_context,
    elf_build_id,
    rsds,
    thread_copies_dump,
    x86_context,
)

BUILD_ID = bytes(range(1, 21))


def words(base: int, size: int, values: dict[int, int], width: int) -> bytes:
    """Stack bytes from base: values by address, zeros elsewhere."""
    data = bytearray(size)
    for address, value in values.items():
        struct.pack_into("<Q" if width == 8 else "<I", data, address - base, value)
    return bytes(data)


def write_symbols(tmp_path: Path, dump: bytes, text: str) -> Path:
    """Store text as the .sym of the dump's first module, in the Breakpad layout."""
    module = read_minidump(dump).modules[0]
    name = module.debug_file.removesuffix(".pdb")
    folder = tmp_path / "symbols" / module.debug_file / module.debug_id
    folder.mkdir(parents=True)
    (folder / f"{name}.sym").write_text(text.replace("ID", module.debug_id))
    return tmp_path / "symbols"


def crashing_frames(tmp_path: Path, dump: bytes, symbols: Path) -> list[tuple[str | None, str]]:
    report = process_minidump(dump, local_provider([symbols], tmp_path / "cache"))
    return [(f["function"], f["trust"]) for f in report["crashing_thread"]["frames"]]


def linux_dump(arch: int, context: bytes, stack_base: int, stack: bytes, module: ModuleSpec,
               platform: int = PLATFORM_LINUX) -> bytes:
    writer = MinidumpWriter().add_system_info(arch=arch, platform=platform)
    writer.add_thread_list([ThreadSpec(7, context, stack_base, stack)])
    writer.add_module_list([module])
    writer.add_exception(7, 0xB, context=context)
    return writer.build()


AMD64_SYM = """MODULE Linux x86_64 ID game
FILE 0 game.c
FUNC 1000 100 0 crash_here
1000 100 10 0
FUNC 2000 100 0 caller_cfi
2000 100 20 0
FUNC 3000 100 0 caller_fp
3000 100 30 0
FUNC 4000 100 0 caller_scan
4000 100 40 0
STACK CFI INIT 1000 100 .cfa: $rsp 16 + .ra: .cfa -8 + ^
"""


def amd64_dump(platform: int = PLATFORM_LINUX) -> bytes:
    stack = words(0x7000, 0x80, {
        0x7008: 0x402010,  # crash_here's return address (CFI: .cfa - 8)
        0x7020: 0x7040, 0x7028: 0x403010,  # caller_cfi's frame record: saved rbp, return
        0x7030: 0x408000,  # a pointer into the module but into no function: not a frame
        0x7040: 0, 0x7048: 0x404010,  # caller_fp's saved rbp 0 (chain ends), then a return address
    }, 8)
    context = amd64_context(rip=0x401010, rsp=0x7000, rbp=0x7020)
    module = ModuleSpec(0x400000, 0x10000, "/opt/game/game", elf_build_id(BUILD_ID))
    return linux_dump(ARCH_AMD64, context, 0x7000, stack, module, platform)


def test_amd64_cfi_then_frame_pointer_then_scan(tmp_path: Path) -> None:
    dump = amd64_dump()
    symbols = write_symbols(tmp_path, dump, AMD64_SYM)
    assert crashing_frames(tmp_path, dump, symbols) == [
        ("crash_here", "context"), ("caller_cfi", "cfi"), ("caller_fp", "frame_pointer"), ("caller_scan", "scan"),
    ]


def test_amd64_windows_does_not_follow_rbp(tmp_path: Path) -> None:
    """Windows x64 frames need UNWIND_INFO; rbp may point mid-frame, so no rbp chain."""
    dump = amd64_dump(PLATFORM_WINDOWS)
    symbols = write_symbols(tmp_path, dump, AMD64_SYM)
    frames = crashing_frames(tmp_path, dump, symbols)
    assert frames[:2] == [("crash_here", "context"), ("caller_cfi", "cfi")]
    assert "frame_pointer" not in {trust for _, trust in frames}


def test_amd64_without_symbols_scans_and_marks_missing(tmp_path: Path) -> None:
    dump = amd64_dump()
    report = process_minidump(dump, local_provider([tmp_path / "nothing"], tmp_path / "cache"))
    frames = report["crashing_thread"]["frames"]
    assert frames[0]["trust"] == "context" and frames[0]["missing_symbols"] is True
    assert frames[0]["module"] == "game" and frames[0]["module_offset"] == "0x0000000000001010"
    assert {f["trust"] for f in frames[1:]} <= {"frame_pointer", "scan"}
    assert report["modules"][0]["missing_symbols"] is True


X86_SYM = """MODULE windows x86 ID game.pdb
FILE 0 game.cpp
FUNC 1000 100 4 crash_here
1000 100 10 0
FUNC 2000 100 0 caller_fpo
2000 100 20 0
FUNC 3000 100 0 caller_framedata_callee
3000 100 30 0
FUNC 4000 100 0 outer
4000 100 40 0
STACK WIN 4 1000 100 0 0 4 0 0 0 1 $T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ = $esp $T0 8 + =
STACK WIN 0 2000 100 0 0 0 4 8 0 0 0
"""


def test_x86_stack_win_framedata_fpo_then_frame_pointer(tmp_path: Path) -> None:
    stack = words(0x8000, 0x60, {
        0x8010: 0x8030, 0x8014: 0x10002010,  # crash_here: standard prologue (STACK WIN 4)
        0x8028: 0x10003010,  # caller_fpo: return address at esp + locals 8 + saved 4 + params 4
        0x8030: 0, 0x8034: 0x10004010,  # caller_framedata_callee: ebp chain to outer
    }, 4)
    context = x86_context(eip=0x10001010, esp=0x8000, ebp=0x8010)
    module = ModuleSpec(0x10000000, 0x10000, "C:\\game\\game.exe", rsds("5A9832E5287241C1838ED98914E9B7FF", 1, "game.pdb"))
    dump = linux_dump(ARCH_X86, context, 0x8000, stack, module, PLATFORM_WINDOWS)
    symbols = write_symbols(tmp_path, dump, X86_SYM)
    assert crashing_frames(tmp_path, dump, symbols) == [
        ("crash_here", "context"), ("caller_fpo", "cfi"), ("caller_framedata_callee", "cfi"), ("outer", "frame_pointer"),
    ]


ARM64_SYM = """MODULE Linux arm64 ID game
FILE 0 game.c
FUNC 1000 100 0 crash_here
1000 100 10 0
FUNC 2000 100 0 middle
2000 100 20 0
FUNC 3000 100 0 top
3000 100 30 0
STACK CFI INIT 1000 100 .cfa: sp 16 + .ra: .cfa -8 + ^ x29: .cfa -16 + ^
"""


def test_arm64_cfi_then_frame_records_with_pointer_auth(tmp_path: Path) -> None:
    signed = 0x002A_0000_0000_0000  # pointer-authentication bits on a saved return address
    stack = words(0x9000, 0x60, {
        0x9000: 0x9020, 0x9008: signed | 0x402010,  # crash_here's CFI: saved x29, return
        0x9020: 0x9040, 0x9028: signed | 0x403010,  # middle's frame record
        0x9040: 0, 0x9048: 0,  # the outermost frame record
    }, 8)
    context = arm64_context(pc=0x401010, sp=0x9000, fp=0x9030, lr=0x402010)
    module = ModuleSpec(0x400000, 0x10000, "/opt/game/game", elf_build_id(BUILD_ID))
    dump = linux_dump(ARCH_ARM64, context, 0x9000, stack, module)
    symbols = write_symbols(tmp_path, dump, ARM64_SYM)
    report = process_minidump(dump, local_provider([symbols], tmp_path / "cache"))
    frames = report["crashing_thread"]["frames"]
    assert [(f["function"], f["trust"]) for f in frames] == [
        ("crash_here", "context"), ("middle", "cfi"), ("top", "frame_pointer")]
    assert frames[1]["module_offset"] == "0x000000000000200c"  # the BL: return address - 4


def test_walk_is_bounded_on_a_self_referencing_frame_chain(tmp_path: Path) -> None:
    """A frame pointer pointing at itself must not loop: the stack must grow."""
    stack = words(0x7000, 0x40, {0x7010: 0x7010, 0x7018: 0x402010}, 8)
    context = amd64_context(rip=0x401010, rsp=0x7000, rbp=0x7010)
    module = ModuleSpec(0x400000, 0x10000, "/opt/game/game", elf_build_id(BUILD_ID))
    dump = linux_dump(ARCH_AMD64, context, 0x7000, stack, module)
    report = process_minidump(dump, local_provider([tmp_path / "none"], tmp_path / "cache"))
    assert 1 <= len(report["crashing_thread"]["frames"]) < 10


def test_exception_context_is_the_crash_point(tmp_path: Path) -> None:
    """On Windows and Crashpad-Linux dumps the thread list holds the handler's context."""
    handler_context = amd64_context(rip=0x403010, rsp=0x7000, rbp=0)
    crash_context = amd64_context(rip=0x401010, rsp=0x7000, rbp=0x7020)
    writer = MinidumpWriter().add_system_info(arch=ARCH_AMD64, platform=PLATFORM_LINUX)
    writer.add_thread_list([ThreadSpec(7, handler_context, 0x7000, amd64_dump_stack())])
    writer.add_module_list([ModuleSpec(0x400000, 0x10000, "/opt/game/game", elf_build_id(BUILD_ID))])
    writer.add_exception(7, 0xB, context=crash_context)
    dump = writer.build()
    symbols = write_symbols(tmp_path, dump, AMD64_SYM)
    assert crashing_frames(tmp_path, dump, symbols)[0] == ("crash_here", "context")


def amd64_dump_stack() -> bytes:
    return words(0x7000, 0x40, {0x7008: 0x402010}, 8)


def test_garbage_dump_processes_without_raising(tmp_path: Path) -> None:
    report = process_minidump(b"MDMP" + b"\xff" * 200, local_provider([tmp_path], tmp_path / "cache"))
    assert report["notes"] and report["threads"] == []


# -- the limits per dump (issue 11 item 12: amplification) ----------------------------------


def test_a_dump_listing_200000_threads_is_processed_bounded(tmp_path: Path) -> None:
    """The issue's dump: 200,000 copies of one thread in 9.6 MB. The first 1024 threads and
    the crashing one (listed last) are read and walked; the report stays small and says
    what was cut."""
    dump = thread_copies_dump(200_000, crashing_last=True)
    assert len(dump) > 9_600_000
    report = process_minidump(dump, local_provider([tmp_path / "none"], tmp_path / "cache"))
    limits = Limits()
    assert report["thread_count"] == len(report["threads"]) == limits.threads + 1
    assert report["cut"] == {"threads": {"listed": 200_001, "read": limits.threads + 1}}
    assert f"threads: 200001 listed, {limits.threads + 1} read and walked; the rest left out " \
           "(limits: docs/processing.md)" in report["notes"]
    assert any("the crashing thread, number 200000 in the dump" in note for note in report["notes"])
    crashing = report["crashing_thread"]
    assert report["crash_info"]["crashing_thread"] == crashing["threads_index"] == limits.threads
    assert crashing["thread_id"] == 99 and crashing["frames"][0]["offset"] == "0x0000000000401020"
    assert [f["trust"] for f in crashing["frames"]] == ["context"] + ["scan"] * 8
    assert len(json.dumps(report, separators=(",", ":"))) < 4_000_000  # 167 MB before the limits


def test_the_frame_budget_spares_the_crashing_thread(tmp_path: Path) -> None:
    """Once limits.frames_per_dump frames are walked, the other threads get their context
    frame only, with a note; the crashing thread is walked first and whole."""
    dump = thread_copies_dump(10, crashing_last=True)
    limits = Limits(frames_per_dump=30)
    report = process_minidump(dump, local_provider([tmp_path / "none"], tmp_path / "cache"), limits=limits)
    counts = [t["frame_count"] for t in report["threads"]]
    assert counts == [9, 9, 3, 1, 1, 1, 1, 1, 1, 1, 9]  # 9 crashing, then 9 + 9 + 3 = 30
    assert "stopped: the dump's budget of 30 frames is spent" in report["threads"][2]["notes"]
    assert "frames: the budget of 30 frames per dump was spent; 8 threads were walked short " \
           "(the last ones to their context frame only)" in report["notes"]
    assert report["cut"] == {}
