"""symbolicator/minidump/: every corpus dump against the rust-minidump oracle and expected.json,
the malformed corpus dumps, and small dumps built with tests/minidump_writer.py, hostile ones
included (truncated, overflowing counts, RVAs that point anywhere)."""

from __future__ import annotations

import json
import random
import struct
import time
from pathlib import Path

import pytest

from symbolicator.limits import Limits
from symbolicator.minidump import Minidump, read_minidump

from conftest import corpus_params, require_corpus
from minidump_writer import (
    ARCH_AMD64,
    ARCH_ARM,
    ARCH_ARM64,
    ARCH_ARM64_OLD,
    ARCH_X86,
    LINUX_MAPS,
    LINUX_PROC_STATUS,
    PLATFORM_ANDROID,
    PLATFORM_IOS,
    PLATFORM_LINUX,
    PLATFORM_MAC,
    PLATFORM_WINDOWS,
    MinidumpWriter,
    ModuleSpec,
    ThreadSpec,
    amd64_context,
    arm64_context,
    arm_context,
    elf_build_id,
    nb10,
    rsds,
    small_dump,
    x86_context,
)

NIL_DEBUG_ID = "0" * 33


# -- the corpus -----------------------------------------------------------------------------


def _case(dump_path: Path | None) -> tuple[Minidump, dict, dict | None]:
    """(our reading, expected.json, rust-minidump's JSON or None) of one corpus dump."""
    require_corpus()
    assert dump_path is not None
    expected = json.loads((dump_path.parent / "expected.json").read_text())
    raw = (dump_path.parent / "oracle-raw" / "tool-rust-minidump-stackwalk.json").read_text()
    return read_minidump(dump_path.read_bytes()), expected, json.loads(raw) if raw.strip() else None


@pytest.mark.parametrize("dump_path", corpus_params())
def test_corpus_dump_matches_expected(dump_path: Path | None) -> None:
    dump, expected, _ = _case(dump_path)
    if expected["oracle_kind"].startswith("robustness"):
        assert dump.notes  # the malformed dumps: see test_malformed_corpus_dumps
        return
    assert dump.notes == []
    assert (dump.system.os, dump.system.cpu_arch) == (expected["os"], expected["cpu"])
    assert dump.crashing_thread == expected["crashing_thread"]
    if expected["crash_address"] is None:
        assert dump.exception is None
    else:
        assert dump.exception is not None and dump.exception.address == int(expected["crash_address"], 16)


def rust_params() -> list:
    """Corpus dumps rust-minidump could read (not the two malformed ones: their rust output
    is empty; test_malformed_corpus_dumps covers them)."""
    return [p for p in corpus_params() if p.values[0] is None or not p.values[0].parent.name.startswith("malformed-")]


@pytest.mark.parametrize("dump_path", rust_params())
def test_corpus_dump_matches_rust_minidump(dump_path: Path | None) -> None:
    dump, expected, rust = _case(dump_path)
    assert rust is not None, "rust-minidump's output is missing for this case"
    system = dump.system
    ours = {"os": system.os, "os_ver": system.os_ver, "cpu_arch": system.cpu_arch,
            "cpu_info": system.cpu_info, "cpu_count": system.cpu_count}
    assert ours == {key: rust["system_info"][key] for key in ours}
    assert (len(dump.threads), dump.pid) == (rust["thread_count"], rust["pid"])
    assert [t.name for t in dump.threads] == [t["thread_name"] for t in rust["threads"]]
    crash = rust["crash_info"]
    if dump.exception is None:
        assert crash["type"] is None
        return
    assert dump.exception.reason == crash["type"]
    if expected["crash_reason"] == crash["type"]:
        assert dump.exception.reason == expected["crash_reason"]
    assert dump.exception.address == int(crash["address"], 16)
    assert dump.crashing_thread == crash["crashing_thread"]
    # The crash point is the exception's own context, not the thread list's.
    assert dump.exception.context is not None
    assert dump.exception.context.instruction_pointer == int(rust["crashing_thread"]["frames"][0]["offset"], 16)


@pytest.mark.parametrize("dump_path", rust_params())
def test_corpus_modules_match_rust_minidump(dump_path: Path | None) -> None:
    dump, _, rust = _case(dump_path)
    assert rust is not None, "rust-minidump's output is missing for this case"

    def row(base: int, end: int, filename: str, debug_file: str, debug_id: str, code_id: str, version):
        return (hex(base), hex(end), filename, debug_file, debug_id, code_id, version)

    ours = [row(m.base_addr, m.end_addr, m.filename, m.debug_file or "", m.debug_id or NIL_DEBUG_ID,
                m.code_id or "", m.version) for m in dump.modules]
    theirs = sorted((row(int(m["base_addr"], 16), int(m["end_addr"], 16), m["filename"], m["debug_file"],
                         m["debug_id"], m["code_id"], m["version"]) for m in rust["modules"]),
                    key=lambda r: int(r[0], 16))
    assert ours == theirs
    unloaded = [(hex(m.base_addr), m.filename, m.code_id) for m in dump.unloaded_modules]
    assert unloaded == [(hex(int(m["base_addr"], 16)), m["filename"], m["code_id"])
                        for m in rust["unloaded_modules"] or []]


def _corpus_dump(case: str) -> Minidump:
    corpus = require_corpus()
    return read_minidump(next((corpus / case).glob("*.dmp")).read_bytes())


def test_malformed_corpus_dumps() -> None:
    invalid_range = _corpus_dump("malformed-rust-invalid-range")
    assert invalid_range.timestamp is not None  # the header parses
    assert any("linux maps" in note and "invalid range" in note for note in invalid_range.notes)
    assert "maps" not in invalid_range.linux
    record_count = _corpus_dump("malformed-rust-invalid-record-count")
    assert record_count.notes and record_count.exception is None
    assert any("run past the end" in note for note in record_count.notes)


def test_committed_checks_crashpad_annotations() -> None:
    dump = _corpus_dump("mac-x64-rust-simple-crashpad")
    assert dump.crashpad is not None
    assert dump.crashpad.report_id == "42F9DE72-518A-43DD-97D7-8DDC328D3662"
    assert dump.crashpad.client_id == "6FD2B3B9-9833-4B2F-BBF7-0BCF501BAD7E"
    assert dump.crashpad.simple_annotations == {"hello": "world"} == dump.annotations
    assert len(dump.crashpad.modules) == 2
    assert {m.module_index: m.list_annotations for m in dump.crashpad.modules}[16] == ["abort() called"]
    ios = _corpus_dump("ios-x64-breakpad-crashpad-annotation")  # annotation objects, iOS
    assert ios.annotations["exceptionName"] == "NSRangeException"
    assert ios.annotations["prod"] == "xcuitest"


def test_committed_checks_breakpad_streams() -> None:
    assertion = _corpus_dump("win-x64-rust-invalid-parameter").assertion
    assert assertion == ("Invalid parameter passed to library function format != nullptr in function "
                         "common_vfprintf, in file minkernel\\crts\\ucrt\\src\\appcrt\\stdio\\output.cpp at line 32")
    assert _corpus_dump("win-x64-electron").assertion is None  # an all-zero assertion stream
    mac = _corpus_dump("mac-x64-symbolic-crash-macos")
    assert (mac.system.os_ver, mac.system.cpu_count) == ("10.12.6 16G29", 8)
    assert mac.threads[mac.crashing_thread].thread_id == 775 and mac.requesting_thread_id == 775
    linux = _corpus_dump("linux-x64-symbolic-crash-linux")
    assert linux.threads[linux.crashing_thread].thread_id == 133
    assert "db4c55d26192c436b9766a086583b9b5a6d2e271" in {m.code_id for m in linux.modules}
    assert {"cpu_info", "proc_status", "lsb_release", "cmdline", "environ", "maps"} <= set(linux.linux)
    assert linux.pid == 133  # from /proc/<pid>/status: Breakpad Linux dumps have no misc info
    names = _corpus_dump("win-x86-breakpad-thread-name-list")
    assert [t.name for t in names.threads][:1] == ["main thread"] and names.crashing_thread == 5


def test_corpus_read_time() -> None:
    """A warm reader takes well under rust-minidump's per-dump time (a few ms)."""
    corpus = require_corpus()
    dumps = [p.read_bytes() for p in sorted(corpus.glob("*/*.dmp"))]
    for data in dumps:
        read_minidump(data)
    slowest = 0.0
    for data in dumps:
        start = time.perf_counter()
        read_minidump(data)
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 0.05, f"slowest dump took {slowest * 1000:.1f} ms"


# -- small dumps: systems and contexts ------------------------------------------------------


@pytest.mark.parametrize(("arch", "platform", "os", "cpu"), [
    (ARCH_AMD64, PLATFORM_WINDOWS, "Windows NT", "amd64"),
    (ARCH_X86, PLATFORM_WINDOWS, "Windows NT", "x86"),
    (ARCH_ARM64, PLATFORM_WINDOWS, "Windows NT", "arm64"),
    (ARCH_ARM64_OLD, PLATFORM_ANDROID, "Android", "arm64"),
    (ARCH_ARM, PLATFORM_LINUX, "Linux", "arm"),
    (ARCH_AMD64, PLATFORM_MAC, "Mac OS X", "amd64"),
    (ARCH_ARM64, PLATFORM_IOS, "iOS", "arm64"),
    (0x1234, 0x9999, "0x9999", "0x1234"),
])
def test_system_info_names(arch: int, platform: int, os: str, cpu: str) -> None:
    dump = read_minidump(MinidumpWriter().add_system_info(arch, platform, 6).build())
    assert (dump.system.os, dump.system.cpu_arch, dump.system.cpu_count) == (os, cpu, 6)


def test_system_info_versions_and_cpu_info() -> None:
    windows = MinidumpWriter().add_system_info(ARCH_X86, PLATFORM_WINDOWS, version=(5, 1, 2600),
                                               csd="Service Pack 2", level=6, revision=0x0D08,
                                               vendor=b"GenuineIntel")
    system = read_minidump(windows.build()).system
    assert system.os_ver == "5.1.2600 Service Pack 2"
    assert system.cpu_info == "GenuineIntel family 6 model 13 stepping 8"
    linux = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_LINUX, version=(0, 0, 0),
                                             csd="Linux 4.9.60-linuxkit #1 SMP Mon Nov 6 16:00:12 UTC 2017 x86_64",
                                             level=6, revision=0x4601)
    system = read_minidump(linux.build()).system
    assert system.os_ver == "4.9.60-linuxkit #1 SMP Mon Nov 6 16:00:12 UTC 2017"
    assert system.cpu_info == "family 6 model 70 stepping 1"
    plain = read_minidump(MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_WINDOWS, version=(10, 0, 19045)).build())
    assert plain.system.os_ver == "10.0.19045"


def _crash_dump(arch: int, platform: int, context: bytes, exception_context: bytes, **exception) -> Minidump:
    writer = MinidumpWriter().add_system_info(arch, platform)
    writer.add_thread_list([ThreadSpec(7, b"", 0, b""), ThreadSpec(42, context, 0x7000, bytes(range(64)))])
    writer.add_exception(42, context=exception_context, **exception)
    return read_minidump(writer.build())


@pytest.mark.parametrize(("arch", "make", "ip", "sp", "extra"), [
    (ARCH_AMD64, amd64_context, "rip", "rsp", {"rbp": 0x7010, "r15": 15}),
    (ARCH_X86, x86_context, "eip", "esp", {"ebp": 0x7010, "eflags": 0x246}),
    (ARCH_ARM64, arm64_context, "pc", "sp", {"fp": 0x7010, "lr": 0x1234, "x28": 28}),
    (ARCH_ARM64_OLD, lambda **r: arm64_context(old=True, **r), "pc", "sp", {"fp": 0x7010, "x0": 1}),
    (ARCH_ARM, arm_context, "pc", "sp", {"fp": 0x7010, "lr": 0x1234}),
])
def test_thread_and_exception_contexts(arch: int, make, ip: str, sp: str, extra: dict[str, int]) -> None:
    dump = _crash_dump(arch, PLATFORM_LINUX, make(**{ip: 0x1000, sp: 0x7000}, **extra),
                       make(**{ip: 0x2000, sp: 0x7008}, **extra), code=11, flags=1, address=0x45)
    assert dump.notes == [] and dump.crashing_thread == 1
    thread = dump.threads[1]
    assert thread.context.instruction_pointer == 0x1000 and thread.context.stack_pointer == 0x7000
    assert {k: thread.context.registers[k] for k in extra} == extra
    assert thread.stack.base == 0x7000 and thread.stack.data == bytes(range(64))
    exception = dump.exception
    assert exception.context.instruction_pointer == 0x2000  # the crash point: the exception's own
    assert exception.reason == "SIGSEGV / SEGV_MAPERR" and exception.address == 0x45
    assert dump.threads[0].context is None and dump.threads[0].stack is None
    assert dump.memory.read_pointer(0x7000, 4) == 0x03020100


def test_32bit_crash_address_is_not_sign_extended() -> None:
    dump = _crash_dump(ARCH_X86, PLATFORM_WINDOWS, x86_context(eip=1), x86_context(eip=2),
                       code=0xC0000005, address=0xFFFFFFFF80000000, parameters=(1, 0xFFFFFFFF80000045))
    assert dump.exception.address == 0x80000045 and dump.exception.raw_address == 0x80000000
    assert dump.exception.reason == "EXCEPTION_ACCESS_VIOLATION_WRITE"


@pytest.mark.parametrize(("platform", "arch", "code", "flags", "parameters", "reason"), [
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xC0000005, 0, (0, 0x10), "EXCEPTION_ACCESS_VIOLATION_READ"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xC0000005, 0, (8, 0x10), "EXCEPTION_ACCESS_VIOLATION_EXEC"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xC0000005, 0, (), "EXCEPTION_ACCESS_VIOLATION"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xC0000409, 0, (7,), "EXCEPTION_STACK_BUFFER_OVERRUN / FAST_FAIL_FATAL_APP_EXIT"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xC0000409, 0, (2,), "EXCEPTION_STACK_BUFFER_OVERRUN / FAST_FAIL_STACK_COOKIE_CHECK_FAILURE"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xC00000FD, 0, (), "EXCEPTION_STACK_OVERFLOW"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xC000000D, 0, (), "STATUS_INVALID_PARAMETER"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0xE06D7363, 1, (), "UNHANDLED_CPP_EXCEPTION"),
    (PLATFORM_WINDOWS, ARCH_AMD64, 0x12345678, 0, (), "unknown 0x12345678"),
    (PLATFORM_LINUX, ARCH_AMD64, 11, 1, (), "SIGSEGV / SEGV_MAPERR"),
    (PLATFORM_LINUX, ARCH_AMD64, 11, 0, (), "SIGSEGV"),
    (PLATFORM_LINUX, ARCH_AMD64, 6, 0xFFFFFFFA, (), "SIGABRT / SI_TKILL"),
    (PLATFORM_LINUX, ARCH_AMD64, 6, 0, (), "SIGABRT"),
    (PLATFORM_ANDROID, ARCH_ARM64, 4, 2, (), "SIGILL / ILL_ILLOPN"),
    (PLATFORM_LINUX, ARCH_AMD64, 8, 1, (), "SIGFPE / FPE_INTDIV"),
    (PLATFORM_LINUX, ARCH_AMD64, 7, 2, (), "SIGBUS / BUS_ADRERR"),
    (PLATFORM_LINUX, ARCH_AMD64, 99, 0, (), "unknown 0x00000063 / 0x00000000"),
    (PLATFORM_MAC, ARCH_AMD64, 1, 1, (), "EXC_BAD_ACCESS / KERN_INVALID_ADDRESS"),
    (PLATFORM_MAC, ARCH_AMD64, 1, 13, (), "EXC_BAD_ACCESS / EXC_I386_GPFLT"),
    (PLATFORM_IOS, ARCH_ARM64, 1, 0x101, (), "EXC_BAD_ACCESS / EXC_ARM_DA_ALIGN"),
    (PLATFORM_MAC, ARCH_AMD64, 2, 1, (), "EXC_BAD_INSTRUCTION / EXC_I386_INVOP"),
    (PLATFORM_MAC, ARCH_AMD64, 5, 0x10002, (), "EXC_SOFTWARE / SIGABRT"),
    (PLATFORM_IOS, ARCH_AMD64, 0x43506E78, 0, (), "unknown 0x43506e78 / 0x00000000"),
])
def test_crash_reasons_per_os(platform: int, arch: int, code: int, flags: int, parameters: tuple, reason: str) -> None:
    writer = MinidumpWriter().add_system_info(arch, platform).add_thread_list([ThreadSpec(1)])
    dump = read_minidump(writer.add_exception(1, code, flags, 0x10, parameters).build())
    assert dump.exception.reason == reason
    assert dump.exception.parameters == list(parameters)


def test_no_exception_stream_means_no_crashing_thread() -> None:
    dump = read_minidump(MinidumpWriter().add_system_info().add_thread_list([ThreadSpec(1, amd64_context())]).build())
    assert dump.exception is None and dump.crashing_thread is None and dump.notes == []


def test_exception_thread_missing_from_thread_list() -> None:
    writer = MinidumpWriter().add_system_info().add_thread_list([ThreadSpec(1)]).add_exception(99, 11)
    dump = read_minidump(writer.build())
    assert dump.crashing_thread is None and any("not in the thread list" in n for n in dump.notes)


# -- small dumps: modules, memory, names, Breakpad and Crashpad streams ---------------------


def test_module_codeview_records() -> None:
    build_id = bytes.fromhex("f1c3bcc0279865fe3058404b2831d9e64135386c")
    modules = [
        ModuleSpec(0x400000, 0x2D000, "C:\\app\\test_app.exe", rsds("5A9832E5-2872-41C1-838E-D98914E9B7FF", 1,
                   "c:\\build\\test_app.pdb"), timestamp=0x45D35F6C, file_version=(10, 0, 19041, 1806)),
        ModuleSpec(0x7C900000, 0xB0000, "C:\\WINDOWS\\system32\\old.dll", nb10(0x3B7D84F1, 2, "old.pdb"),
                   timestamp=0x411096B4),
        ModuleSpec(0x10000000, 0x1000, "C:\\nocv.dll", timestamp=0xABCDEF01),
        ModuleSpec(0x500000, 0x1A000, "/usr/bin/crash", elf_build_id(build_id)),
        ModuleSpec(0x600000, 0x1000, "/usr/lib/short.so", elf_build_id(bytes.fromhex("0102030405060708"))),
        ModuleSpec(0x700000, 0x1000, "/usr/share/fonts/font.ttf", elf_build_id(bytes(20))),
    ]
    dump = read_minidump(MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_WINDOWS).add_module_list(modules).build())
    by_name = {m.filename: m for m in dump.modules}
    app = by_name["test_app.exe"]
    assert (app.debug_file, app.debug_id, app.code_id) == ("test_app.pdb", "5A9832E5287241C1838ED98914E9B7FF1", "45d35f6c2d000")
    assert app.version == "10.0.19041.1806" and app.end_addr == 0x42D000
    assert (by_name["old.dll"].debug_id, by_name["old.dll"].debug_file) == ("3B7D84F12", "old.pdb")
    assert (by_name["nocv.dll"].debug_id, by_name["nocv.dll"].code_id) == (None, "abcdef011000")
    crash = by_name["crash"]
    assert (crash.debug_file, crash.debug_id) == ("crash", "C0BCC3F19827FE653058404B2831D9E60")
    assert crash.code_id == build_id.hex()
    assert by_name["short.so"].debug_id == "04030201060508070000000000000000" + "0"
    assert (by_name["font.ttf"].debug_id, by_name["font.ttf"].code_id) == (None, None)
    assert dump.module_at(0x400010) is app and dump.module_at(0x42D000) is None


def test_mac_modules_use_the_uuid_as_code_id() -> None:
    module = ModuleSpec(0x109B9B000, 0x11000, "/tmp/crash", rsds("67E9247C-814E-392B-A027-DBDE6748FCBF", 0, "crash"))
    dump = read_minidump(MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_MAC).add_module_list([module]).build())
    assert dump.modules[0].debug_id == "67E9247C814E392BA027DBDE6748FCBF0"
    assert dump.modules[0].code_id == "67e9247c814e392ba027dbde6748fcbf"


def test_padded_lists_of_old_breakpad_mac_dumps() -> None:
    writer = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_MAC)
    writer.add_thread_list([ThreadSpec(775, amd64_context(rip=0x1000, rsp=0x9000), 0x9000, b"\xaa" * 32)], padded=True)
    writer.add_module_list([ModuleSpec(0x1000, 0x1000, "/bin/crash")], padded=True)
    writer.add_memory_list([(0x20000, b"\xbb" * 16), (0x30000, b"\xcc" * 8)], padded=True)
    dump = read_minidump(writer.build())
    assert dump.notes == []
    assert [t.thread_id for t in dump.threads] == [775] and dump.threads[0].context.instruction_pointer == 0x1000
    assert [m.filename for m in dump.modules] == ["crash"]
    assert dump.memory.read(0x20000, 16) == b"\xbb" * 16 and dump.memory.read(0x30004, 4) == b"\xcc" * 4


def test_memory_lists_and_stacks_found_by_address() -> None:
    writer = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_WINDOWS)
    stack = bytes(range(256))
    # Windows writes RVA 0 for a stack that is in the memory list: found by its start address
    writer.add_thread_list([ThreadSpec(1, amd64_context(rsp=0x8000), 0x8000, stack, stack_in_memory_list=True)])
    writer.add_memory_list([(0x8000, stack)])
    writer.add_memory64_list([(0x100000, b"\x01" * 64), (0x200000, b"\x02" * 32)])
    dump = read_minidump(writer.build())
    assert dump.notes == []
    assert dump.threads[0].stack.base == 0x8000 and dump.threads[0].stack.data == stack
    assert dump.memory.read(0x10003F, 1) == b"\x01" and dump.memory.read(0x20001F, 1) == b"\x02"
    assert dump.memory.read(0x10003F, 2) is None and dump.memory.read_pointer(0x8008, 8) == 0x0F0E0D0C0B0A0908


def test_thread_names_misc_breakpad_info_and_linux_streams() -> None:
    writer = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_LINUX)
    writer.add_thread_list([ThreadSpec(100), ThreadSpec(200)]).add_thread_names({200: "render thread"})
    writer.add_breakpad_info(dump_thread_id=300, requesting_thread_id=200)
    writer.add_stream(LINUX_PROC_STATUS, b"Name:\tcrash\nPid:\t4321\n")
    writer.add_stream(0x47670006, b"./crash\0--flag\0")
    writer.add_stream(LINUX_MAPS, b"00400000-0041a000 r-xp 00000000 08:01 1 /bin/crash\n")
    writer.add_unloaded_modules([ModuleSpec(0x9000, 0x3000, "gone.so", timestamp=0x12345678)])
    dump = read_minidump(writer.build())
    assert dump.notes == []
    assert [t.name for t in dump.threads] == [None, "render thread"]
    assert (dump.dump_thread_id, dump.requesting_thread_id, dump.pid) == (300, 200, 4321)
    assert dump.linux["cmdline"] == "./crash --flag" and dump.linux["maps"].startswith("00400000-0041a000")
    assert [(m.filename, m.code_id) for m in dump.unloaded_modules] == [("gone.so", "123456783000")]
    assert read_minidump(MinidumpWriter().add_system_info().add_misc_info(77).build()).pid == 77


def test_assertion_stream() -> None:
    writer = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_WINDOWS)
    writer.add_assertion("ptr != nullptr", "Foo::Bar", "foo.cpp", 12, 2)
    assert read_minidump(writer.build()).assertion == (
        "Pure virtual function called ptr != nullptr in function Foo::Bar, in file foo.cpp at line 12")


def test_crashpad_info_annotations() -> None:
    writer = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_LINUX)
    writer.add_crashpad_info(
        "42F9DE72-518A-43DD-97D7-8DDC328D3662",
        "6FD2B3B9-9833-4B2F-BBF7-0BCF501BAD7E",
        {"prod": "game", "ver": "1.0"},
        [(3, ["abort() called"], {"channel": "beta", "prod": "module-prod"}, {"reason": "oom"})],
    )
    dump = read_minidump(writer.build())
    assert dump.notes == ["no thread list stream"]
    info = dump.crashpad
    assert (info.report_id, info.client_id) == (
        "42F9DE72-518A-43DD-97D7-8DDC328D3662",
        "6FD2B3B9-9833-4B2F-BBF7-0BCF501BAD7E",
    )
    assert [(m.module_index, m.list_annotations, m.simple_annotations, m.annotation_objects) for m in info.modules] == [
        (3, ["abort() called"], {"channel": "beta", "prod": "module-prod"}, {"reason": "oom"})
    ]
    # top-level annotations win over module ones with the same key
    assert dump.annotations == {"prod": "game", "ver": "1.0", "channel": "beta", "reason": "oom"}


def test_unknown_stream_types_are_skipped() -> None:
    writer = MinidumpWriter().add_system_info().add_thread_list([ThreadSpec(1)])
    writer.add_stream(0x4D7A0004, b"mozilla soft errors").add_stream(77, b"\x01\x02\x03")
    dump = read_minidump(writer.build())
    assert dump.notes == [] and len(dump.threads) == 1
    assert read_minidump(small_dump(3, size=1000)).system.cpu_arch == "amd64"


# -- hostile and truncated dumps ------------------------------------------------------------


def _rich_dump() -> bytes:
    writer = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_WINDOWS, csd="Service Pack 1")
    writer.add_thread_list(
        [
            ThreadSpec(1, amd64_context(rip=0x401000, rsp=0x8000), 0x8000, bytes(128)),
            ThreadSpec(2, amd64_context(rip=0x402000, rsp=0x9000), 0x9000, bytes(64)),
        ]
    )
    writer.add_module_list(
        [
            ModuleSpec(0x400000, 0x10000, "C:\\a.exe", rsds("5A9832E5-2872-41C1-838E-D98914E9B7FF", 1, "a.pdb")),
            ModuleSpec(0x500000, 0x1000, "/lib/b.so", elf_build_id(bytes(range(20)))),
        ]
    )
    writer.add_exception(1, 0xC0000005, 0, 0x401000, (1, 0x10), amd64_context(rip=0x401004, rsp=0x8000))
    writer.add_memory_list([(0xA000, bytes(32))]).add_thread_names({1: "main"}).add_misc_info(9)
    writer.add_crashpad_info(
        "42F9DE72-518A-43DD-97D7-8DDC328D3662",
        "6FD2B3B9-9833-4B2F-BBF7-0BCF501BAD7E",
        {"k": "v"},
        [(0, ["x"], {"a": "b"}, {"c": "d"})],
    )
    writer.add_assertion("e", "f", "g", 1, 1)
    return writer.build()


def _no_internal_errors(dump: Minidump) -> None:
    assert not [note for note in dump.notes if "internal error" in note], dump.notes


def test_not_a_minidump() -> None:
    for data in (b"", b"MDMP", b"PK\x03\x04" + bytes(100), bytes(32)):
        dump = read_minidump(data)
        assert dump.notes and dump.threads == [] and dump.system.os == "unknown"


def test_every_truncation_of_a_dump_reads_partially() -> None:
    data = _rich_dump()
    assert read_minidump(data).notes == []
    for end in range(0, len(data), 7):
        dump = read_minidump(data[:end])
        assert dump.notes, end
        _no_internal_errors(dump)


def test_random_corruption_never_raises() -> None:
    data = _rich_dump()
    rng = random.Random(1234)
    for _ in range(400):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            offset = rng.randrange(len(corrupt))
            corrupt[offset : offset + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", rng.randbytes(4)])
        _no_internal_errors(read_minidump(bytes(corrupt)))


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    patched = bytearray(data)
    struct.pack_into(fmt, patched, offset, *values)
    return bytes(patched)


def _directory(data: bytes) -> dict[int, tuple[int, int, int]]:
    """{stream type: (directory entry offset, size, rva)}."""
    count, rva = struct.unpack_from("<II", data, 8)
    entries = {}
    for index in range(count):
        stream_type, size, stream_rva = struct.unpack_from("<III", data, rva + index * 12)
        entries[stream_type] = (rva + index * 12, size, stream_rva)
    return entries


def test_directory_past_the_end_and_huge_stream_count() -> None:
    data = _rich_dump()
    past = read_minidump(_patch(data, 12, "<I", len(data) + 100))
    assert past.threads == [] and any("directory" in n for n in past.notes)
    start = time.perf_counter()
    huge = read_minidump(_patch(data, 8, "<I", 0xFFFFFFFF))
    assert time.perf_counter() - start < 1
    assert len(huge.threads) == 2 and any("fit in the dump" in n for n in huge.notes)


def test_counts_that_overflow_their_streams() -> None:
    data = _rich_dump()
    directory = _directory(data)
    for stream_type in (3, 4, 5, 0x18):  # thread, module, memory lists, thread names
        _, _, rva = directory[stream_type]
        dump = read_minidump(_patch(data, rva, "<I", 0xFFFFFFFF))
        assert any("does not fit" in n for n in dump.notes)
        _no_internal_errors(dump)
    entry, _, rva = directory[3]
    dump = read_minidump(_patch(data, entry + 4, "<I", 0xFFFFFF00))  # the stream's own size
    assert any("run past the end" in n for n in dump.notes) and len(dump.threads) == 2


def test_rvas_pointing_anywhere() -> None:
    data = _rich_dump()
    directory = _directory(data)
    _, _, modules = directory[4]
    # the first module's name and CodeView RVAs point back at the module list, then past the end
    looped = _patch(data, modules + 4 + 20, "<I", modules)
    looped = _patch(looped, modules + 4 + 76, "<II", 108 * 2, modules)
    dump = read_minidump(looped)
    _no_internal_errors(dump)
    assert len(dump.modules) == 2
    beyond = read_minidump(_patch(data, modules + 4 + 20, "<I", 0xFFFFFFF0))
    assert len(beyond.modules) == 2 and any("module" in n for n in beyond.notes)
    # the Crashpad simple-annotation dictionary points at the Crashpad info stream itself
    _, _, crashpad = directory[0x43500001]
    dump = read_minidump(_patch(data, crashpad + 36, "<II", 0xFFFF, crashpad))
    _no_internal_errors(dump)
    assert dump.notes
    # contexts and stacks that point past the end
    _, _, threads = directory[3]
    dump = read_minidump(_patch(data, threads + 4 + 40, "<II", 1232, len(data) - 10))
    assert dump.threads[0].context is None and any("thread 0 context" in n for n in dump.notes)


def test_many_references_to_one_big_string_stay_bounded() -> None:
    """A thousand modules naming one 64 KB string: the work budget stops the copying."""
    writer = MinidumpWriter().add_system_info(ARCH_AMD64, PLATFORM_WINDOWS)
    name_rva = writer.add_string("x" * 32_000)
    entries = b"".join(
        struct.pack("<QIIII13IIIIIQQ", 0x10000 * i, 0x1000, 0, 0, name_rva, *[0] * 13, 0, 0, 0, 0, 0, 0)
        for i in range(1000)
    )
    writer.add_stream(4, struct.pack("<I", 1000) + entries)
    start = time.perf_counter()
    dump = read_minidump(writer.build())
    assert time.perf_counter() - start < 1
    assert len(dump.modules) == 1000 and any("reading stopped" in n for n in dump.notes)
    assert len(dump.notes) <= 65


# -- the limits per dump (symbolicator/limits.py) --------------------------------------------


def test_modules_and_memory_regions_past_the_limits_are_cut_with_a_note() -> None:
    """Issue 11 item 12: a list longer than the limit is read up to it, and said so."""
    writer = MinidumpWriter().add_system_info()
    writer.add_module_list([ModuleSpec(0x10_0000 * (i + 1), 0x1000, f"m{i}.so") for i in range(12)])
    writer.add_memory_list([(0x100_0000 + 0x100 * i, b"\x01" * 16) for i in range(9)])
    writer.add_memory64_list([(0x200_0000 + 0x100 * i, b"\x02" * 16) for i in range(7)])
    writer.add_unloaded_modules([ModuleSpec(0x9000_0000 + 0x1000 * i, 0x1000, f"gone{i}.dll") for i in range(3)])
    dump = read_minidump(writer.build(), Limits(modules=10, memory_regions=5, unloaded_modules=2))
    assert len(dump.modules) == 10 and len(dump.memory.regions) == 10 and len(dump.unloaded_modules) == 2
    assert dump.cut == {"modules": (12, 10), "memory regions": (16, 10), "unloaded modules": (3, 2)}
    assert dump.notes[:3] == [
        "modules: 12 listed, 10 read; the rest left out (limits: docs/processing.md)",
        "memory regions: 16 listed, 10 read; the rest left out (limits: docs/processing.md)",
        "unloaded modules: 3 listed, 2 read; the rest left out (limits: docs/processing.md)",
    ]


def test_crashpad_annotations_are_bounded_per_dump() -> None:
    writer = MinidumpWriter().add_system_info()
    simple = {f"key{i}": "value" for i in range(6)}
    modules = [(0, [f"list {i}" for i in range(3)], {"module key": "v"}, {})]
    writer.add_crashpad_info(
        "5A9832E5-2872-41C1-838E-D98914E9B7FF", "00000000-0000-0000-0000-000000000001", simple, modules
    )
    dump = read_minidump(writer.build(), Limits(annotations=8))
    assert len(dump.annotations) == 6
    assert dump.crashpad is not None and dump.crashpad.modules[0].list_annotations == ["list 0", "list 1"]
    assert dump.cut == {"annotations": (10, 8)}  # 6 of 6, 2 of 3, 0 of 1


def test_thread_names_are_decoded_once_per_thread_read() -> None:
    """A names list naming one thread 100,000 times costs one decode, and names of threads
    past the limit are not kept."""
    context = amd64_context(rip=0x401000, rsp=0x7000)
    writer = MinidumpWriter().add_system_info()
    writer.add_thread_list([ThreadSpec(1, context), ThreadSpec(2, context), ThreadSpec(3, context)], share=True)
    writer.add_stream(
        0x18,
        struct.pack("<I", 100_001)
        + struct.pack("<IQ", 1, writer.add_string("main")) * 100_000
        + struct.pack("<IQ", 3, writer.add_string("worker")),
    )
    dump = read_minidump(writer.build(), Limits(threads=2))
    assert [(t.thread_id, t.name) for t in dump.threads] == [(1, "main"), (2, None)]
