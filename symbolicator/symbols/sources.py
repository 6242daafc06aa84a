"""Where debug files come from: a local folder or an upstream symbol server.

Both use the Breakpad symbol-server layout ``<root>/<debug_file>/<DEBUG_ID>/<file>``: a module
``foo.pdb`` has ``foo.sym`` under ``foo.pdb/<DEBUG_ID>/``; ``libc.so.6`` has
``libc.so.6.sym``. A source answers found (with a local path), not found, could not fetch
(``unavailable``: try again later) or malformed, and never raises for these (getsentry/
symbolicator and Mozilla Eliot keep the three failures apart).
"""

from __future__ import annotations

import hashlib
import json
import logging
import ntpath
import os
import posixpath
import re
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

_DEBUG_ID = re.compile(r"[0-9A-F]{1,64}")
MISS_NAME = ".miss.json"  # a remembered 404 (or malformed answer) of an HTTP source
PROJECTS_DIR = ".projects"  # each project's own symbol store, under the shared one's root
_SKIPPED_SUFFIXES = (".tmp", ".part", ".json")


class FetchStatus(str, Enum):
    found = "found"
    not_found = "not_found"  # no such file: cacheable
    unavailable = "unavailable"  # could not ask (timeout, 5xx, connection refused): retry later
    malformed = "malformed"  # an answer that is not a debug file


@dataclass(frozen=True)
class FetchResult:
    """A source's answer; path is a local file when found."""

    status: FetchStatus
    path: Path | None = None
    reason: str = ""  # a short code: "http_503", "timeout", "cached_miss", ...


def breakpad_layout(debug_file: str | None, debug_id: str | None) -> tuple[str, str] | None:
    """(debug file base name, upper-case debug id) naming a module's folder; None when either
    is missing or could escape the folder.

    Windows modules may carry a full path (``c:\\build\\foo.pdb``): only its base name counts,
    as in Breakpad's SimpleSymbolSupplier. A name starting with a dot is refused too: the
    store's own entries are dot-names (``.staging``, ``.generation``, PROJECTS_DIR), and an
    upload naming its module ``.projects`` must not write into another project's store.
    """
    if not debug_file or not debug_id:
        return None
    name = ntpath.basename(debug_file) if "\\" in debug_file else posixpath.basename(debug_file)
    ident = debug_id.upper()
    if name.startswith(".") or name == "" or "\0" in name or not _DEBUG_ID.fullmatch(ident):
        return None
    return name, ident


def store_root(root: Path, project_id: int | None) -> Path:
    """Where one symbol store lives under root (the symbols folder, or the cache folder for its
    caches): a project's own at ``<root>/.projects/<project_id>``, the shared one (None) at root."""
    return Path(root) if project_id is None else Path(root) / PROJECTS_DIR / str(project_id)


def sym_file_name(debug_file: str) -> str:
    """The Breakpad .sym name for a debug file: ``foo.pdb`` -> ``foo.sym``, ``libc.so.6`` ->
    ``libc.so.6.sym``."""
    stem = debug_file[:-4] if debug_file.lower().endswith(".pdb") else debug_file
    return stem + ".sym"


def generation_file(symbols_dir: Path) -> Path:
    """The file whose change tells every process that the symbol store changed."""
    return Path(symbols_dir) / ".generation"


def bump_generation(symbols_dir: Path) -> None:
    """Mark the symbol store changed (call after storing uploaded symbols)."""
    path = generation_file(symbols_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)


class SymbolSource:
    """A place to look a module's debug file up."""

    name: str = "source"

    def fetch(self, debug_file: str, debug_id: str) -> FetchResult:
        """Find the module's debug file; never raises for a missing, unreachable or bad file."""
        raise NotImplementedError


class LocalDirSource(SymbolSource):
    """A folder in the Breakpad layout (the corpus ``symbols/`` folders, uploaded symbols).

    The debug id folder matches case-insensitively. Inside it, ``<name>.sym`` is preferred,
    then any other ``.sym``, then any other file (a native debug file: ELF, PDB, Mach-O).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"dir:{self.root}"

    def fetch(self, debug_file: str, debug_id: str) -> FetchResult:
        key = breakpad_layout(debug_file, debug_id)
        if key is None:
            return FetchResult(FetchStatus.not_found, reason="no_debug_id")
        folder = _child(self.root, key[0])
        folder = _child(folder, key[1]) if folder else None
        found = _pick_file(folder, key[0]) if folder else None
        if found is None:
            return FetchResult(FetchStatus.not_found, reason="no_file")
        return FetchResult(FetchStatus.found, found)


def _child(folder: Path, name: str) -> Path | None:
    """folder/name, else the entry whose name matches ignoring case (Windows symbol stores)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower() == name.lower() and entry.is_dir():
                    return Path(entry.path)
    except OSError:
        pass
    return None


def _pick_file(folder: Path, debug_file: str) -> Path | None:
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_SKIPPED_SUFFIXES))
    except OSError:
        return None
    preferred = sym_file_name(debug_file).lower()
    ranked = sorted(files, key=lambda p: (p.name.lower() != preferred, not p.name.lower().endswith(".sym")))
    return ranked[0] if ranked else None


class HttpSource(SymbolSource):
    """An upstream Breakpad symbol server: ``<url>/<debug_file>/<DEBUG_ID>/<name>.sym``.

    A miss is fetched once and kept under ``download_dir/<url hash>/`` in the same layout.
    A 404 (or 410) is remembered for miss_ttl_seconds; so is an answer that is not a symbol
    file. Timeouts, connection errors and other statuses are ``unavailable`` and never kept:
    the next lookup asks again.
    """

    def __init__(self, url: str, download_dir: Path, *, miss_ttl_seconds: float = 3600.0,
                 timeout_seconds: float = 10.0, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.name = f"http:{self.url}"
        self.miss_ttl_seconds = miss_ttl_seconds
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.local = LocalDirSource(Path(download_dir) / digest)
        self.client = client or httpx.Client(timeout=timeout_seconds, follow_redirects=True)

    def fetch(self, debug_file: str, debug_id: str) -> FetchResult:
        key = breakpad_layout(debug_file, debug_id)
        if key is None:
            return FetchResult(FetchStatus.not_found, reason="no_debug_id")
        cached = self.local.fetch(*key)
        if cached.status is FetchStatus.found:
            return cached
        folder = self.local.root / key[0] / key[1]
        miss = _read_miss(folder / MISS_NAME, self.miss_ttl_seconds)
        if miss is not None:
            return miss
        return self._download(key[0], key[1], folder)

    def _download(self, debug_file: str, debug_id: str, folder: Path) -> FetchResult:
        name = sym_file_name(debug_file)
        url = f"{self.url}/{quote(debug_file, safe='')}/{debug_id}/{quote(name, safe='')}"
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                result = self._stream(url, out)
            if result.status is FetchStatus.found:
                os.replace(tmp, folder / name)
                return FetchResult(FetchStatus.found, folder / name)
            if result.status in (FetchStatus.not_found, FetchStatus.malformed):
                _write_miss(folder / MISS_NAME, result)
            return result
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _stream(self, url: str, out: IO[bytes]) -> FetchResult:
        """GET url into out; the status tells what became of it."""
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code in (404, 410):
                    return FetchResult(FetchStatus.not_found, reason=f"http_{response.status_code}")
                if response.status_code != 200:
                    log.warning("symbol server %s answered %d for %s", self.url, response.status_code, url)
                    return FetchResult(FetchStatus.unavailable, reason=f"http_{response.status_code}")
                first = True
                for chunk in response.iter_bytes():
                    if first and chunk:
                        if not chunk.startswith(b"MODULE "[:len(chunk)]):
                            return FetchResult(FetchStatus.malformed, reason="not_a_sym_file")
                        first = False
                    out.write(chunk)
                if first:
                    return FetchResult(FetchStatus.malformed, reason="empty")
        except httpx.TimeoutException:
            return FetchResult(FetchStatus.unavailable, reason="timeout")
        except httpx.HTTPError as exc:
            log.warning("symbol server %s: %s", self.url, exc)
            return FetchResult(FetchStatus.unavailable, reason=type(exc).__name__)
        return FetchResult(FetchStatus.found)

    def close(self) -> None:
        self.client.close()


def _read_miss(path: Path, ttl: float) -> FetchResult | None:
    """A remembered miss younger than ttl seconds."""
    try:
        if time.time() - path.stat().st_mtime >= ttl:
            return None
        body = json.loads(path.read_text())
        return FetchResult(FetchStatus(body["status"]), reason=f"cached_{body['reason']}")
    except (OSError, ValueError, KeyError):
        return None


def _write_miss(path: Path, result: FetchResult) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".miss-", suffix=".part")
    with os.fdopen(fd, "w") as f:
        json.dump({"status": result.status.value, "reason": result.reason}, f)
    os.replace(tmp, path)
