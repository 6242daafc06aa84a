"""cache: every corpus symbol file converted once, then looked up against the oracles
(rust-minidump's frames, the committed inline answer), CFI rows, STACK WIN records, Breakpad's
FUNC/PUBLIC rule, native ELF files, corrupt files and stale caches."""

from __future__ import annotations

import json
import ntpath
import os
import posixpath
import random
import shutil
import subprocess
import sys
from bisect import bisect_right
from pathlib import Path

import pytest
from test_symfile import INLINE_CASE, INLINE_CASE_NEW, corpus_sym_files

from schemas.stack import SourceLocation
from symbolicator.symbols.cache import (
    INDEX_NAME,
    SYMCACHE_NAME,
    MalformedSymbols,
    ModuleSymbols,
    build_caches,
    module_cache_dir,
    open_caches,
    read_index,
)
from symbolicator.symbols.symfile import parse_cfi_rules, scan_sym

from conftest import REPO, require_corpus


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Caches of every distinct corpus .sym, built once for this module."""
    root = tmp_path_factory.mktemp("symcache")
    for path in corpus_sym_files():
        build_caches(path, root)
    return root


def load(path: Path, root: Path) -> ModuleSymbols:
    return open_caches(path, root, path.parent.parent.name, path.parent.name)


def corpus_file(name: str, case: str = "") -> Path:
    """The corpus .sym called name, in the first case whose name contains case."""
    return next(p for p in sorted(require_corpus().glob(f"*{case}*/symbols/*/*/{name}")))


def basename(path: str | None) -> str | None:
    if path is None:
        return None
    return ntpath.basename(path) if "\\" in path else posixpath.basename(path)


def test_every_corpus_file_builds(cache_root: Path) -> None:
    for path in corpus_sym_files():
        target = module_cache_dir(cache_root, path.parent.parent.name, path.parent.name)
        assert (target / SYMCACHE_NAME).is_file() and (target / INDEX_NAME).is_file(), path
        header, _ = read_index(target / INDEX_NAME)
        assert header["module"]["debug_id"] == path.parent.name
        assert not [p.name for p in target.iterdir() if p.name.startswith(".")]  # no temp files left


def test_build_reports_what_it_made(tmp_path: Path) -> None:
    info = build_caches(corpus_file("test_app.sym", "win-x86"), tmp_path)
    assert (info.debug_file, info.debug_id, info.arch) == ("test_app.pdb", "5A9832E5287241C1838ED98914E9B7FF1", "x86")
    assert info.file_format == "breakpad" and info.os == "windows"
    assert info.functions == 1065 and info.publics == 5 and info.win_records == 1815 and info.cfi_rows == 0
    assert info.symcache_bytes > 0 and info.index_bytes > 0 and info.bad_records == 0


def oracle_frames() -> list:
    """(case, module, lookup offset, expected (function, file, line), expected inlines) for
    every rust-minidump frame in a module whose symbols the corpus has."""
    frames = []
    for case in sorted(require_corpus().iterdir()):
        if not (case / "symbols").is_dir() or case.name == "linux-x64-breakpad-inline":
            continue  # rust-minidump rejects that file's old INLINE records: see below
        report = json.loads((case / "oracle-raw" / "tool-rust-minidump-stackwalk.json").read_text())
        modules = {m["filename"]: m for m in report["modules"]}
        for thread in report["threads"]:
            for frame in thread["frames"]:
                module = modules.get(frame["module"])
                if not module or not module["loaded_symbols"]:
                    continue
                offset = int(frame["module_offset"], 16) - (frame["trust"] != "context")
                expected = (frame["function"], basename(frame["file"]), frame["line"])
                inlines = [(i["function"], basename(i["file"]), i["line"]) for i in frame.get("inlines") or []]
                frames.append((case, module, offset, expected, inlines))
    return frames


def test_lookups_match_rust_minidump(cache_root: Path) -> None:
    frames = oracle_frames()
    assert len(frames) >= 100
    with_inlines = named = 0
    for case, module, offset, expected, inlines in frames:
        path = next((case / "symbols" / module["debug_file"] / module["debug_id"]).glob("*.sym"))
        found = load(path, cache_root).symbolize(offset)
        if expected[0] is None:  # outside every function (e.g. null_read_av 0x205c, past main)
            assert found == [], (case.name, hex(offset))
            continue
        outer = found[-1]
        assert (outer.function, basename(outer.file), outer.line) == expected, (case.name, hex(offset))
        assert [(i.function, basename(i.file), i.line) for i in found[:-1]] == inlines, (case.name, hex(offset))
        assert outer.function_offset is not None and outer.function_offset >= 0
        with_inlines += bool(inlines)
        named += 1
    assert named >= 90 and with_inlines >= 3  # mac-x64-rust-inlines has inlined frames


def test_old_inline_case_gets_breakpads_answer(cache_root: Path) -> None:
    """The committed Breakpad answer for linux_inline.old.sym at 0x161b6 (expected.json)."""
    corpus = require_corpus()
    expected = json.loads((corpus / "linux-x64-breakpad-inline" / "expected.json").read_text())
    found = load(corpus / INLINE_CASE, cache_root).symbolize(0x161B6)
    assert [(s.function, s.file, s.line) for s in found] == [
        (f["function"], f["file"], f["line"]) for f in expected["frames"]]
    assert [s.function for s in found] == ["func()", "bar()", "foo()", "main"]
    assert found[-1].function_offset == 0x161B6 - 0x15B30
    header, _ = read_index(module_cache_dir(cache_root, "linux_inline", "BBA6FA10B8AAB33D00000000000000000") / INDEX_NAME)
    assert header["old_inlines_rewritten"] == 6


def test_new_inline_format_gets_call_site_files(tmp_path: Path) -> None:
    corpus = require_corpus()
    expected = json.loads((corpus / "linux-x64-breakpad-inline" / "expected.json").read_text())
    found = load(corpus / INLINE_CASE_NEW, tmp_path).symbolize(0x161B6)
    assert [(s.function, s.file, s.line) for s in found] == [
        (f["function"], f["file"], f["line"]) for f in expected["frames_alt_newsym"]]  # a.cpp, b.cpp, c.cpp


def test_inline_call_site_files_through_symbolic(tmp_path: Path) -> None:
    """The old-format rewrite, end to end: each caller's line is in the caller's file."""
    sym = tmp_path / "m.sym"
    sym.write_bytes(b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 m\n"
                    b"FILE 0 main.cpp\nFILE 1 a.h\nFILE 2 b.h\n"
                    b"INLINE_ORIGIN 0 1 inner_a()\nINLINE_ORIGIN 1 2 inner_b()\n"
                    b"FUNC 1000 100 0 main\nINLINE 0 10 0 1010 50\nINLINE 1 20 1 1020 10\n"
                    b"1000 10 5 0\n1010 10 30 1\n1020 10 40 2\n1030 d0 6 0\n")
    found = open_caches(sym, tmp_path / "cache", "m", "0123456789ABCDEF0123456789ABCDEF0").symbolize(0x1025)
    assert [(s.function, s.file, s.line) for s in found] == [
        ("inner_b()", "b.h", 40), ("inner_a()", "a.h", 20), ("main", "main.cpp", 10)]


def test_cfi_rules_init_then_deltas(cache_root: Path) -> None:
    """crash.sym: STACK CFI INIT 1ec0 3b, deltas at 1ec3, 1edd, 1ee0, 1efa."""
    symbols = load(corpus_file("crash.sym", "linux-x64-symbolic-mini"), cache_root)
    init = {".cfa": "$rsp 8 +", ".ra": ".cfa -8 + ^"}
    assert symbols.cfi_rules(0x1EC0) == init
    assert symbols.cfi_rules(0x1EC2) == init
    assert symbols.cfi_rules(0x1EC3) == {**init, ".cfa": "$rsp 16 +", "$rbx": ".cfa -16 + ^"}
    assert symbols.cfi_rules(0x1EDD) == {**init, ".cfa": "$rsp 8 +", "$rbx": ".cfa -16 + ^"}
    assert symbols.cfi_rules(0x1EFA) == {**init, ".cfa": "$rsp 8 +", "$rbx": ".cfa -16 + ^"}
    assert symbols.cfi_rules(0x1EC0 + 0x3B) is None  # past the INIT's range, before the next one
    assert symbols.cfi_rules(0) is None


def naive_cfi(path: Path) -> tuple[list[tuple[int, int, str]], dict[int, str]]:
    inits, deltas = [], {}
    for line in path.read_text().splitlines():
        if line.startswith("STACK CFI INIT "):
            addr, size, rules = line[15:].split(" ", 2)
            inits.append((int(addr, 16), int(size, 16), rules))
        elif line.startswith("STACK CFI "):
            addr, rules = line[10:].split(" ", 1)
            deltas[int(addr, 16)] = rules
    return sorted(inits), deltas


@pytest.mark.parametrize("name,case", [("libc.so.6.sym", "abort-O2"), ("crash_linux.sym", ""),
                                       ("crash.sym", "mac-x64-symbolic-mini")])
def test_cfi_rules_match_breakpads_rule_from_the_text(cache_root: Path, name: str, case: str) -> None:
    path = corpus_file(name, case)
    symbols = load(path, cache_root)
    inits, deltas = naive_cfi(path)
    delta_addrs = sorted(deltas)
    rng = random.Random(7)
    checked = 0
    for addr, size, _rules in rng.sample(inits, min(300, len(inits))):
        for offset in (addr, addr + size - 1, addr + rng.randrange(size), addr + size):
            expected: dict[str, str] | None = None
            i = bisect_right(inits, (offset, float("inf"), "")) - 1
            if i >= 0 and offset < inits[i][0] + inits[i][1]:
                expected = {}
                parse_cfi_rules(inits[i][2], expected)
                for d in delta_addrs[bisect_right(delta_addrs, inits[i][0] - 1):bisect_right(delta_addrs, offset)]:
                    parse_cfi_rules(deltas[d], expected)
            assert symbols.cfi_rules(offset) == expected, (name, hex(offset))
            checked += 1
    assert checked > 100


def naive_win(path: Path, kind: int) -> list:
    """Breakpad's ContainedRangeMap, naively: a record is kept when it nests in or is disjoint
    from every record kept before it; a lookup takes the smallest kept range holding it."""
    kept = []
    with open(path, "rb") as f:
        records = scan_sym(f).win
    for w in records:
        if w.type != kind or not w.code_size:
            continue
        a, b = w.rva, w.rva + w.code_size
        if all(b <= c or d <= a or ((c <= a and b <= d) or (a <= c and d <= b)) and (a, b) != (c, d)
               for c, d, _ in kept):
            kept.append((a, b, w))
    return kept


@pytest.mark.parametrize("name,case", [("test_app.sym", "win-x86-breakpad-minidump2"),
                                       ("kernel32.sym", "win-x86-breakpad-minidump2"),
                                       ("crash.sym", "win-x86-symbolic-mini")])
def test_stack_win_lookups_match_a_naive_contained_range_map(cache_root: Path, name: str, case: str) -> None:
    path = corpus_file(name, case)
    symbols = load(path, cache_root)
    frame_data, fpo = naive_win(path, 4), naive_win(path, 0)
    rng = random.Random(3)
    top = max(b for _, b, _ in frame_data + fpo)
    offsets = [rng.randrange(0, top + 16) for _ in range(1500)] + [a for a, _, _ in frame_data[:300]]
    for offset in offsets:
        expected = None
        for kept in (frame_data, fpo):
            holding = [(b - a, w) for a, b, w in kept if a <= offset < b]
            if holding:
                expected = min(holding, key=lambda t: t[0])[1]
                break
        assert symbols.win_frame_info(offset) == expected, (name, hex(offset))


def test_stack_win_x86_examples(cache_root: Path) -> None:
    symbols = load(corpus_file("test_app.sym", "win-x86-breakpad-minidump2"), cache_root)
    main = symbols.win_frame_info(0x41B0 + 0x20)
    assert main is not None and (main.type, main.rva, main.code_size, main.local_size) == (4, 0x41B0, 0x86, 0xE0)
    assert main.program_string is not None and main.program_string.startswith("$T0 $ebp = $eip $T0 4 + ^ =")
    # nested: 10054+15f holds 1005b+a1; 1005c+b2 overlaps 1005b partly and was dropped
    assert symbols.win_frame_info(0x1005C).rva == 0x1005B
    assert symbols.win_frame_info(0x10100).rva == 0x10054
    fpo_only = symbols.win_frame_info(0x1000)
    assert fpo_only is not None and fpo_only.type == 0 and fpo_only.program_string is None
    assert fpo_only.parameter_size == 4
    assert symbols.win_frame_info(0x7FFFFFFF) is None


def test_function_at_follows_breakpad(cache_root: Path) -> None:
    symbols = load(corpus_file("test_app.sym", "win-x86-breakpad-minidump2"), cache_root)
    func = symbols.function_at(0x1000 + 3)
    assert func is not None and (func.name, func.address, func.size, func.parameter_size) == ("vswprintf", 0x1000, 0x13, 4)
    # PUBLIC 142e8 _NLG_Dispatch2 lies inside FUNC 142d1 1f _NLG_Notify: the FUNC wins
    assert symbols.function_at(0x142EE).name == "_NLG_Notify"
    assert [s.function for s in symbols.symbolize(0x142EE)] == ["_NLG_Notify"]
    assert symbols.function_at(0x10) is None and symbols.symbolize(0x10) == []


def test_public_symbols_reach_up_to_the_next_function(cache_root: Path) -> None:
    """crashme.sym: PUBLIC 1210 frame_dummy, FUNC 1219 ... FUNC 1386 318 main, PUBLIC 16a0 _fini."""
    symbols = load(corpus_file("crashme.sym", "segv-O0"), cache_root)
    start = symbols.function_at(0x1140)
    assert start is not None and (start.name, start.address, start.size) == ("_start", 0x1130, None)
    assert symbols.function_at(0x1215).name == "frame_dummy"
    assert symbols.function_at(0x16A4).name == "_fini"
    # past main's end, the nearest PUBLIC below (frame_dummy) lies below main: nothing
    assert symbols.function_at(0x169F) is None and symbols.symbolize(0x169F) == []
    assert symbols.symbolize(0x16A4) == [SourceLocation("_fini", 4)]
    assert symbols.symbolize(0x1386)[-1].function == "main" and symbols.symbolize(0x1386)[-1].line


def test_public_at_zero_is_ignored(cache_root: Path) -> None:
    """``PUBLIC 0 0 _mh_execute_header`` (macOS) names nothing, as in Breakpad."""
    symbols = load(corpus_file("crash_macos.sym"), cache_root)
    assert symbols.function_at(0x100) is None and symbols.symbolize(0x100) == []
    assert symbols.function_at(0x1170).name == "main"


def test_every_function_start_resolves_to_itself(cache_root: Path) -> None:
    path = corpus_file("crash-client.sym")
    symbols = load(path, cache_root)
    with open(path, "rb") as f:
        scan = scan_sym(f)
    names = scan.strings.strings
    for start, size, name in list(zip(scan.func_start, scan.func_size, scan.func_name, strict=False))[::20]:
        info = symbols.function_at(start + size - 1)
        assert info is not None and (info.address, info.name) == (start, names[name])
        assert symbols.symbolize(start)[-1].function == names[name]


def test_native_elf_with_dwarf(tmp_path: Path) -> None:
    """A native debug file: symbolic reads DWARF for lines and .eh_frame for CFI."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build a native ELF test file")
    source = tmp_path / "native.c"
    source.write_text("#include <stdio.h>\n"
                      "static inline __attribute__((always_inline)) int twice(int x) {\n"
                      "    return x * 2 + printf(\"%d\\n\", x);\n"
                      "}\n"
                      "__attribute__((noinline)) int work(int n) {\n"
                      "    int s = 0;\n"
                      "    for (int i = 0; i < n; i++) s += twice(i);\n"
                      "    return s;\n"
                      "}\n"
                      "int main(int argc, char **argv) { return work(argc); }\n")
    binary = tmp_path / "native"
    subprocess.run([compiler, "-g", "-O1", "-o", str(binary), str(source)], check=True)
    info = build_caches(binary, tmp_path / "cache")
    assert info.file_format == "elf" and info.debug_file == "native" and len(info.debug_id) == 33
    symbols = open_caches(binary, tmp_path / "cache", info.debug_file, info.debug_id)
    nm = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    work = int(next(line for line in nm.splitlines() if line.endswith(" work")).split()[0], 16)
    entry = symbols.symbolize(work)
    assert (entry[-1].function, basename(entry[-1].file), entry[-1].function_offset) == ("work", "native.c", 0)
    assert symbols.function_at(work + 1).name == "work"
    assert symbols.cfi_rules(work) == {".cfa": "$rsp 8 +", ".ra": ".cfa -8 + ^"}
    inlined = [symbols.symbolize(off) for off in range(work, work + 0x60)]
    assert any(len(s) == 2 and s[0].function == "twice" and s[1].function == "work" for s in inlined)


def test_unsupported_file_is_malformed(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdb"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(MalformedSymbols) as raised:
        open_caches(junk, tmp_path / "cache", "junk.pdb", "0123456789ABCDEF0123456789ABCDEF1")
    assert raised.value.reason == "unsupported_format"
    [marker] = (tmp_path / "cache" / "junk.pdb" / "0123456789ABCDEF0123456789ABCDEF1").glob("corrupt-*.json")
    corrupt = json.loads(marker.read_text())
    assert corrupt["reason"] == "unsupported_format"
    # remembered: the same file is not converted again (and still refused)
    with pytest.raises(MalformedSymbols):
        open_caches(junk, tmp_path / "cache", "junk.pdb", "0123456789ABCDEF0123456789ABCDEF1")


def test_sym_that_symbolic_rejects_is_malformed(tmp_path: Path) -> None:
    sym = tmp_path / "bad.sym"
    sym.write_bytes(b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 bad\nFUNC 1000 10 0 f\nINLINE x y z\n")
    with pytest.raises(MalformedSymbols) as raised:
        build_caches(sym, tmp_path / "cache")
    assert raised.value.reason == "symcache_failed"
    no_module = tmp_path / "nomodule.sym"
    no_module.write_bytes(b"MODULE \nFUNC 1000 10 0 f\n")
    with pytest.raises(MalformedSymbols):
        build_caches(no_module, tmp_path / "cache", debug_file="x", debug_id="00")


def test_caches_are_reused_then_rebuilt_when_the_source_changes(tmp_path: Path) -> None:
    sym = tmp_path / "crashme.sym"
    shutil.copy(corpus_file("crashme.sym", "segv-O0"), sym)
    debug_file, debug_id = "crashme", "B19A4795B226ABBD7EE6DBD76B7952480"
    open_caches(sym, tmp_path / "cache", debug_file, debug_id)
    index = module_cache_dir(tmp_path / "cache", debug_file, debug_id) / INDEX_NAME
    first = index.stat().st_mtime_ns
    open_caches(sym, tmp_path / "cache", debug_file, debug_id)
    assert index.stat().st_mtime_ns == first  # loaded, not rebuilt
    sym.write_text(sym.read_text().replace(" main\n", " renamed_main\n"))
    symbols = open_caches(sym, tmp_path / "cache", debug_file, debug_id)
    assert any("renamed_main" in (s.function or "") for off in range(0x1000, 0x1400)
               for s in symbols.symbolize(off)[-1:])


def test_index_of_another_format_version_is_rebuilt(tmp_path: Path) -> None:
    sym = corpus_file("crashme.sym", "segv-O0")
    debug_file, debug_id = "crashme", "B19A4795B226ABBD7EE6DBD76B7952480"
    open_caches(sym, tmp_path, debug_file, debug_id)
    index = module_cache_dir(tmp_path, debug_file, debug_id) / INDEX_NAME
    data = bytearray(index.read_bytes())
    data[8] = 0xEE  # the version field
    index.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        read_index(index)
    assert open_caches(sym, tmp_path, debug_file, debug_id).function_at(0x1386).name == "main"
    read_index(index)  # rewritten in the current format


def test_symbols_modules_import_in_any_order() -> None:
    for first in ("symfile", "cache", "sources", "provider"):
        code = f"import symbolicator.symbols.{first}; import symbolicator.symbols.provider as p; p.CachedSymbolProvider"
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={**os.environ})
