"""Read a minidump into plain dataclasses: system, exception, modules, threads, memory.

``read_minidump(data)`` parses the stream directory and the streams the processor needs with
``struct`` (why not the PyPI ``minidump`` package: see "reading" in reader.py), naming and deriving
everything as rust-minidump's minidump-stackwalk does: OS and CPU names, os_ver, debug ids,
code ids, crash reasons, crash address. Knows nothing about symbols. A truncated or hostile
dump yields a partial Minidump with notes, never an exception, and the work is bounded by a
small multiple of the dump's size.

The package, by what each module owns:

- ``reader.py``: the header, the stream directory and ``read_minidump``;
- ``model.py``: the dataclasses a read returns (Minidump, threads, memory, ...);
- ``bounded.py``: bounded reads of the dump's bytes, the limits and ``Malformed``;
- ``context.py``: CPU contexts (amd64, x86, arm64, arm);
- ``system.py``: the system info, misc info and exception streams;
- ``threads.py``: the thread list, thread names and the memory lists;
- ``modules.py``: the module lists and CodeView records (debug and code ids);
- ``breakpad.py`` and ``crashpad.py``: the streams those writers add.
"""

from symbolicator.minidump.bounded import Malformed
from symbolicator.minidump.model import (
                                         CpuContext,
                                         CrashpadInfo,
                                         CrashpadModuleInfo,
                                         DumpThread,
                                         ExceptionInfo,
                                         Memory,
                                         MemoryRegion,
                                         Minidump,
                                         SystemInfo,
)
from symbolicator.minidump.reader import read_minidump

__all__ = [
    "CpuContext", "CrashpadInfo", "CrashpadModuleInfo", "DumpThread", "ExceptionInfo", "Malformed", "Memory",
    "MemoryRegion", "Minidump", "SystemInfo", "read_minidump",
]
