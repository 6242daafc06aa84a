"""Walk a thread's stack: the context frame, then caller after caller.

Per frame each architecture tries call frame information (CFI; on x86 also STACK WIN),
then the frame pointer, then a stack scan for return addresses (rust-minidump's order), and
records how it found the frame in ``trust``. The walk stops when the instruction pointer is
null-ish (below 4096), when the stack pointer does not grow, or after max_frames frames
(Limits.frames_per_thread, 1024, symbolicator/limits.py).
"""

from __future__ import annotations

import time

from schemas.stack import Frame, FrameTrust, Thread
from symbolicator.limits import DEFAULT_LIMITS
from symbolicator.minidump import CpuContext, DumpThread, MemoryRegion, Minidump
from symbolicator.stackwalk import amd64, arm64, x86
from symbolicator.stackwalk.unwind import StackMemory, UnwindArgs, Unwinder
from symbolicator.symbols.types import SymbolProvider

# Per CPU: the unwinder, and the names of its instruction and stack pointer registers.
UNWINDERS: dict[str, tuple[Unwinder, str, str]] = {
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
                max_frames: int = DEFAULT_LIMITS.frames_per_thread,
                spans: dict[int, tuple[int, int]] | None = None) -> Thread:
    """Walk thread ``index`` of dump, at most max_frames frames (at least the context
    frame); frames are not symbolicated here (symbolize.py is).

    deadline (time.monotonic()) stops a walk that takes too long, with a note. spans, when
    given, gets ``spans[index] = (lowest, end)``: the stack addresses the walk read (none
    read: no entry), what symbolicator/vendor_safe.py keeps.
    """
    stack = StackMemory(None)
    try:
        return _walk(dump, index, provider, deadline, max_frames, stack)
    finally:
        if spans is not None and stack.read_span is not None:
            spans[index] = stack.read_span


def _walk(dump: Minidump, index: int, provider: SymbolProvider, deadline: float | None, max_frames: int,
          stack: StackMemory) -> Thread:
    thread = dump.threads[index]
    result = Thread(thread_id=thread.thread_id, name=thread.name)
    context = start_context(dump, index)
    if context is None:
        result.notes.append("no CPU context: nothing to walk")
        return result
    if context.arch not in UNWINDERS:
        result.notes.append(f"unsupported CPU {context.arch}: only the context frame")
        result.frames.append(
            Frame(
                context.instruction_pointer,
                FrameTrust.context,
                dump.module_at(context.instruction_pointer),
                dict(context.registers),
            )
        )
        return result
    unwind, ip_name, sp_name = UNWINDERS[context.arch]
    first = Frame(context.registers.get(ip_name, 0), FrameTrust.context, registers=dict(context.registers))
    first.module = dump.module_at(first.instruction)
    result.frames.append(first)
    stack.region = stack_region(dump, thread, context.registers.get(sp_name, 0))
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
            callee=frames[-1],
            grand_callee=frames[-2] if len(frames) > 1 else None,
            grand_callee_parameter_size=parameter_sizes[-2] if len(frames) > 1 else 0,
            stack=stack,
            dump=dump,
            provider=provider,
            all_registers_valid=len(frames) == 1,
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
