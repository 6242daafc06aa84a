"""A vendor-safe copy of a minidump: the memory a stack walk does not need, zeroed.

A dump handed to a GPU or engine vendor should show them the stacks, not the player's data.
``vendor_safe(raw, provider)`` returns a copy of the same size and layout (header, stream
directory, every stream, every CPU context and every memory descriptor untouched, so any tool
reads it) in which these bytes are zero:

- each thread's stack memory outside the bytes its walk read: kept is, per thread, from
  the lower of its stack pointer and the lowest address the walk read, up to the end of the
  highest word it read (the return addresses, saved registers and locals of the frames
  walked); below and above that (older frames the walk never reached, a scan's leftovers,
  stale data under the stack pointer) is zeroed. The crashing thread is treated the same.
- every other captured memory range (memory list and memory64 list ranges that are no
  walked stack: heap, the PEB and its process parameters with the Windows environment block,
  Crashpad's indirectly referenced memory, a full-memory dump's pages);
- Breakpad's Linux environment (``MD_LINUX_ENVIRON``, /proc/<pid>/environ) and command line
  (``MD_LINUX_CMD_LINE``: launchers pass login tokens as arguments, e.g. Epic's
  ``-AUTH_PASSWORD=``) streams, whole.

Kept: registers (the walk starts from them), modules, the exception, system info, Linux
``maps``/``proc_status``/``lsb_release``/``cpu_info``, thread names and Crashpad annotations
(annotations are scrubbed at ingest, not here).

The copy is then walked again with the same symbols, and every thread's frames (instruction,
trust, module, function, file and line) must equal the original's; if anything differs,
``NotVendorSafe`` is raised and no copy is returned (the route answers 409: refusing is
safer than a copy that keeps more, which could hold what the copy was made to remove). The walk reads
stack memory only through ``StackMemory.read_word`` (symbolicator/stackwalk/unwind.py), which
records what it read, so the check holds by construction; it is kept as a guard against a
walker change that reads memory some other way.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.stack import Thread
from symbolicator.limits import DEFAULT_LIMITS, Limits
from symbolicator.minidump import Minidump, read_minidump
from symbolicator.minidump.layout import Layout, read_layout
from symbolicator.process import walk_all_threads
from symbolicator.stackwalk.walker import stack_region, start_context
from symbolicator.symbols.types import SymbolProvider

LINUX_CMD_LINE, LINUX_ENVIRON = 0x47670006, 0x47670007
ENVIRONMENT_STREAMS = (LINUX_CMD_LINE, LINUX_ENVIRON)

Ranges = list[tuple[int, int]]  # (start, end) file offsets


class NotVendorSafe(Exception):
    """No vendor-safe copy can be given (the message says why, in words): the copy walks
    differently from the dump, or the bytes are no minidump whose memory can be found."""


@dataclass
class VendorSafe:
    """A vendor-safe copy and what making it did."""

    data: bytes
    zeroed: int  # bytes of the file set to zero (memory and environment streams)
    kept: int  # bytes of stack memory kept (what the walks read)
    threads: int  # threads whose walks were compared


def vendor_safe(raw: bytes, provider: SymbolProvider, limits: Limits = DEFAULT_LIMITS) -> VendorSafe:
    """The vendor-safe copy of raw (see the module docstring). Raises NotVendorSafe when the
    copy's walk of any thread differs from raw's, or when raw has no minidump header (nothing
    could be zeroed); a dump that is only partly readable is fine (what the reader cannot read
    is not walked on either side, and its memory ranges are zeroed all the same)."""
    layout = read_layout(raw)
    if not layout.structure:
        raise NotVendorSafe("not a minidump: no header, so its memory cannot be found")
    dump = read_minidump(raw, limits)
    spans: dict[int, tuple[int, int]] = {}
    before, _ = walk_all_threads(dump, provider, None, limits, spans)
    keep = stack_kept(dump, layout, spans)
    zero = subtract(merge([(m.rva, m.rva + m.size) for m in layout.memory] + environment(layout)),
                    merge(keep + layout.structure + bodies(layout)))
    copy = bytearray(raw)
    for start, end in zero:
        copy[start:end] = bytes(end - start)
    after, _ = walk_all_threads(read_minidump(bytes(copy), limits), provider, None, limits)
    difference = compare_walks(before, after)
    if difference is not None:
        raise NotVendorSafe(f"the vendor-safe copy would walk differently: {difference}")
    return VendorSafe(bytes(copy), sum(e - s for s, e in zero), sum(e - s for s, e in merge(keep)), len(before))


def stack_kept(dump: Minidump, layout: Layout, spans: dict[int, tuple[int, int]]) -> Ranges:
    """The file ranges of the stack bytes each thread's walk read (spans: thread index ->
    (lowest, end) address), widened down to its stack pointer, in every captured range that
    holds those addresses (a Windows stack is in the thread list and in the memory list)."""
    kept: Ranges = []
    for index, (low, high) in spans.items():
        context = start_context(dump, index)
        if context is not None:
            region = stack_region(dump, dump.threads[index], context.stack_pointer)
            if region is not None and region.base <= context.stack_pointer < low:
                low = context.stack_pointer
        for memory in layout.memory:
            found = memory.file_range(low, high)
            if found is not None:
                kept.append(found)
    return kept


def environment(layout: Layout) -> Ranges:
    """The bodies of the environment and command line streams."""
    return [(rva, rva + size) for kind, (rva, size) in layout.streams.items() if kind in ENVIRONMENT_STREAMS]


def bodies(layout: Layout) -> Ranges:
    """The bodies of every other stream (lists, names, annotations): never zeroed, even where
    a hostile dump's memory range overlaps them."""
    return [(rva, rva + size) for kind, (rva, size) in layout.streams.items() if kind not in ENVIRONMENT_STREAMS]


def merge(ranges: Ranges) -> Ranges:
    """Sorted, non-overlapping, non-empty ranges covering the same offsets."""
    merged: Ranges = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract(ranges: Ranges, holes: Ranges) -> Ranges:
    """ranges without holes (both merged)."""
    result: Ranges = []
    first = 0
    for start, end in ranges:
        while first < len(holes) and holes[first][1] <= start:
            first += 1
        index = first
        while index < len(holes) and holes[index][0] < end:
            if holes[index][0] > start:
                result.append((start, holes[index][0]))
            start = max(start, holes[index][1])
            index += 1
        if start < end:
            result.append((start, end))
    return result


def frame_keys(thread: Thread) -> list[tuple[object, ...]]:
    """What must not change in a thread's walk: per frame instruction, trust, module,
    function, file and line."""
    return [(f.instruction, f.trust.value, f.module.code_file if f.module else None, f.function, f.file, f.line)
            for f in thread.frames]


def compare_walks(before: list[Thread], after: list[Thread]) -> str | None:
    """None when every thread walked the same, else where they first differ, in words."""
    if len(before) != len(after):
        return f"{len(before)} threads walked in the dump, {len(after)} in the copy"
    for index, (one, other) in enumerate(zip(before, after, strict=True)):
        frames, copied = frame_keys(one), frame_keys(other)
        if frames != copied:
            at = next((i for i, (a, b) in enumerate(zip(frames, copied, strict=False)) if a != b), min(len(frames), len(copied)))
            return (f"thread {index} walks differently from frame {at} on ({len(frames)} frames in the dump, "
                    f"{len(copied)} in the copy)")
    return None
