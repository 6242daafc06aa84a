"""What a read returns: plain dataclasses for the system, the exception, threads, memory,
Crashpad annotations and the Minidump that holds them. No stream parsing here."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from schemas.stack import Module


@dataclass
class CpuContext:
    """Registers of one thread at one point.

    Register names are rust-minidump's: amd64 ``rax..r15, rip, rsp, rbp``; x86 ``eax..edi,
    eip, esp, ebp``; arm64 ``x0..x28, fp (x29), lr (x30), sp, pc``.
    """

    arch: str  # "amd64" | "x86" | "arm64" | "arm"
    registers: dict[str, int]

    @property
    def instruction_pointer(self) -> int:
        return self.registers[{"amd64": "rip", "x86": "eip"}.get(self.arch, "pc")]

    @property
    def stack_pointer(self) -> int:
        return self.registers[{"amd64": "rsp", "x86": "esp"}.get(self.arch, "sp")]

    @property
    def pointer_size(self) -> int:
        return 4 if self.arch in ("x86", "arm") else 8


@dataclass
class MemoryRegion:
    """Bytes of the crashed process's memory starting at base."""

    base: int
    data: bytes

    @property
    def end(self) -> int:
        return self.base + len(self.data)


class Memory:
    """All memory captured in the dump (thread stacks and memory lists), for reads by address."""

    def __init__(self, regions: list[MemoryRegion]) -> None:
        self.regions = sorted((r for r in regions if r.data), key=lambda r: r.base)
        self._bases = [r.base for r in self.regions]

    def region_at(self, address: int) -> MemoryRegion | None:
        index = bisect.bisect_right(self._bases, address) - 1
        if index >= 0 and address < self.regions[index].end:
            return self.regions[index]
        return None

    def read(self, address: int, size: int) -> bytes | None:
        """size bytes at address, or None when not captured (in one region)."""
        region = self.region_at(address)
        if region is None or address + size > region.end:
            return None
        offset = address - region.base
        return region.data[offset : offset + size]

    def read_pointer(self, address: int, width: int) -> int | None:
        """A little-endian 4- or 8-byte word at address, or None."""
        data = self.read(address, width)
        if data is None:
            return None
        return struct.unpack("<I" if width == 4 else "<Q", data)[0]


@dataclass
class SystemInfo:
    """Names follow rust-minidump's JSON: os ``Windows NT``/``Linux``/``Mac OS X``/``iOS``/
    ``Android``, cpu_arch ``amd64``/``x86``/``arm64``/``arm``."""

    os: str
    os_ver: str | None
    cpu_arch: str
    cpu_info: str | None = None
    cpu_count: int = 0
    cpu_microcode_version: str | None = None


@dataclass
class ExceptionInfo:
    """The exception stream: who crashed, why, where, and the CPU context at the crash."""

    thread_id: int
    code: int
    flags: int
    address: int  # not sign-extended on 32-bit dumps
    reason: str  # per OS: EXCEPTION_ACCESS_VIOLATION_WRITE, SIGSEGV / SEGV_MAPERR, EXC_BAD_ACCESS / ...
    parameters: list[int] = field(default_factory=list)
    context: CpuContext | None = None
    # The record's own ExceptionAddress (the faulting instruction on Windows). ``address`` is
    # the crash address as rust-minidump reports it: for a Windows access violation or in-page
    # error, the data address from parameters[1] instead.
    raw_address: int | None = None


@dataclass
class DumpThread:
    """A thread as recorded: its id, context, stack memory and name."""

    thread_id: int
    context: CpuContext | None
    stack: MemoryRegion | None
    name: str | None = None


@dataclass
class CrashpadModuleInfo:
    """Crashpad annotations attached to one module (by index into the dump's module list)."""

    module_index: int
    list_annotations: list[str] = field(default_factory=list)  # e.g. ["abort() called"] on macOS
    simple_annotations: dict[str, str] = field(default_factory=dict)
    annotation_objects: dict[str, str] = field(default_factory=dict)  # string-typed ones only


@dataclass
class CrashpadInfo:
    """The Crashpad info stream (0x43500001): report and client ids, annotations."""

    report_id: str | None = None  # UUID, upper-case with hyphens
    client_id: str | None = None
    simple_annotations: dict[str, str] = field(default_factory=dict)
    modules: list[CrashpadModuleInfo] = field(default_factory=list)


@dataclass
class Minidump:
    """Everything the walker and the processor need from one dump."""

    system: SystemInfo
    exception: ExceptionInfo | None
    modules: list[Module]
    threads: list[DumpThread]
    memory: Memory
    unloaded_modules: list[Module] = field(default_factory=list)
    # Crashpad simple annotations, then per-module simple and string annotations whose key is
    # not taken yet (full detail in ``crashpad``)
    annotations: dict[str, str] = field(default_factory=dict)
    assertion: str | None = None  # Breakpad assertion stream, as text
    linux: dict[str, str] = field(default_factory=dict)  # lsb_release, proc_status, cmdline, environ, maps, ...
    pid: int | None = None
    dump_thread_id: int | None = None  # Breakpad info: the thread that wrote the dump
    requesting_thread_id: int | None = None  # Breakpad info: the thread that asked for it
    crashing_thread: int | None = None  # index into threads, None when no crash is recorded
    notes: list[str] = field(default_factory=list)
    crashpad: CrashpadInfo | None = None  # the whole Crashpad info stream, when present
    timestamp: int | None = None  # header TimeDateStamp: when the dump was written (Unix time)
    # lists longer than symbolicator/limits.py allows: name -> (entries listed, entries read)
    cut: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modules.sort(key=lambda m: m.base_addr)
        self._module_bases = [m.base_addr for m in self.modules]

    def module_at(self, address: int) -> Module | None:
        """The loaded module containing address, or None."""
        index = bisect.bisect_right(self._module_bases, address) - 1
        if index >= 0 and self.modules[index].contains(address):
            return self.modules[index]
        return None
