"""A module's cache folder, ``<cache_root>/<debug_file>/<DEBUG_ID>/``: where it is, the names
of the files in it, how they are written (atomically), and the corrupt-*.json markers that
remember a source file that could not be converted. ``MalformedSymbols`` is the error for
a debug file that exists but cannot be used."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable

from symbolicator.symbols.sources import breakpad_layout

SYMCACHE_NAME = "symbols.symcache"
INDEX_NAME = "symbols.index"
CORRUPT_PREFIX = "corrupt-"


class MalformedSymbols(Exception):
    """The debug file exists but cannot be used; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def module_cache_dir(cache_root: Path, debug_file: str, debug_id: str) -> Path:
    """``<cache_root>/<debug_file>/<DEBUG_ID>``; raises MalformedSymbols for unusable ids."""
    key = breakpad_layout(debug_file, debug_id)
    if key is None:
        raise MalformedSymbols("bad_module_id", f"{debug_file!r} {debug_id!r}")
    return cache_root / key[0] / key[1]


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
