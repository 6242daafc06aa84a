"""A module's loaded caches: ``open_caches`` (building them first when absent or stale) and
``ModuleSymbols``, whose lookups the SymbolProvider answers."""

from __future__ import annotations

import json
import struct
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import cast

from symbolic.exceptions import SymbolicError
from symbolic.symcache import SymCache

from schemas.stack import SourceLocation
from symbolicator.symbols.cache.build import build_caches
from symbolicator.symbols.cache.folder import (
    INDEX_NAME,
    SYMCACHE_NAME,
    MalformedSymbols,
    _source_stamp,
    corrupt_path,
    module_cache_dir,
)
from symbolicator.symbols.cache.index import _WIN_FIELDS, read_index
from symbolicator.symbols.symfile import STACK_WIN_FPO, STACK_WIN_FRAME_DATA, parse_cfi_rules
from symbolicator.symbols.types import FunctionInfo, WinFrameInfo

NO_ADDRESS = 0xFFFFFFFF  # symbolic's "unknown" sym_addr (inlined functions)


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
    except (OSError, ValueError, KeyError, struct.error, SymbolicError):
        return None
    # every array is a view of the one bytes object read_index read (memoryview.obj is typed Buffer)
    return ModuleSymbols(symcache, header, arrays, len(cast(bytes, arrays["str_blob"].obj)))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
