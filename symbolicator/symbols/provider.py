"""The SymbolProvider the worker uses: symbols from SymbolSources, converted once into
on-disk caches and kept loaded in memory.

The walker never reads symbol files itself; it asks a SymbolProvider (rust-minidump's
``SymbolProvider`` trait, in types.py). Addresses given to a provider are module offsets
(address - module.base_addr).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

from schemas.settings import Settings
from schemas.stack import Module, SourceLocation
from storage.blobs import BlobStore
from symbolicator.symbols import cache as _cache
from symbolicator.symbols import remote as _remote
from symbolicator.symbols import sources as _sources
from symbolicator.symbols.types import FunctionInfo, SymbolProvider, SymbolStatus, WinFrameInfo

log = logging.getLogger(__name__)


ModuleKey = tuple[str, str]  # (debug file base name, DEBUG_ID)
# (project id, debug file, DEBUG_ID): a module as one store knows it. A project id is its own
# store alone; None is the shared sources (the shared store, then the symbol servers).
ScopedKey = tuple[int | None, str, str]
BUILD_LOCKS = 64  # lock stripes: two threads never convert the same module at once
MAX_REMEMBERED_FAILURES = 100_000


class CachedSymbolProvider:
    """A SymbolProvider over SymbolSources, converting each debug file once into on-disk
    caches (cache.py) and keeping up to max_loaded modules loaded in memory (LRU).

    A module that is missing, corrupt or unavailable is remembered for recheck_seconds, so a
    stack walk asks its sources once per module, not once per frame. No lookup raises: a
    failure becomes the module's status.

    With projects_root (the symbol store's folder), ``for_project(id)`` is the provider a crash
    of that project uses: its project's own store (sources.store_root) first, then the shared
    sources. A module found in the shared sources is loaded once for every project.
    """

    def __init__(self, sources: Sequence[_sources.SymbolSource], cache_dir: Path, *, max_loaded: int = 64,
                 recheck_seconds: float = 60.0, generation_file: Path | None = None,
                 projects_root: Path | None = None,
                 project_sources: Callable[[int], _sources.SymbolSource] | None = None,
                 generation: Callable[[], int] | None = None) -> None:
        self.sources = list(sources)
        self.cache_dir = Path(cache_dir)
        self.projects_root = projects_root
        # A project's own store: a folder under projects_root, or (object store) what
        # project_sources(project_id) returns.
        self.project_sources = project_sources
        self.max_loaded = max_loaded
        self.recheck_seconds = recheck_seconds
        # Another process (the web server taking a symbol upload) touches generation_file;
        # remembered failures older than its change are forgotten, so a worker sees new
        # symbols at once instead of after recheck_seconds.
        self.generation_file = generation_file
        self.generation = generation  # instead of the file: a token read from the object store
        self._generation = (0, -1.0)  # (mtime_ns seen, when it was last read)
        self.generation_poll_seconds = 1.0
        self._loaded: OrderedDict[ScopedKey, _cache.ModuleSymbols] = OrderedDict()
        self._failed: dict[ScopedKey, tuple[SymbolStatus, float, str, int]] = {}
        self._lock = threading.Lock()  # guards the two maps
        self._build_locks = [threading.Lock() for _ in range(BUILD_LOCKS)]  # one module loads once

    @classmethod
    def from_settings(cls, settings: Settings, *, max_loaded: int = 64, recheck_seconds: float = 60.0,
                      blobs: BlobStore | None = None) -> CachedSymbolProvider:
        """Uploaded symbols (settings.symbols_dir, or the object store's when blob_url is s3
        and blobs given) first, then each of settings.symbol_urls."""
        if settings.blobs_on_s3 and blobs is not None:
            return cls.from_object_store(settings, blobs, max_loaded=max_loaded, recheck_seconds=recheck_seconds)
        downloads = settings.symbol_cache_dir / "_http"
        sources: list[_sources.SymbolSource] = [_sources.LocalDirSource(settings.symbols_dir)]
        sources += [_sources.HttpSource(url, downloads, miss_ttl_seconds=settings.symbol_miss_ttl_seconds)
                    for url in settings.symbol_urls]
        return cls(sources, settings.symbol_cache_dir, generation_file=_sources.generation_file(settings.symbols_dir),
                   projects_root=settings.symbols_dir, max_loaded=max_loaded, recheck_seconds=recheck_seconds)

    @classmethod
    def from_object_store(cls, settings: Settings, blobs: BlobStore, *, max_loaded: int = 64,
                          recheck_seconds: float = 60.0) -> CachedSymbolProvider:
        """Uploaded symbols from the object store (remote.py), copied and converted into the
        bounded local cache folder (CRASHD_CACHE_DIR), then each of settings.symbol_urls, whose
        downloads are kept in that folder under the same cap."""
        local = _remote.LocalCache(settings.local_cache_dir, settings.cache_max_bytes)
        sources: list[_sources.SymbolSource] = [_remote.BlobSymbolSource(blobs, _remote.PREFIX, local.files, local)]
        sources += [_remote.HttpCacheSource(url, local, miss_ttl_seconds=settings.symbol_miss_ttl_seconds)
                    for url in settings.symbol_urls]
        return cls(sources, local.caches, max_loaded=max_loaded, recheck_seconds=recheck_seconds,
                   project_sources=lambda project_id: _remote.project_source(blobs, project_id, local),
                   generation=lambda: _remote.shared_generation(blobs))

    def for_project(self, project_id: int | None) -> SymbolProvider:
        """The provider for a crash of project_id: its own store, then the shared sources
        (this provider itself when there are no project stores or no project). Called once
        per crash: the store's generation is read again before its first lookup, so a crash
        reprocessed for symbols uploaded a moment ago never meets a failure remembered before."""
        with self._lock:
            self._generation = (self._generation[0], float("-inf"))
        if project_id is None or (self.projects_root is None and self.project_sources is None):
            return self
        return ProjectSymbols(self, project_id)

    # -- the SymbolProvider protocol --

    def status(self, module: Module) -> SymbolStatus:
        return self._resolve(module)[0]

    def cfi_rules(self, module: Module, offset: int) -> dict[str, str] | None:
        symbols = self._resolve(module)[1]
        return symbols.cfi_rules(offset) if symbols else None

    def win_frame_info(self, module: Module, offset: int) -> WinFrameInfo | None:
        symbols = self._resolve(module)[1]
        return symbols.win_frame_info(offset) if symbols else None

    def function_at(self, module: Module, offset: int) -> FunctionInfo | None:
        symbols = self._resolve(module)[1]
        return symbols.function_at(offset) if symbols else None

    def symbolize(self, module: Module, offset: int) -> list[SourceLocation]:
        symbols = self._resolve(module)[1]
        return symbols.symbolize(offset) if symbols else []

    # -- beyond the protocol --

    def reason(self, module: Module, project_id: int | None = None) -> str:
        """Why the module is not loaded (a short code such as ``no_file``, ``http_503``,
        ``symcache_failed``); empty when it is. With project_id: the project store's reason
        when the shared sources have none."""
        key = _sources.breakpad_layout(module.debug_file, module.debug_id)
        if key is None:
            return "no_debug_id"
        failed = self._failed.get((None, *key)) or (self._failed.get((project_id, *key)) if project_id else None)
        return failed[2] if failed else ""

    def forget(self, debug_file: str, debug_id: str) -> None:
        """Drop what is known of a module, in every store (e.g. after new symbols were uploaded for it)."""
        key = _sources.breakpad_layout(debug_file, debug_id)
        with self._lock:
            for known in (self._loaded, self._failed):
                for scoped in [k for k in known if k[1:] == key]:
                    known.pop(scoped, None)

    def loaded_bytes(self) -> int:
        """Index bytes held in memory by the loaded modules (SymCaches are memory-mapped)."""
        with self._lock:
            return sum(m.nbytes for m in self._loaded.values())

    def close(self) -> None:
        for source in self.sources:
            close = getattr(source, "close", None)
            if close:
                close()

    # -- internals --

    def _resolve(self, module: Module, project_id: int | None = None) -> tuple[SymbolStatus, _cache.ModuleSymbols | None]:
        """The module's symbols: from project_id's own store when it has them, else from the
        shared sources. A project's bad or unreadable file is reported only when the shared
        sources do not have the module either."""
        key = _sources.breakpad_layout(module.debug_file, module.debug_id)
        if key is None:
            return SymbolStatus.missing, None
        if project_id is None:
            return self._resolve_key((None, *key))
        own = self._resolve_key((project_id, *key))
        if own[0] is SymbolStatus.loaded:
            return own
        shared = self._resolve_key((None, *key))
        return own if shared[0] is SymbolStatus.missing else shared

    def _resolve_key(self, key: ScopedKey) -> tuple[SymbolStatus, _cache.ModuleSymbols | None]:
        known = self._known(key)
        if known is not None:
            return known
        with self._module_lock(key):
            known = self._known(key)  # another thread may have just loaded it
            if known is not None:
                return known
            status, symbols, reason = self._load(key)
            with self._lock:
                if symbols is not None:
                    self._loaded[key] = symbols
                    while len(self._loaded) > self.max_loaded:
                        self._loaded.popitem(last=False)
                    self._failed.pop(key, None)
                else:
                    self._remember_failure(key, status, reason)
            return status, symbols

    def _known(self, key: ScopedKey) -> tuple[SymbolStatus, _cache.ModuleSymbols | None] | None:
        with self._lock:
            symbols = self._loaded.get(key)
            if symbols is not None:
                self._loaded.move_to_end(key)
                return SymbolStatus.loaded, symbols
            failed = self._failed.get(key)
            if failed is not None and failed[1] > time.monotonic() and failed[3] == self._current_generation():
                return failed[0], None
        return None

    def _current_generation(self) -> int:
        """The generation file's mtime (or the generation callable's token), read at most once
        a second; called with _lock held."""
        if self.generation_file is None and self.generation is None:
            return 0
        seen, read_at = self._generation
        now = time.monotonic()
        if now - read_at >= self.generation_poll_seconds:
            seen = self.generation() if self.generation is not None else _file_generation(self.generation_file)
            self._generation = (seen, now)
        return seen

    def _module_lock(self, key: ScopedKey) -> threading.Lock:
        return self._build_locks[hash(key) % BUILD_LOCKS]

    def _remember_failure(self, key: ScopedKey, status: SymbolStatus, reason: str) -> None:
        """Remember a failure for recheck_seconds; called with self._lock held."""
        now = time.monotonic()
        if len(self._failed) >= MAX_REMEMBERED_FAILURES:
            self._failed = {k: v for k, v in self._failed.items() if v[1] > now}
            if len(self._failed) >= MAX_REMEMBERED_FAILURES:
                self._failed.clear()
        self._failed[key] = (status, now + self.recheck_seconds, reason, self._current_generation())

    def _sources_of(self, project_id: int | None) -> tuple[list[_sources.SymbolSource], Path]:
        """The sources of one scope and the cache folder of the files they find."""
        if project_id is not None and self.project_sources is not None:
            return [self.project_sources(project_id)], _sources.store_root(self.cache_dir, project_id)
        if project_id is None or self.projects_root is None:
            return self.sources, self.cache_dir
        store = _sources.LocalDirSource(_sources.store_root(self.projects_root, project_id))
        return [store], _sources.store_root(self.cache_dir, project_id)

    def _load(self, scoped: ScopedKey) -> tuple[SymbolStatus, _cache.ModuleSymbols | None, str]:
        """Ask the scope's sources in order; the first file found that converts is loaded.
        When none does: unavailable if a source could not be asked (it may have it), else
        corrupt if a file was bad, else missing."""
        key: ModuleKey = scoped[1:]
        sources, cache_dir = self._sources_of(scoped[0])
        unavailable = malformed = ""
        for source in sources:
            try:
                result = source.fetch(*key)
            except Exception as exc:
                log.exception("symbol source %s failed for %s/%s", source.name, *key)
                result = _sources.FetchResult(_sources.FetchStatus.unavailable, reason=type(exc).__name__)
            if result.status is _sources.FetchStatus.found and result.path is not None:
                status, symbols, reason = self._open(key, result.path, cache_dir)
                if symbols is not None:
                    return status, symbols, reason
                result = _sources.FetchResult(_sources.FetchStatus(
                    "malformed" if status is SymbolStatus.corrupt else "unavailable"), reason=reason)
            if result.status is _sources.FetchStatus.unavailable:
                unavailable = unavailable or result.reason
            elif result.status is _sources.FetchStatus.malformed:
                malformed = malformed or result.reason
        if unavailable:
            return SymbolStatus.unavailable, None, unavailable
        if malformed:
            return SymbolStatus.corrupt, None, malformed
        return SymbolStatus.missing, None, "not_found"

    def _open(self, key: ModuleKey, path: Path, cache_dir: Path) -> tuple[SymbolStatus, _cache.ModuleSymbols | None, str]:
        try:
            return SymbolStatus.loaded, _cache.open_caches(path, cache_dir, *key), ""
        except _cache.MalformedSymbols as exc:
            log.warning("symbols %s for %s/%s are corrupt: %s", path, *key, exc)
            return SymbolStatus.corrupt, None, exc.reason
        except OSError as exc:
            log.warning("symbols %s for %s/%s unreadable: %s", path, *key, exc)
            return SymbolStatus.unavailable, None, f"os_error_{exc.errno}"
        except Exception:
            log.exception("converting symbols %s for %s/%s failed", path, *key)
            return SymbolStatus.corrupt, None, "conversion_failed"


def _file_generation(path: Path | None) -> int:
    """A generation file's mtime in ns (0 when there is none)."""
    try:
        return path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        return 0


class ProjectSymbols:
    """A CachedSymbolProvider as one project's crashes see it: the project's own store first,
    then the shared sources. Made per crash (cheap); what it loads stays in the provider."""

    def __init__(self, provider: CachedSymbolProvider, project_id: int) -> None:
        self.provider = provider
        self.project_id = project_id

    def status(self, module: Module) -> SymbolStatus:
        return self.provider._resolve(module, self.project_id)[0]

    def cfi_rules(self, module: Module, offset: int) -> dict[str, str] | None:
        symbols = self.provider._resolve(module, self.project_id)[1]
        return symbols.cfi_rules(offset) if symbols else None

    def win_frame_info(self, module: Module, offset: int) -> WinFrameInfo | None:
        symbols = self.provider._resolve(module, self.project_id)[1]
        return symbols.win_frame_info(offset) if symbols else None

    def function_at(self, module: Module, offset: int) -> FunctionInfo | None:
        symbols = self.provider._resolve(module, self.project_id)[1]
        return symbols.function_at(offset) if symbols else None

    def symbolize(self, module: Module, offset: int) -> list[SourceLocation]:
        symbols = self.provider._resolve(module, self.project_id)[1]
        return symbols.symbolize(offset) if symbols else []

    def reason(self, module: Module) -> str:
        return self.provider.reason(module, self.project_id)
