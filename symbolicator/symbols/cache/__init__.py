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

The package, by what each module owns:

- ``folder.py``: a module's cache folder: its path, file names, atomic writes, the
  corrupt-*.json markers, and ``MalformedSymbols``;
- ``build.py``: ``build_caches``: reading a .sym or native file and writing both caches;
- ``index.py``: the binary index format (STACK CFI, STACK WIN, FUNC, PUBLIC), write and read;
- ``lookup.py``: ``open_caches`` and ``ModuleSymbols``, the lookups the SymbolProvider answers.
"""

from symbolicator.symbols.cache.build import CacheInfo, breakpad_debug_id, build_caches, info_dict
from symbolicator.symbols.cache.folder import (
                                               CORRUPT_PREFIX,
                                               INDEX_NAME,
                                               SYMCACHE_NAME,
                                               MalformedSymbols,
                                               corrupt_path,
                                               module_cache_dir,
)
from symbolicator.symbols.cache.index import INDEX_MAGIC, INDEX_VERSION, read_index
from symbolicator.symbols.cache.lookup import NO_ADDRESS, ModuleSymbols, open_caches

__all__ = [
    "CORRUPT_PREFIX", "INDEX_MAGIC", "INDEX_NAME", "INDEX_VERSION", "NO_ADDRESS", "SYMCACHE_NAME", "CacheInfo",
    "MalformedSymbols", "ModuleSymbols", "breakpad_debug_id", "build_caches", "corrupt_path", "info_dict",
    "module_cache_dir", "open_caches", "read_index",
]
