"""What the stack walker and the architecture unwinders share (minidump-unwind's prelude):
the stack memory, the arguments an unwinder gets, and the end checks every unwinder runs.

A leaf: it imports nothing of ``symbolicator.stackwalk``, so walker.py imports amd64.py, x86.py
and arm64.py, and they import this, not walker.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from schemas.stack import Frame, Module
from symbolicator.minidump import MemoryRegion, Minidump
from symbolicator.symbols.types import SymbolProvider, SymbolStatus

NULLISH = 4096


class StackMemory:
    """Word reads from one thread's stack memory (rust-minidump's UnifiedMemory).

    ``read_span`` is the (lowest, end) of the bytes the walk read, None before any read: the
    walk depends on those bytes and on the region's bounds only (``contains`` reads none), so
    a copy that keeps them walks the same (symbolicator/vendor_safe.py)."""

    def __init__(self, region: MemoryRegion | None) -> None:
        self.region = region
        self.read_span: tuple[int, int] | None = None

    def read_word(self, address: int, width: int) -> int | None:
        region = self.region
        if region is None or address < region.base or address + width > region.end:
            return None
        span = self.read_span
        if span is None or address < span[0] or address + width > span[1]:
            self.read_span = (address, address + width) if span is None else (
                min(span[0], address), max(span[1], address + width))
        offset = address - region.base
        return int.from_bytes(region.data[offset : offset + width], "little")

    def contains(self, address: int, width: int) -> bool:
        region = self.region
        return region is not None and region.base <= address and address + width <= region.end


@dataclass
class UnwindArgs:
    """What an architecture's unwinder gets to find the caller of ``callee``."""

    callee: Frame
    grand_callee: Frame | None
    grand_callee_parameter_size: int
    stack: StackMemory
    dump: Minidump
    provider: SymbolProvider
    all_registers_valid: bool  # the callee is the context frame: every register is known

    @property
    def is_windows(self) -> bool:
        return self.dump.system.os == "Windows NT"

    def module_at(self, address: int) -> Module | None:
        return self.dump.module_at(address)

    def instruction_seems_valid(self, instruction: int) -> bool:
        """Could instruction be a return address? (rust-minidump's symbol-based check)

        Looks at instruction - 1 (the call, which matters after a noreturn callee). Outside
        every module: no. In a module without symbols: yes. With symbols: only if a
        function or public symbol covers it.
        """
        address = instruction - 1
        if address <= 0:
            return False
        module = self.module_at(address)
        if module is None:
            return False
        if self.provider.status(module) is not SymbolStatus.loaded:
            return True
        return self.provider.function_at(module, address - module.base_addr) is not None


Unwinder = Callable[[UnwindArgs], "Frame | None"]


def finish_caller(args: UnwindArgs, caller: Frame | None, ip_name: str, sp_name: str) -> Frame | None:
    """Common end checks: a null-ish instruction or a stack that did not grow ends the walk."""
    if caller is None:
        return None
    ip = caller.registers.get(ip_name)
    sp = caller.registers.get(sp_name)
    callee_sp = args.callee.registers.get(sp_name)
    if ip is None or sp is None or ip < NULLISH:
        return None
    if callee_sp is not None and sp <= callee_sp:
        return None
    caller.instruction = ip
    return caller
