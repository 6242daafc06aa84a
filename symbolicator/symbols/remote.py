"""Uploaded symbol files in the object store (``CRASHD_BLOB_URL=s3://...``), and the bounded
local folder each worker keeps copies and caches in (``CRASHD_CACHE_DIR``).

With an object store, no two crashd processes share a disk: the web process that takes a
symbol upload stores and converts it in its own ``symbols/`` folder (store.py, as with a
local store), then publishes the file to the blob store under ``symbols/<stored_as>`` (the
same Breakpad layout, a project's under ``symbols/.projects/<id>/``, with the debug file's
folder in lower case: blob_key). A worker that needs a
module asks BlobSymbolSource, which downloads the file into ``<cache dir>/symbols/`` and
hands the provider its local path; the provider builds SymCache and index beside it in
``<cache dir>/symcache/``. LocalCache keeps that folder under ``CRASHD_CACHE_MAX_BYTES``,
evicting the least recently used modules (a module's folder mtime is touched on each use),
downloads from symbol servers (``CRASHD_SYMBOL_URLS``, HttpCacheSource) included.

The store's generation (sources.bump_generation's file, polled by workers) is a blob too,
``symbols/.generation``, rewritten with a new token on each change.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import zlib
from pathlib import Path

from schemas.settings import Settings
from storage.blobs import BlobNotFound, BlobStore, BlobStoreError
from symbolicator.symbols.sources import (
    PROJECTS_DIR,
    FetchResult,
    FetchStatus,
    HttpSource,
    SymbolSource,
    breakpad_layout,
    store_root,
    sym_file_name,
)

log = logging.getLogger(__name__)

PREFIX = "symbols/"
GENERATION_KEY = PREFIX + ".generation"
_SKIPPED_SUFFIXES = (".tmp", ".part", ".json")
HTTP_DIR = "_http"  # under LocalCache.caches: downloads from symbol servers, one folder per URL


def blob_key(stored_as: str) -> str:
    """The blob key of a file stored at stored_as (relative to the symbols folder:
    ``[.projects/<id>/]<debug_file>/<DEBUG_ID>/<file>``), its debug file folder in lower case.

    The local store finds a module whatever the case of its name (LocalDirSource: minidumps
    of one game name ``Game.pdb`` and ``game.pdb``, Windows being case-blind); S3 keys are
    case-sensitive, so the folder is folded once, on the way in, and a lookup folds its name
    the same way (BlobSymbolSource) rather than list every folder of the store. DEBUG_IDs are
    upper case everywhere already; the file name keeps its case (ranked ignoring case: _pick)."""
    parts = stored_as.split("/")
    parts[-3] = parts[-3].lower()
    return PREFIX + "/".join(parts)


def holds(blobs: BlobStore, stored_as: str, *, size: int, sha256: str) -> bool:
    """Whether the object store already has this content at stored_as: the object's size and
    the sha256 recorded when it was put (an object put without one is never the same).
    Raises BlobStoreError."""
    try:
        info = blobs.info(blob_key(stored_as))
    except BlobNotFound:
        return False
    return info.size == size and info.sha256 == sha256


def publish(blobs: BlobStore, symbols_dir: Path, stored_as: str, *, sha256: str) -> None:
    """Copy the stored file (whose content has digest sha256) to the object store, the digest
    kept with it for holds(). Raises BlobStoreError, OSError."""
    with open(symbols_dir / stored_as, "rb") as source:
        blobs.put_file(blob_key(stored_as), source, sha256=sha256)


def is_stored(settings: Settings, blobs: BlobStore, stored_as: str) -> bool:
    """Whether the file recorded at stored_as is still there: in the object store when blob_url
    is s3 (another web process may have taken the upload), else in the symbols folder."""
    if settings.blobs_on_s3:
        return blobs.exists(blob_key(stored_as))
    return (settings.symbols_dir / stored_as).is_file()


def bump_shared_generation(blobs: BlobStore) -> None:
    """Tell workers on every machine that the symbol store changed. Raises BlobStoreError."""
    blobs.put_bytes(GENERATION_KEY, secrets.token_hex(8).encode())


def shared_generation(blobs: BlobStore) -> int:
    """The current generation token as a number (0: never bumped, or the store is down)."""
    try:
        return zlib.crc32(blobs.read_bytes(GENERATION_KEY)) or 1
    except BlobStoreError:
        return 0


class LocalCache:
    """The worker's local folder: downloaded files under ``files``, caches under ``caches``,
    at most max_bytes in all; evict() deletes least recently used modules (by the mtime of
    their folder under ``files``, touched on each use) and their caches. Downloads from symbol
    servers (``caches/_http/<url hash>/<debug_file>/<DEBUG_ID>``, HttpCacheSource) are modules
    too: counted, touched on use and evicted with their caches like the others.

    A web process's own ``symbols/`` and ``symcache/`` (where uploads are converted before
    they are published) are held the same way: ``LocalCache.of_web(settings)``."""

    def __init__(self, root: Path, max_bytes: int, *, files: Path | None = None, caches: Path | None = None) -> None:
        self.root, self.max_bytes = Path(root), max_bytes
        self.files = Path(files) if files is not None else self.root / "symbols"
        self.caches = Path(caches) if caches is not None else self.root / "symcache"
        self._lock = threading.Lock()

    @classmethod
    def of_web(cls, settings: Settings) -> "LocalCache":
        """A web process's symbols folder and caches, once every file is in the object store."""
        return cls(settings.data_dir, settings.cache_max_bytes, files=settings.symbols_dir,
                   caches=settings.symbol_cache_dir)

    def evict(self, keep: Path | None = None) -> int:
        """Delete modules, oldest use first, until the folder is under max_bytes; never keep
        (the module in use). Returns the bytes freed."""
        with self._lock:
            total = _tree_bytes(self.files) + _tree_bytes(self.caches)
            freed = 0
            for _, folder in sorted(self._modules()):
                if total - freed <= self.max_bytes:
                    break
                if keep is not None and folder == keep:
                    continue
                cached = self._caches_of(folder)
                freed += _tree_bytes(folder) + _tree_bytes(cached)
                shutil.rmtree(folder, ignore_errors=True)
                shutil.rmtree(cached, ignore_errors=True)
            if freed:
                log.info("symbol cache: evicted %d bytes (cap %d)", freed, self.max_bytes)
            return freed

    def _caches_of(self, folder: Path) -> Path:
        """The cache folder of a module folder: the same path under ``caches``; a symbol server
        download's caches are the shared store's (``caches/<debug_file>/<DEBUG_ID>``)."""
        if folder.is_relative_to(self.caches / HTTP_DIR):
            return self.caches / folder.parent.name / folder.name
        return self.caches / folder.relative_to(self.files)

    def _modules(self) -> list[tuple[float, Path]]:
        """(last use, folder) of every ``[.projects/<id>/]<debug_file>/<DEBUG_ID>`` folder, and
        of every symbol server's ``_http/<url hash>/<debug_file>/<DEBUG_ID>``."""
        roots = [self.files] + sorted((self.files / PROJECTS_DIR).glob("*")) + sorted((self.caches / HTTP_DIR).glob("*"))
        found = []
        for root in roots:
            for folder in root.glob("*/*"):
                if folder.is_dir() and not folder.parent.name.startswith("."):
                    try:
                        found.append((folder.stat().st_mtime, folder))
                    except FileNotFoundError:
                        continue
        return found


class BlobSymbolSource(SymbolSource):
    """Uploaded symbols in the object store under ``prefix`` (``symbols/`` or a project's
    ``symbols/.projects/<id>/``), downloaded on first use into local_root (LocalCache.files,
    same layout). A local copy is used while the object's version (its ETag) is unchanged.
    Like LocalDirSource, ``<name>.sym`` is preferred, then any .sym, then a native file, and
    the debug file name matches whatever its case (its folder is lower case: blob_key)."""

    def __init__(self, blobs: BlobStore, prefix: str, local_root: Path, cache: LocalCache | None = None) -> None:
        self.blobs, self.prefix, self.local_root, self.cache = blobs, prefix, Path(local_root), cache
        self.name = f"blobs:{prefix}"

    def fetch(self, debug_file: str, debug_id: str) -> FetchResult:
        key = breakpad_layout(debug_file, debug_id)
        if key is None:
            return FetchResult(FetchStatus.not_found, reason="no_debug_id")
        picked = None
        # The lower-case folder (blob_key); then, for a name with capitals, the folder of the
        # same case, where objects were put before names were folded.
        for name in dict.fromkeys((key[0].lower(), key[0])):
            folder = f"{self.prefix}{name}/{key[1]}/"
            try:
                picked = _pick(list(self.blobs.iter_folder(folder)), folder, key[0])
            except BlobStoreError as exc:
                log.warning("symbols in the object store: cannot list %s: %s", folder, exc)
                return FetchResult(FetchStatus.unavailable, reason="object_store")
            if picked is not None:
                break
        if picked is None:
            return FetchResult(FetchStatus.not_found, reason="no_file")
        return self._local_copy(picked[0], picked[1], self.local_root / key[0] / key[1])

    def _local_copy(self, blob: str, version: str, folder: Path) -> FetchResult:
        local = folder / blob.rsplit("/", 1)[-1]
        stamp = folder / f".{local.name}.version"  # the object's version the local copy is of
        try:
            if not (local.is_file() and _read(stamp) == version):
                self._download(blob, local)
                stamp.write_text(version)
            os.utime(folder)  # the module's last use, for LocalCache's eviction
        except BlobNotFound:
            return FetchResult(FetchStatus.not_found, reason="no_file")
        except BlobStoreError as exc:
            log.warning("symbols in the object store: cannot read %s: %s", blob, exc)
            return FetchResult(FetchStatus.unavailable, reason="object_store")
        except OSError as exc:
            log.warning("symbol cache: cannot write %s: %s", local, exc)
            return FetchResult(FetchStatus.unavailable, reason=f"os_error_{exc.errno}")
        if self.cache is not None:
            self.cache.evict(keep=folder)
        return FetchResult(FetchStatus.found, local)

    def _download(self, blob: str, local: Path) -> None:
        """blob into local, atomically."""
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.blobs.iter_chunks(blob):
                    out.write(chunk)
            os.replace(tmp, local)
        finally:
            Path(tmp).unlink(missing_ok=True)


class HttpCacheSource(HttpSource):
    """A symbol server (``CRASHD_SYMBOL_URLS``) whose downloads are kept in LocalCache's
    ``caches/_http/``, under the same cap: a module's folder is touched each time it is found,
    and the cache is evicted down to its cap after, this module kept."""

    def __init__(self, url: str, cache: LocalCache, *, miss_ttl_seconds: float) -> None:
        super().__init__(url, cache.caches / HTTP_DIR, miss_ttl_seconds=miss_ttl_seconds)
        self.cache = cache

    def fetch(self, debug_file: str, debug_id: str) -> FetchResult:
        result = super().fetch(debug_file, debug_id)
        if result.status is FetchStatus.found and result.path is not None:
            folder = result.path.parent
            try:
                os.utime(folder)  # the module's last use
            except OSError:
                pass  # evicted by another thread meanwhile: it is fetched again next time
            self.cache.evict(keep=folder)
        return result


def project_source(blobs: BlobStore, project_id: int, cache: LocalCache) -> BlobSymbolSource:
    """The source of one project's own store in the object store."""
    return BlobSymbolSource(blobs, f"{PREFIX}{PROJECTS_DIR}/{project_id}/", store_root(cache.files, project_id), cache)


def _pick(listed: list[tuple[str, str]], folder: str, debug_file: str) -> tuple[str, str] | None:
    """The file LocalDirSource would pick among the objects directly in folder."""
    files = [(key, modified) for key, modified in listed
             if "/" not in (name := key[len(folder):]) and name and not name.startswith(".")
             and not name.endswith(_SKIPPED_SUFFIXES)]
    preferred = sym_file_name(debug_file).lower()

    def rank(item: tuple[str, str]) -> tuple[bool, bool, str]:
        name = item[0][len(folder):].lower()
        return name != preferred, not name.endswith(".sym"), name

    return min(files, key=rank) if files else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total
