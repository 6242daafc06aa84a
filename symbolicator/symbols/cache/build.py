"""``build_caches``: convert a Breakpad .sym or a native debug file (read with symbolic)
into a module's SymCache and binary index, once."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from symbolic.debuginfo import Archive, Object
from symbolic.exceptions import SymbolicError
from symbolic.symcache import SymCache

from symbolicator.symbols.cache.folder import (
    INDEX_NAME,
    SYMCACHE_NAME,
    MalformedSymbols,
    _source_stamp,
    _write_atomic,
    _write_corrupt,
    corrupt_path,
    module_cache_dir,
)
from symbolicator.symbols.cache.index import _write_index
from symbolicator.symbols.symfile import SymScan, normalize_inlines, scan_sym


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
    header: dict[str, Any] = {  # the index's JSON header
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
    except SymbolicError:
        pass  # no unwind information: symbols without CFI are still symbols
    return scan, lambda target: (0, obj), breakpad_debug_id(obj.debug_id)


def _open_object(path: Path, debug_id: str | None) -> Object:
    """The object of the archive at path matching debug_id (the only one when None)."""
    try:
        archive = Archive.open(str(path))
        objects = list(archive.iter_objects())
    except SymbolicError as exc:
        raise MalformedSymbols("unsupported_format", str(exc).splitlines()[0]) from exc
    for obj in objects:
        obj._crashd_archive = archive  # type: ignore[attr-defined]  # ours, to keep the archive (and its mapped file) as long as the object
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
    except SymbolicError as exc:
        raise MalformedSymbols("symcache_failed", " / ".join(str(exc).split())[:300]) from exc


def info_dict(info: CacheInfo) -> dict[str, object]:
    """CacheInfo as plain JSON-able data."""
    return asdict(info)
