"""symfile: the streaming .sym reader (FUNC, PUBLIC, STACK CFI, STACK WIN) and the rewrite of
old-format INLINE records."""

from __future__ import annotations

import io
from pathlib import Path

from symbolicator.symbols.symfile import (
    ModuleRecord,
    normalize_inlines,
    parse_cfi_rules,
    parse_stack_win,
    read_module_record,
    scan_sym,
)
from symbolicator.symbols.types import WinFrameInfo

from conftest import require_corpus

INLINE_CASE = "linux-x64-breakpad-inline/symbols/linux_inline/BBA6FA10B8AAB33D00000000000000000/linux_inline.sym"
INLINE_CASE_NEW = INLINE_CASE.replace("/symbols/", "/symbols-alt/")


def corpus_sym_files() -> list[Path]:
    """Every distinct .sym of the corpus (cases share some: one copy each)."""
    seen: dict[str, Path] = {}
    for path in sorted(require_corpus().glob("*/symbols/*/*/*.sym")):
        seen.setdefault(f"{path.parent.parent.name}/{path.parent.name}", path)
    return list(seen.values())


def count_records(path: Path) -> dict[str, int]:
    counts = {"FUNC": 0, "PUBLIC": 0, "INIT": 0, "DELTA": 0, "WIN": 0}
    for line in path.read_bytes().splitlines():
        if line.startswith(b"FUNC "):
            counts["FUNC"] += 1
        elif line.startswith(b"PUBLIC "):
            counts["PUBLIC"] += 1
        elif line.startswith(b"STACK CFI INIT "):
            counts["INIT"] += 1
        elif line.startswith(b"STACK CFI "):
            counts["DELTA"] += 1
        elif line.startswith(b"STACK WIN "):
            counts["WIN"] += 1
    return counts


def test_every_corpus_sym_file_scans_cleanly() -> None:
    files = corpus_sym_files()
    assert len(files) >= 15
    for path in files:
        with open(path, "rb") as f:
            scan = scan_sym(f)
        assert scan.bad_records == 0, (path, scan.first_error)
        assert scan.module is not None
        # the symbol-server layout: <debug_file>/<DEBUG_ID>/<name>.sym
        assert (scan.module.debug_file, scan.module.debug_id) == (path.parent.parent.name, path.parent.name)
        counts = count_records(path)
        assert (len(scan.func_start), len(scan.public_addr)) == (counts["FUNC"], counts["PUBLIC"]), path
        assert (len(scan.cfi_start), len(scan.delta_addr), len(scan.win)) == (
            counts["INIT"], counts["DELTA"], counts["WIN"]), path


def test_module_and_code_id() -> None:
    with open(require_corpus() / INLINE_CASE, "rb") as f:
        scan = scan_sym(f)
    assert scan.module is not None
    assert (scan.module.os, scan.module.arch, scan.module.debug_file) == ("Linux", "x86_64", "linux_inline")
    assert scan.code_id == "10FAA6BBAAB83DB3"
    assert list(scan.func_start) == [0x15B30] and list(scan.func_size) == [0x6CF]
    assert scan.strings.strings[scan.func_name[0]] == "main"


def test_func_and_public_records_with_m_flag_and_spaces() -> None:
    text = (b"MODULE windows x86 0123456789ABCDEF0123456789ABCDEF1 a.pdb\n"
            b"FUNC m 1000 10 8 Foo::bar(int, char const*)\n"
            b"1000 10 12 0\n"
            b"PUBLIC m 2000 c operator new(unsigned int)\n"
            b"PUBLIC 3000 0 _start\n")
    scan = scan_sym(io.BytesIO(text))
    names = scan.strings.strings
    assert (scan.func_start[0], scan.func_size[0], scan.func_param[0]) == (0x1000, 0x10, 8)
    assert names[scan.func_name[0]] == "Foo::bar(int, char const*)"
    assert list(scan.public_addr) == [0x2000, 0x3000] and list(scan.public_param) == [0xC, 0]
    assert [names[i] for i in scan.public_name] == ["operator new(unsigned int)", "_start"]
    assert scan.bad_records == 0


def test_bad_records_are_counted_and_skipped() -> None:
    text = (b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 a\n"
            b"FUNC zz 10 0 broken\n"
            b"STACK WIN 4 1000 10\n"
            b"STACK CFI INIT 1000 10 no-register-here\n"
            b"FUNC 1000 10 0 fine\n")
    scan = scan_sym(io.BytesIO(text))
    assert scan.bad_records == 3
    assert scan.first_error == "line 2: FUNC zz 10 0 broken"
    assert list(scan.func_start) == [0x1000]


def test_stack_win_frame_data_and_fpo() -> None:
    frame_data = parse_stack_win("4 41b0 86 13 0 8 0 e0 0 1 $T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ =")
    assert frame_data == WinFrameInfo(
        type=4, rva=0x41B0, code_size=0x86, prolog_size=0x13, epilog_size=0, parameter_size=8,
        saved_register_size=0, local_size=0xE0, max_stack_size=0,
        program_string="$T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ =", allocates_base_pointer=False)
    fpo = parse_stack_win("0 1060 19 8 0 4 0 0 0 0 1")
    assert fpo is not None and fpo.type == 0 and fpo.program_string is None and fpo.allocates_base_pointer
    assert (fpo.rva, fpo.code_size, fpo.prolog_size, fpo.parameter_size) == (0x1060, 0x19, 8, 4)
    assert parse_stack_win("4 41b0 86") is None
    assert parse_stack_win("4 41b0 86 13 0 8 0 e0 0 0 xyz") is None


def test_x86_corpus_stack_win_records() -> None:
    path = next(p for p in corpus_sym_files() if p.name == "test_app.sym" and "win-x86" in str(p))
    with open(path, "rb") as f:
        scan = scan_sym(f)
    kinds = {w.type for w in scan.win}
    assert kinds == {0, 4}
    main = next(w for w in scan.win if w.rva == 0x41B0)
    assert main.type == 4 and main.local_size == 0xE0 and main.program_string.startswith("$T0 $ebp =")
    assert all((w.program_string is None) == (w.type == 0) for w in scan.win)


def test_cfi_rules_update_in_place() -> None:
    rules: dict[str, str] = {}
    parse_cfi_rules(".cfa: $rsp 8 + .ra: .cfa -8 + ^", rules)
    assert rules == {".cfa": "$rsp 8 +", ".ra": ".cfa -8 + ^"}
    parse_cfi_rules("$rbx: .cfa -16 + ^ .cfa: $rsp 16 +", rules)
    assert rules == {".cfa": "$rsp 16 +", ".ra": ".cfa -8 + ^", "$rbx": ".cfa -16 + ^"}


def test_old_inline_records_are_detected() -> None:
    with open(require_corpus() / INLINE_CASE, "rb") as f:
        old = scan_sym(f)
    assert old.old_inlines == 6  # 3 INLINE_ORIGIN + 3 INLINE
    assert old.old_origin_files == {0: 0, 1: 0, 2: 0}
    with open(require_corpus() / INLINE_CASE_NEW, "rb") as f:
        new = scan_sym(f)
    assert new.old_inlines == 0 and new.bad_records == 0


def test_old_inline_records_are_rewritten_to_the_new_format() -> None:
    source = (require_corpus() / INLINE_CASE).read_bytes()
    with open(require_corpus() / INLINE_CASE, "rb") as f:
        scan = scan_sym(f)
    out = io.BytesIO()
    assert normalize_inlines(io.BytesIO(source), out, scan.old_origin_files) == 6
    lines = out.getvalue().decode().splitlines()
    assert [line for line in lines if line.startswith("INLINE")] == [
        "INLINE_ORIGIN 0 bar()", "INLINE_ORIGIN 1 foo()", "INLINE_ORIGIN 2 func()",
        "INLINE 0 42 0 1 15b45 6b1", "INLINE 1 39 0 0 15b72 684", "INLINE 2 32 0 2 15b83 673"]
    # everything else is copied as it was
    assert [line for line in lines if not line.startswith("INLINE")] == [
        line for line in source.decode().splitlines() if not line.startswith("INLINE")]
    assert scan_sym(io.BytesIO(out.getvalue())).old_inlines == 0


def test_call_site_file_is_where_the_caller_is_defined() -> None:
    """Nest 0: the FUNC's own file. Nest N: the file of the parent inline's origin."""
    old = (b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 m\n"
           b"FILE 0 main.cpp\nFILE 1 a.h\nFILE 2 b.h\n"
           b"INLINE_ORIGIN 0 1 inner_a()\nINLINE_ORIGIN 1 2 inner_b()\n"
           b"FUNC 1000 100 0 main\n"
           b"INLINE 0 10 0 1010 50\n"
           b"INLINE 1 20 1 1020 10\n"
           b"1000 10 5 0\n1010 10 30 1\n1020 10 40 2\n1030 d0 6 0\n")
    scan = scan_sym(io.BytesIO(old))
    out = io.BytesIO()
    normalize_inlines(io.BytesIO(old), out, scan.old_origin_files)
    text = out.getvalue().decode()
    assert "INLINE 0 10 0 0 1010 50\n" in text  # called from main, in main.cpp
    assert "INLINE 1 20 1 1 1020 10\n" in text  # called from inner_a, defined in a.h


def test_read_module_record_from_the_first_line() -> None:
    head = (require_corpus() / INLINE_CASE).read_bytes()[:200]
    assert read_module_record(head) == ModuleRecord("Linux", "x86_64", "BBA6FA10B8AAB33D00000000000000000", "linux_inline")
    assert read_module_record(b"MODULE windows x86 5a9832e5287241c1838ed98914e9b7ff1 test app.pdb\r\n") == ModuleRecord(
        "windows", "x86", "5A9832E5287241C1838ED98914E9B7FF1", "test app.pdb")
    assert read_module_record(b"\x7fELF\x02\x01") is None and read_module_record(b"MODULE Linux\n") is None
