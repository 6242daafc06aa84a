"""The binary index, ``symbols.index``: STACK CFI rows, STACK WIN records (frame data and
FPO) and, for .sym files, FUNC and PUBLIC records, as sorted arrays behind a JSON header;
written from a SymScan, read whole into memoryviews."""

from __future__ import annotations

import json
import struct
import sys
from array import array
from bisect import bisect_right
from pathlib import Path
from typing import IO

from symbolicator.symbols.cache.folder import _write_atomic
from symbolicator.symbols.symfile import STACK_WIN_FPO, STACK_WIN_FRAME_DATA, StringTable, SymScan

INDEX_MAGIC = b"CRASHDIX"
INDEX_VERSION = 1
_HEADER = struct.Struct("<8sII")  # magic, version, length of the JSON header
_WIN_FIELDS = 11  # type rva code_size prolog epilog params saved locals max_stack allocates_bp program+1


def _write_index(path: Path, scan: SymScan, header: dict) -> dict[str, int]:
    """Sort, de-overlap and write the scan's records; returns the counts kept."""
    strings = scan.strings
    sections: dict[str, array] = {}
    sections.update(_exclusive("cfi", scan.cfi_start, scan.cfi_size, rules=scan.cfi_rules))
    order = _order(scan.delta_addr)
    sections["delta_addr"] = _pick(scan.delta_addr, order)
    sections["delta_rules"] = _pick(scan.delta_rules, order)
    sections.update(_exclusive("func", scan.func_start, scan.func_size, name=scan.func_name, param=scan.func_param))
    sections.update(_publics(scan))
    sections.update(_win_sections(scan, strings))
    sections["str_off"], sections["str_blob"] = strings.offsets, strings.blob
    _write_atomic(path, lambda f: _dump_sections(f, sections, header))
    return {"functions": len(sections["func_start"]), "publics": len(sections["public_addr"]),
            "cfi_rows": len(sections["cfi_start"]) + len(sections["delta_addr"]),
            "win_records": len(sections["win_fields"]) // _WIN_FIELDS}


def _exclusive(prefix: str, starts: array, sizes: array, **values: array) -> dict[str, array]:
    """Breakpad's RangeMap: ranges sorted by start; one overlapping a kept range is dropped,
    as are empty ones. (Breakpad keeps the first *in file order*; files are sorted, so this
    differs only for unsorted files with overlaps.)"""
    kept = array("Q")
    end = 0
    for i in _order(starts):
        if sizes[i] and (not kept or starts[i] >= end):
            kept.append(i)
            end = starts[i] + sizes[i]
    columns = {"start": starts, "size": sizes, **values}
    return {f"{prefix}_{name}": _pick(column, kept) for name, column in columns.items()}


def _order(keys: array) -> range | array:
    """The indexes of keys in ascending order of key (stable). dump_syms writes its records
    sorted, so this is nearly always range(n), found in one pass with no list of n ints (a
    401 MiB .sym has millions of records: sorting them as Python ints took ~100 MB)."""
    if all(keys[i] <= keys[i + 1] for i in range(len(keys) - 1)):
        return range(len(keys))
    return array("Q", sorted(range(len(keys)), key=keys.__getitem__))


def _pick(column: array, order: range | array) -> array:
    """column's items at the indexes of order (column itself when order takes them all as they are)."""
    if order == range(len(column)):
        return column
    return array(column.typecode, (column[i] for i in order))


def _publics(scan: SymScan) -> dict[str, array]:
    """PUBLIC symbols by address; address 0 is skipped and the first of duplicates kept."""
    order = _order(scan.public_addr)
    kept = array("Q", (i for n, i in enumerate(order)
                       if scan.public_addr[i] and (n == 0 or scan.public_addr[order[n - 1]] != scan.public_addr[i])))
    return {"public_addr": _pick(scan.public_addr, kept), "public_param": _pick(scan.public_param, kept),
            "public_name": _pick(scan.public_name, kept)}


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
        f.write(memoryview(column))  # no copy: the large sections are tens of MB
        f.write(b"\0" * (-len(column) * column.itemsize % 8))


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
