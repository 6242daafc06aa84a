"""Walk a thread's stack: the context frame, then caller after caller.

Per frame each architecture tries call frame information (CFI; on x86 also STACK WIN),
then the frame pointer, then a stack scan for return addresses (rust-minidump's order), and
records how it found the frame in ``trust``. The walk stops when the instruction pointer is
null-ish (below 4096), when the stack pointer does not grow, or after max_frames frames
(Limits.frames_per_thread, 1024, symbolicator/limits.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from schemas.stack import Frame, FrameTrust, Module, Thread
from symbolicator.limits import DEFAULT_LIMITS
from symbolicator.minidump import CpuContext, DumpThread, MemoryRegion, Minidump
from symbolicator.symbols.types import SymbolProvider, SymbolStatus

NULLISH = 4096


class StackMemory:
    """Word reads from one thread's stack memory (rust-minidump's UnifiedMemory)."""

    def __init__(self, region: MemoryRegion | None) -> None:
        self.region = region

    def read_word(self, address: int, width: int) -> int | None:
        region = self.region
        if region is None or address < region.base or address + width > region.end:
            return None
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


def _unwinders() -> dict[str, tuple[Unwinder, str, str]]:
    from symbolicator.stackwalk import amd64, arm64, x86

    return {
        "amd64": (amd64.get_caller_frame, "rip", "rsp"),
        "x86": (x86.get_caller_frame, "eip", "esp"),
        "arm64": (arm64.get_caller_frame, "pc", "sp"),
    }


def start_context(dump: Minidump, index: int) -> CpuContext | None:
    """The crashing thread starts at the exception's own context (the crash point: on
    Windows and Crashpad-Linux dumps the thread list holds the handler's context instead)."""
    thread = dump.threads[index]
    if index == dump.crashing_thread and dump.exception and dump.exception.context:
        return dump.exception.context
    return thread.context


def stack_region(dump: Minidump, thread: DumpThread, sp: int) -> MemoryRegion | None:
    """The thread's stack memory, or else the captured region holding its stack pointer."""
    if thread.stack is not None and thread.stack.data:
        return thread.stack
    return dump.memory.region_at(sp)


def walk_thread(dump: Minidump, index: int, provider: SymbolProvider, deadline: float | None = None,
                max_frames: int = DEFAULT_LIMITS.frames_per_thread) -> Thread:
    """Walk thread ``index`` of dump, at most max_frames frames (at least the context
    frame); frames are not symbolicated here (symbolize.py is).

    deadline (time.monotonic()) stops a walk that takes too long, with a note.
    """
    thread = dump.threads[index]
    result = Thread(thread_id=thread.thread_id, name=thread.name)
    context = start_context(dump, index)
    if context is None:
        result.notes.append("no CPU context: nothing to walk")
        return result
    table = _unwinders()
    if context.arch not in table:
        result.notes.append(f"unsupported CPU {context.arch}: only the context frame")
        result.frames.append(Frame(context.instruction_pointer, FrameTrust.context, dump.module_at(context.instruction_pointer), dict(context.registers)))
        return result
    unwind, ip_name, sp_name = table[context.arch]
    first = Frame(context.registers.get(ip_name, 0), FrameTrust.context, registers=dict(context.registers))
    first.module = dump.module_at(first.instruction)
    result.frames.append(first)
    stack = StackMemory(stack_region(dump, thread, context.registers.get(sp_name, 0)))
    if stack.region is None:
        result.notes.append("no stack memory: only the context frame")
        return result
    # Only x86 STACK WIN needs the grand-callee's parameter size: skip the lookups elsewhere.
    sized = context.arch == "x86"
    parameter_sizes: list[int] = [_parameter_size(provider, first) if sized else 0]
    while len(result.frames) < max_frames:
        if deadline is not None and time.monotonic() > deadline:
            result.notes.append("stopped: processing time limit reached")
            break
        frames = result.frames
        args = UnwindArgs(
            callee=frames[-1], grand_callee=frames[-2] if len(frames) > 1 else None,
            grand_callee_parameter_size=parameter_sizes[-2] if len(frames) > 1 else 0,
            stack=stack, dump=dump, provider=provider, all_registers_valid=len(frames) == 1,
        )
        caller = unwind(args)
        if caller is None:
            break
        caller.module = dump.module_at(caller.lookup_address)
        frames.append(caller)
        parameter_sizes.append(_parameter_size(provider, caller) if sized else 0)
    else:
        result.notes.append(f"stopped after {max_frames} frames")
    return result


def _parameter_size(provider: SymbolProvider, frame: Frame) -> int:
    """The FUNC/PUBLIC parameter size of the frame's function (x86 STACK WIN needs it)."""
    module = frame.module
    if module is None:
        return 0
    info = provider.function_at(module, frame.lookup_address - module.base_addr)
    return info.parameter_size if info else 0


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
