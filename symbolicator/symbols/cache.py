"""Convert a debug file once into caches, then answer lookups from them.

For each module, under ``<cache_root>/<debug_file>/<DEBUG_ID>/``:

``symbols.symcache``  symbolic's SymCache (function, file, line and inlines by address),
                      memory-mapped when opened.
``symbols.index``     our own binary index, read whole: STACK CFI rows, STACK WIN records
                      (frame data and FPO) and, for Breakpad ``.sym`` files, FUNC and PUBLIC
                      records with their parameter sizes. Sorted arrays searched by bisect,
                      so a lookup never parses the symbol file again.
``corrupt-<hash>.json`` a source file (one per path: a bad upload must not hide a good
                      download) could not be converted: why, and the file's size and mtime.

Inputs: a Breakpad ``.sym`` (read by symfile.scan_sym; old INLINE records rewritten before
symbolic sees them) or any native file symbolic reads (ELF/DWARF, Mach-O/dSYM, PDB, PE),
whose CFI and STACK WIN text come from symbolic's CFI cache.

Every file is written atomically (temporary file + rename). The index is written last and
records the source file (path, size, mtime) and the format version: a changed source or an
older format means a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
import time
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Callable

import symbolic
from symbolic.debuginfo import Archive, Object
from symbolic.symcache import SymCache

from schemas.stack import SourceLocation
from symbolicator.symbols.provider import FunctionInfo, WinFrameInfo
from symbolicator.symbols.sources import breakpad_layout
from symbolicator.symbols.symfile import (STACK_WIN_FPO, STACK_WIN_FRAME_DATA, SymScan, StringTable,
                                          normalize_inlines, parse_cfi_rules, scan_sym)

INDEX_MAGIC = b"CRASHDIX"
INDEX_VERSION = 1
SYMCACHE_NAME = "symbols.symcache"
INDEX_NAME = "symbols.index"
CORRUPT_PREFIX = "corrupt-"
NO_ADDRESS = 0xFFFFFFFF  # symbolic's "unknown" sym_addr (inlined functions)
_HEADER = struct.Struct("<8sII")  # magic, version, length of the JSON header
_WIN_FIELDS = 11  # type rva code_size prolog epilog params saved locals max_stack allocates_bp program+1


class MalformedSymbols(Exception):
    """The debug file exists but cannot be used; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CacheInfo:
    """What build_caches made, for logs and the upload endpoint's answer."""

    debug_file: str
    debug_id: str
    code_id: str | None
    code_file: str | None
    os: str | None
    arch: str
    file_format: str  # "breakpad", "elf", "macho", "pdb", "pe", ...
    cache_dir: str
    symcache_bytes: int
    index_bytes: int
    functions: int
    publics: int
    cfi_rows: int  # INIT + delta records
    win_records: int
    bad_records: int
    old_inlines_rewritten: int
    build_seconds: float


def module_cache_dir(cache_root: Path, debug_file: str, debug_id: str) -> Path:
    """``<cache_root>/<debug_file>/<DEBUG_ID>``; raises MalformedSymbols for unusable ids."""
    key = breakpad_layout(debug_file, debug_id)
    if key is None:
        raise MalformedSymbols("bad_module_id", f"{debug_file!r} {debug_id!r}")
    return cache_root / key[0] / key[1]


def breakpad_debug_id(symbolic_id: str) -> str:
    """symbolic's ``5a9832e5-2872-41c1-838e-d98914e9b7ff-1`` -> ``5A9832E5287241C1838ED98914E9B7FF1``."""
    parts = symbolic_id.split("-")
    age = parts[5] if len(parts) > 5 else "0"
    return ("".join(parts[:5]) + age).upper()


# -- building ---------------------------------------------------------------------------------


def build_caches(path: Path, cache_root: Path, *, debug_file: str | None = None,
                 debug_id: str | None = None) -> CacheInfo:
    """Convert the debug file at path into caches for its module; returns what was made.

    debug_file/debug_id name the module (the cache folder); by default they come from the
    file (a .sym's MODULE line; a native file's own debug id and file name). Raises
    MalformedSymbols (and remembers it in corrupt-*.json when the module is known) when it is not
    a debug file symbolic and we can read; OSError when it cannot be read at all.
    """
    started = time.perf_counter()
    path = Path(path)
    with open(path, "rb") as f:
        is_sym = f.read(7) == b"MODULE "
    target = module_cache_dir(cache_root, debug_file, debug_id) if debug_file and debug_id else None
    try:
        if is_sym:
            scan, build = _read_sym(path)
            assert scan.module is not None
            debug_file = debug_file or scan.module.debug_file
            debug_id = debug_id or scan.module.debug_id
        else:
            scan, build, obj_id = _read_native(path, debug_id)
            debug_file, debug_id = debug_file or path.name, debug_id or obj_id
        target = module_cache_dir(cache_root, debug_file, debug_id)
        target.mkdir(parents=True, exist_ok=True)
        rewritten, obj = build(target)
        symcache = _make_symcache(obj)
        _write_atomic(target / SYMCACHE_NAME, symcache.dump_into)
    except MalformedSymbols as exc:
        if target is not None:
            _write_corrupt(target, path, exc)
        raise
    header = {
        "module": {"debug_file": debug_file, "debug_id": debug_id.upper(), "code_id": scan.code_id or obj.code_id,
                   "code_file": scan.code_file, "os": scan.module.os if scan.module else None, "arch": obj.arch,
                   "file_format": obj.file_format},
        "source": _source_stamp(path), "symcache_bytes": (target / SYMCACHE_NAME).stat().st_size,
        "has_functions": is_sym, "old_inlines_rewritten": rewritten,
        "bad_records": scan.bad_records, "first_error": scan.first_error,
    }
    counts = _write_index(target / INDEX_NAME, scan, header)
    corrupt_path(target, path).unlink(missing_ok=True)
    m = header["module"]
    return CacheInfo(debug_file=m["debug_file"], debug_id=m["debug_id"], code_id=m["code_id"], code_file=m["code_file"],
                     os=m["os"], arch=m["arch"], file_format=m["file_format"], cache_dir=str(target),
                     symcache_bytes=header["symcache_bytes"],
                     index_bytes=(target / INDEX_NAME).stat().st_size, bad_records=scan.bad_records,
                     old_inlines_rewritten=rewritten, build_seconds=time.perf_counter() - started, **counts)


Builder = Callable[[Path], "tuple[int, Object]"]


def _read_sym(path: Path) -> tuple[SymScan, Builder]:
    """Scan a .sym; the builder opens it with symbolic (rewriting old INLINE records first)."""
    with open(path, "rb") as f:
        scan = scan_sym(f)
    if scan.module is None:
        raise MalformedSymbols("no_module_record")

    def build(target: Path) -> tuple[int, Object]:
        if not scan.old_inlines:
            return 0, _open_object(path, None)
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".normalized-", suffix=".sym")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as f:
                rewritten = normalize_inlines(f, out, scan.old_origin_files)
            return rewritten, _open_object(Path(tmp), None)
        finally:
            os.unlink(tmp)

    return scan, build


def _read_native(path: Path, debug_id: str | None) -> tuple[SymScan, Builder, str]:
    """Open a native debug file; its STACK CFI / STACK WIN text comes from symbolic's CFI cache."""
    obj = _open_object(path, debug_id)
    scan = SymScan()
    try:
        scan_sym(obj.make_cficache().open_stream(), scan)
    except symbolic.SymbolicError:
        pass  # no unwind information: symbols without CFI are still symbols
    return scan, lambda target: (0, obj), breakpad_debug_id(obj.debug_id)


def _open_object(path: Path, debug_id: str | None) -> Object:
    """The object of the archive at path matching debug_id (the only one when None)."""
    try:
        archive = Archive.open(str(path))
        objects = list(archive.iter_objects())
    except symbolic.SymbolicError as exc:
        raise MalformedSymbols("unsupported_format", str(exc).splitlines()[0]) from exc
    for obj in objects:
        obj._crashd_archive = archive  # keep the archive (and its mapped file) as long as the object
    if not objects:
        raise MalformedSymbols("no_objects")
    if debug_id is not None:
        for obj in objects:
            if breakpad_debug_id(obj.debug_id) == debug_id.upper():
                return obj
    if len(objects) == 1:
        return objects[0]
    raise MalformedSymbols("no_matching_object", f"{len(objects)} objects, none is {debug_id}")


def _make_symcache(obj: Object) -> SymCache:
    try:
        return obj.make_symcache()
    except symbolic.SymbolicError as exc:
        raise MalformedSymbols("symcache_failed", " / ".join(str(exc).split())[:300]) from exc


def _source_stamp(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write path through a temporary file in the same folder, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_corrupt(target: Path, source: Path, exc: MalformedSymbols) -> None:
    body = {"reason": exc.reason, "detail": exc.detail, "source": _source_stamp(source)}
    target.mkdir(parents=True, exist_ok=True)
    _write_atomic(corrupt_path(target, source), lambda f: f.write(json.dumps(body).encode()))


def corrupt_path(target: Path, source: Path) -> Path:
    """Where the failure to convert source is remembered, in the module's cache folder."""
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return target / f"{CORRUPT_PREFIX}{digest}.json"


# -- the binary index -------------------------------------------------------------------------


def _write_index(path: Path, scan: SymScan, header: dict) -> dict[str, int]:
    """Sort, de-overlap and write the scan's records; returns the counts kept."""
    strings = scan.strings
    sections: dict[str, array] = {}
    sections.update(_exclusive("cfi", scan.cfi_start, scan.cfi_size, rules=scan.cfi_rules))
    order = sorted(range(len(scan.delta_addr)), key=scan.delta_addr.__getitem__)
    sections["delta_addr"] = array("Q", (scan.delta_addr[i] for i in order))
    sections["delta_rules"] = array("I", (scan.delta_rules[i] for i in order))
    sections.update(_exclusive("func", scan.func_start, scan.func_size, name=scan.func_name, param=scan.func_param))
    sections.update(_publics(scan))
    sections.update(_win_sections(scan, strings))
    blob = bytearray()
    offsets = array("Q", [0])
    for text in strings.strings:
        blob += text.encode("utf-8", "surrogatepass")
        offsets.append(len(blob))
    sections["str_off"], sections["str_blob"] = offsets, array("B", blob)
    _write_atomic(path, lambda f: _dump_sections(f, sections, header))
    return {"functions": len(sections["func_start"]), "publics": len(sections["public_addr"]),
            "cfi_rows": len(sections["cfi_start"]) + len(sections["delta_addr"]),
            "win_records": len(sections["win_fields"]) // _WIN_FIELDS}


def _exclusive(prefix: str, starts: array, sizes: array, **values: array) -> dict[str, array]:
    """Breakpad's RangeMap: ranges sorted by start; one overlapping a kept range is dropped,
    as are empty ones. (Breakpad keeps the first *in file order*; files are sorted, so this
    differs only for unsorted files with overlaps.)"""
    order = sorted(range(len(starts)), key=starts.__getitem__)
    kept: list[int] = []
    end = 0
    for i in order:
        if sizes[i] and (not kept or starts[i] >= end):
            kept.append(i)
            end = starts[i] + sizes[i]
    out = {f"{prefix}_start": array("Q", (starts[i] for i in kept)),
           f"{prefix}_size": array("Q", (sizes[i] for i in kept))}
    for name, column in values.items():
        out[f"{prefix}_{name}"] = array(column.typecode, (column[i] for i in kept))
    return out


def _publics(scan: SymScan) -> dict[str, array]:
    """PUBLIC symbols by address; address 0 is skipped and the first of duplicates kept."""
    order = sorted(range(len(scan.public_addr)), key=scan.public_addr.__getitem__)
    kept = [i for n, i in enumerate(order)
            if scan.public_addr[i] and (n == 0 or scan.public_addr[order[n - 1]] != scan.public_addr[i])]
    return {"public_addr": array("Q", (scan.public_addr[i] for i in kept)),
            "public_param": array("I", (scan.public_param[i] for i in kept)),
            "public_name": array("I", (scan.public_name[i] for i in kept))}


def _win_sections(scan: SymScan, strings: StringTable) -> dict[str, array]:
    """STACK WIN records, plus one nested-range map per kind (frame data, FPO)."""
    fields = array("I")  # every STACK WIN field is 32-bit; the program string id is stored + 1
    for info in scan.win:
        program = strings.add(info.program_string) + 1 if info.program_string is not None else 0
        fields.extend((info.type, info.rva, info.code_size, info.prolog_size, info.epilog_size, info.parameter_size,
                       info.saved_register_size, info.local_size, info.max_stack_size,
                       int(info.allocates_base_pointer), program))
    out: dict[str, array] = {"win_fields": fields}
    for kind in (STACK_WIN_FRAME_DATA, STACK_WIN_FPO):
        records = [(w.rva, w.rva + w.code_size, i) for i, w in enumerate(scan.win) if w.type == kind and w.code_size]
        starts, ends, parents, ids = _contained_ranges(records)
        out.update({f"win{kind}_start": starts, f"win{kind}_end": ends, f"win{kind}_parent": parents,
                    f"win{kind}_rec": ids})
    return out


class _Node:
    __slots__ = ("start", "end", "rec", "children", "starts")

    def __init__(self, start: int, end: int, rec: int) -> None:
        self.start, self.end, self.rec = start, end, rec
        self.children: list[_Node] = []
        self.starts: list[int] = []  # children's starts, for bisect


def _contained_ranges(records: list[tuple[int, int, int]]) -> tuple[array, array, array, array]:
    """Breakpad's ContainedRangeMap, flattened for bisect.

    Ranges may nest (MSVC emits a record per prolog step); one equal to, or partly
    overlapping, a range stored before it is refused: test_app.sym has ``STACK WIN 4 10054
    15f``, then ``1005b a1`` (nested), then ``1005c b2`` (ends past 1005b+a1: dropped, so
    0x10100 gets the 10054 record, as in Breakpad). Returned in pre-order (= by start,
    parents first) with each range's parent index (-1 at the top), so the innermost range
    holding an address is found from the last start <= address by following parents.
    """
    root = _Node(0, 1 << 64, -1)
    for start, end, rec in records:
        _insert(root, _Node(start, end, rec))
    starts, ends, parents, ids = array("Q"), array("Q"), array("q"), array("I")
    stack: list[tuple[_Node, int]] = [(child, -1) for child in reversed(root.children)]
    while stack:
        node, parent = stack.pop()
        index = len(starts)
        starts.append(node.start)
        ends.append(node.end)
        parents.append(parent)
        ids.append(node.rec)
        stack.extend((child, index) for child in reversed(node.children))
    return starts, ends, parents, ids


def _insert(parent: _Node, node: _Node) -> bool:
    """Store node under parent (or deeper); False when ContainedRangeMap would refuse it."""
    while True:
        children = parent.children
        lo = bisect_right(parent.starts, node.start) - 1
        if lo < 0 or children[lo].end <= node.start:
            lo += 1
        hi = lo
        while hi < len(children) and children[hi].start < node.end:
            hi += 1
        run = children[lo:hi]
        if len(run) == 1 and run[0].start <= node.start and node.end <= run[0].end:
            if (run[0].start, run[0].end) == (node.start, node.end):
                return False
            parent = run[0]  # nested inside an existing range: go down
            continue
        if any(c.start < node.start or c.end > node.end for c in run):
            return False  # partial overlap
        node.children, node.starts = run, [c.start for c in run]
        children[lo:hi] = [node]
        parent.starts[lo:hi] = [node.start]
        return True


def _dump_sections(f: IO[bytes], sections: dict[str, array], header: dict) -> None:
    offset = 0
    layout: dict[str, list] = {}
    for name, column in sections.items():
        layout[name] = [offset, column.typecode, len(column)]
        offset += -(-len(column) * column.itemsize // 8) * 8  # keep every section 8-aligned
    header = {**header, "byteorder": sys.byteorder, "sections": layout}
    text = json.dumps(header).encode()
    text += b" " * (-(len(text) + _HEADER.size) % 8)
    f.write(_HEADER.pack(INDEX_MAGIC, INDEX_VERSION, len(text)) + text)
    for column in sections.values():
        data = column.tobytes()
        f.write(data + b"\0" * (-len(data) % 8))


def read_index(path: Path) -> tuple[dict, dict[str, memoryview]]:
    """The header and arrays of an index file; raises ValueError for a foreign or old one."""
    data = path.read_bytes()
    magic, version, length = _HEADER.unpack_from(data)
    if magic != INDEX_MAGIC or version != INDEX_VERSION:
        raise ValueError(f"index format {magic!r} v{version}, want v{INDEX_VERSION}")
    header = json.loads(data[_HEADER.size:_HEADER.size + length])
    if header.get("byteorder") != sys.byteorder:
        raise ValueError("index written on a machine of another byte order")
    base = _HEADER.size + length
    view = memoryview(data)
    arrays = {}
    for name, (offset, typecode, count) in header["sections"].items():
        size = array(typecode).itemsize
        arrays[name] = view[base + offset:base + offset + count * size].cast(typecode)
    return header, arrays


# -- a loaded module --------------------------------------------------------------------------


class ModuleSymbols:
    """A module's loaded caches: the lookups the SymbolProvider answers."""

    def __init__(self, symcache: SymCache, header: dict, arrays: dict[str, memoryview], nbytes: int) -> None:
        self.symcache = symcache
        self.header = header
        self.nbytes = nbytes  # index bytes held in memory (the SymCache is memory-mapped)
        self._a = arrays

    def _string(self, index: int) -> str:
        off = self._a["str_off"]
        return str(self._a["str_blob"][off[index]:off[index + 1]], "utf-8", "replace")

    def cfi_rules(self, offset: int) -> dict[str, str] | None:
        """The STACK CFI INIT rules covering offset, updated by every delta <= offset."""
        a = self._a
        i = bisect_right(a["cfi_start"], offset) - 1
        if i < 0 or offset - a["cfi_start"][i] >= a["cfi_size"][i]:
            return None
        rules: dict[str, str] = {}
        parse_cfi_rules(self._string(a["cfi_rules"][i]), rules)
        deltas = a["delta_addr"]
        j = bisect_left(deltas, a["cfi_start"][i])
        while j < len(deltas) and deltas[j] <= offset:
            parse_cfi_rules(self._string(a["delta_rules"][j]), rules)
            j += 1
        return rules

    def win_frame_info(self, offset: int) -> WinFrameInfo | None:
        """The innermost STACK WIN frame-data record covering offset, else the FPO one."""
        for kind in (STACK_WIN_FRAME_DATA, STACK_WIN_FPO):
            a = self._a
            starts, ends, parents = a[f"win{kind}_start"], a[f"win{kind}_end"], a[f"win{kind}_parent"]
            i = bisect_right(starts, offset) - 1
            while i >= 0 and offset >= ends[i]:
                i = parents[i]
            if i >= 0:
                return self._win_record(a[f"win{kind}_rec"][i])
        return None

    def _win_record(self, rec: int) -> WinFrameInfo:
        f = self._a["win_fields"][rec * _WIN_FIELDS:(rec + 1) * _WIN_FIELDS].tolist()
        return WinFrameInfo(type=f[0], rva=f[1], code_size=f[2], prolog_size=f[3], epilog_size=f[4],
                            parameter_size=f[5], saved_register_size=f[6], local_size=f[7], max_stack_size=f[8],
                            allocates_base_pointer=bool(f[9]), program_string=self._string(f[10] - 1) if f[10] else None)

    def function_at(self, offset: int) -> FunctionInfo | None:
        """Breakpad's rule: the FUNC covering offset, else the nearest PUBLIC below it when
        that PUBLIC lies above the nearest FUNC below. Native files: the SymCache's function."""
        if not self.header["has_functions"]:
            return self._symcache_function(offset)
        a = self._a
        i = bisect_right(a["func_start"], offset) - 1
        func_start = a["func_start"][i] if i >= 0 else None
        if func_start is not None and offset - func_start < a["func_size"][i]:
            return FunctionInfo(self._string(a["func_name"][i]), func_start, a["func_size"][i], a["func_param"][i])
        j = bisect_right(a["public_addr"], offset) - 1
        if j >= 0 and (func_start is None or a["public_addr"][j] > func_start):
            return FunctionInfo(self._string(a["public_name"][j]), a["public_addr"][j], None, a["public_param"][j])
        return None

    def _symcache_function(self, offset: int) -> FunctionInfo | None:
        found = self.symcache.lookup(offset)
        if not found or found[-1].sym_addr == NO_ADDRESS:
            return None
        return FunctionInfo(found[-1].symbol, found[-1].sym_addr, None)

    def symbolize(self, offset: int) -> list[SourceLocation]:
        """Inlined calls innermost first, then the function (function_offset set).

        For .sym files the function is Breakpad's (function_at), as Breakpad and
        rust-minidump name it; the SymCache adds file, line and inlines when it agrees on the
        function's start. They differ where a PUBLIC lies inside a FUNC (test_app.sym:
        ``PUBLIC 142e8 _NLG_Dispatch2`` inside ``FUNC 142d1 1f _NLG_Notify``: Breakpad says
        _NLG_Notify) and for ``PUBLIC 0 0 _mh_execute_header``, which Breakpad ignores.
        """
        found = self.symcache.lookup(offset)
        if self.header["has_functions"]:
            info = self.function_at(offset)
            if info is None:
                return []
            if not found or found[-1].sym_addr != info.address:
                return [SourceLocation(info.name, offset - info.address)]
        return [SourceLocation(function=loc.symbol or None,
                               function_offset=offset - loc.sym_addr if loc.sym_addr <= offset else None,
                               file=loc.full_path or None, line=loc.line or None)
                for loc in found]


def open_caches(source: Path, cache_root: Path, debug_file: str, debug_id: str) -> ModuleSymbols:
    """The module's caches, built from source first when absent, stale or of an old format.

    Raises MalformedSymbols when source cannot be converted (remembered in corrupt-*.json
    until source changes); OSError when source cannot be read.
    """
    target = module_cache_dir(cache_root, debug_file, debug_id)
    stamp = _source_stamp(source)
    corrupt = _read_json(corrupt_path(target, source))
    if corrupt is not None and corrupt.get("source") == stamp:
        raise MalformedSymbols(corrupt.get("reason", "corrupt"), corrupt.get("detail", ""))
    loaded = _load(target, stamp)
    if loaded is None:
        build_caches(source, cache_root, debug_file=debug_file, debug_id=debug_id)
        loaded = _load(target, stamp)
        if loaded is None:
            raise MalformedSymbols("cache_unreadable", str(target))
    return loaded


def _load(target: Path, stamp: dict) -> ModuleSymbols | None:
    """The caches in target when they are readable, current and built from stamp's file."""
    try:
        header, arrays = read_index(target / INDEX_NAME)
        # the index is written last: it must name this source and the SymCache written with it
        if header.get("source") != stamp or header.get("symcache_bytes") != (target / SYMCACHE_NAME).stat().st_size:
            return None
        symcache = SymCache.open(str(target / SYMCACHE_NAME))
        if not symcache.is_latest_version:
            return None
    except (OSError, ValueError, KeyError, struct.error, symbolic.SymbolicError):
        return None
    return ModuleSymbols(symcache, header, arrays, len(arrays["str_blob"].obj))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def info_dict(info: CacheInfo) -> dict[str, object]:
    """CacheInfo as plain JSON-able data."""
    return asdict(info)
