"""The worker context: what every job needs (settings, engine, blob store, symbol provider).

A leaf of workers/: it imports no other module of the package, so every job module, the
pipeline, its rules and the server can share WorkerContext without an import circle. The
context is built on first use in the worker process, or handed over by the server for the
in-process worker; never at import time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from schemas.settings import Settings
from storage.blobs import BlobStore, make_blob_store
from storage.db import make_engine
from symbolicator.symbols.provider import CachedSymbolProvider


@dataclass
class WorkerContext:
    """What a job needs: settings, the database engine, the blob store and (built on first
    use, then kept warm for every later job of this process) the symbol provider."""

    settings: Settings
    engine: Engine
    blobs: BlobStore
    _symbols: Any = None
    # (debug_file lower case, DEBUG_ID) -> when this process last recorded the module's use
    # (workers/rules.SymbolUseRule): no query again within storage.symbol_use.RESOLUTION
    symbols_marked: dict[tuple[str, str], datetime] = field(default_factory=dict, repr=False)
    # The blob key the sweeper's orphan pass stopped after (workers/sweeper.delete_orphans)
    orphan_cursor: str = ""

    @property
    def symbols(self) -> Any:
        """The SymbolProvider over the symbol store and CRASHD_SYMBOL_URLS."""
        if self._symbols is None:
            self._symbols = CachedSymbolProvider.from_settings(self.settings, blobs=self.blobs)
        return self._symbols


def build_context(settings: Settings, *, pooled: bool = True) -> WorkerContext:
    """Create the engine and blob store for settings (pooled=False: a one-shot command's,
    storage/db.make_engine)."""
    return WorkerContext(settings, make_engine(settings, pooled=pooled), make_blob_store(settings))


_context: WorkerContext | None = None
_lock = threading.Lock()


def install_context(context: WorkerContext | None) -> None:
    """Use context for jobs run in this process (the server's in-process worker, tests)."""
    global _context
    _context = context


def current_context() -> WorkerContext:
    """The installed context, or one built from the environment on first use (RQ workers)."""
    global _context
    with _lock:
        if _context is None:
            _context = build_context(Settings())
        return _context
