"""The shapes of a walked, symbolicated stack. Breakpad words: module, module_offset, trust."""

from __future__ import annotations

import ntpath
import posixpath
from dataclasses import dataclass, field
from enum import Enum


class FrameTrust(str, Enum):
    """How a frame was found, best first (rust-minidump's FrameTrust)."""

    context = "context"  # the CPU context of the thread or the exception: certain
    cfi = "cfi"  # unwound with call frame information: reliable
    frame_pointer = "frame_pointer"  # followed the frame pointer chain: usually right
    cfi_scan = "cfi_scan"  # found by scanning, then confirmed by CFI
    scan = "scan"  # a stack word that looks like a return address: a guess
    inline = "inline"  # an inlined call expanded from symbols (output only)
    event = "event"  # from a Sentry event's own stack trace (the SDK's): as given, not walked
    none = "none"


@dataclass
class Module:
    """A loaded code module of the crashed process."""

    base_addr: int
    size: int
    code_file: str
    code_id: str | None = None
    debug_file: str | None = None
    debug_id: str | None = None  # Breakpad form: 33 upper-case hex digits (GUID + age)
    version: str | None = None

    @property
    def end_addr(self) -> int:
        return self.base_addr + self.size

    @property
    def filename(self) -> str:
        """The code file's base name, whatever the OS's path separator."""
        return ntpath.basename(self.code_file) if "\\" in self.code_file else posixpath.basename(self.code_file)

    def contains(self, address: int) -> bool:
        return self.base_addr <= address < self.end_addr


@dataclass
class SourceLocation:
    """A function with file and line: a frame's own, or one of its inlined calls."""

    function: str | None
    function_offset: int | None = None
    file: str | None = None
    line: int | None = None


@dataclass
class Frame:
    """One frame of a walked stack, symbolicated when the module's symbols were found."""

    instruction: int
    trust: FrameTrust
    module: Module | None = None
    registers: dict[str, int] = field(default_factory=dict)  # valid registers (context/CFI)
    function: str | None = None
    function_offset: int | None = None
    file: str | None = None
    line: int | None = None
    inlines: list[SourceLocation] = field(default_factory=list)  # innermost first
    missing_symbols: bool = False
    call_size: int = 1  # how far back from a return address the call lies (arm64: 4)

    @property
    def lookup_address(self) -> int:
        """Where to look symbols and CFI up: inside the call instruction for caller frames
        (return address - 1; arm64 - 4, its fixed instruction size), since the return address
        may already be in the next function after a noreturn call. Breakpad and
        rust-minidump do the same."""
        if self.trust is FrameTrust.context or self.instruction < self.call_size:
            return self.instruction
        return self.instruction - self.call_size

    @property
    def module_offset(self) -> int | None:
        return self.instruction - self.module.base_addr if self.module else None


@dataclass
class Thread:
    """A thread's walked stack."""

    thread_id: int
    name: str | None = None
    frames: list[Frame] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
