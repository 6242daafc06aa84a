"""Deleting uploaded debug files that no crash has used for a while (``crashd symbols prune``,
``CRASHD_SYMBOL_RETENTION_DAYS``): a game's PDBs and dSYMs are often bigger than its dumps,
and a closed test ships a build a day.

A module (debug_file, debug_id) goes whole: its folder in the symbol store, its folder in the
cache, then its symbol_files rows; then the store's generation is bumped so that every
process's SymbolProvider forgets what it had loaded. Files first: if a row outlives its file
the next prune deletes it again; a file without a row would never be found again.
Modules that never had a row (copied into the store by hand, fetched from a symbol server)
are not touched.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from schemas.tables import utcnow
from storage.blobs import BlobStoreError
from storage.symbol_use import UnusedModule, forget_module, unused_modules
from symbolicator.symbols import remote
from symbolicator.symbols.cache import MalformedSymbols, module_cache_dir
from symbolicator.symbols.sources import bump_generation
from workers.context import WorkerContext

log = logging.getLogger(__name__)


@dataclass
class PrunedSymbols:
    """What a symbols prune did (or, with dry_run, would do)."""

    modules: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"modules": self.modules, "bytes": self.bytes, "failed": self.failed}


def prune_symbols(ctx: WorkerContext, *, before: datetime, dry_run: bool = False) -> PrunedSymbols:
    """Delete the modules unused since ``before`` (storage/symbol_use.unused_modules)."""
    result = PrunedSymbols()
    for module in unused_modules(ctx.engine, before=before):
        if dry_run:
            result.modules += 1
            result.bytes += module.size
            continue
        try:
            _delete_files(ctx, module)
        except (OSError, BlobStoreError) as exc:
            result.failed.append(f"{module.debug_file}/{module.debug_id}: {exc}")
            log.warning("symbols prune: %s/%s kept: %s", module.debug_file, module.debug_id, exc)
            continue
        forget_module(ctx.engine, debug_file=module.debug_file, debug_id=module.debug_id)
        result.modules += 1
        result.bytes += module.size
    if result.modules and not dry_run:
        bump_generation(ctx.settings.symbols_dir)
        if ctx.settings.blobs_on_s3:
            remote.bump_shared_generation(ctx.blobs)
        log.info("symbols prune: deleted %d modules (%d bytes) unused since %s", result.modules, result.bytes,
                 before.isoformat())
    return result


def _delete_files(ctx: WorkerContext, module: UnusedModule) -> None:
    """Remove the module's store folder(s) and cache folder, and a ``<debug_file>/`` folder
    they leave empty. Only ever below the store's and the cache's roots. On an object store,
    its objects go first (raises BlobStoreError); local copies of other processes are left to
    their LocalCache's eviction."""
    if ctx.settings.blobs_on_s3:
        for path in module.paths:  # and the key of the upload's case, where it went before names were folded
            for key in dict.fromkeys((remote.blob_key(path), remote.PREFIX + path)):
                ctx.blobs.delete(key)
    store, cache = Path(ctx.settings.symbols_dir).resolve(), Path(ctx.settings.symbol_cache_dir).resolve()
    folders = [(store, (store / path).parent.resolve()) for path in module.paths]
    # The caches mirror the store's layout: a project's store and caches are under .projects/<id>/.
    folders += [(cache, (cache / path).parent.resolve()) for path in module.paths]
    try:
        folders.append((cache, module_cache_dir(cache, module.debug_file, module.debug_id).resolve()))
    except MalformedSymbols:
        pass  # an id no cache folder can have: nothing cached
    for root, folder in folders:
        if root not in folder.parents:
            continue  # a path outside the store (or the store itself): not ours to delete
        if folder.exists():
            shutil.rmtree(folder)
        if folder.parent != root and folder.parent.exists() and not any(folder.parent.iterdir()):
            folder.parent.rmdir()


def tick(ctx: WorkerContext) -> PrunedSymbols | None:
    """The sweeper's symbols step: modules unused for CRASHD_SYMBOL_RETENTION_DAYS."""
    days = ctx.settings.symbol_retention_days
    if not days:
        return None
    return prune_symbols(ctx, before=utcnow() - timedelta(days=days))
