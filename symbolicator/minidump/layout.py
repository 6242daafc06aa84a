"""Where a dump's bytes are: the file ranges of its streams, CPU contexts and captured memory.

read_minidump turns a dump into values; this says which byte of the file holds what, for code
that rewrites a dump in place (symbolicator/vendor_safe.py zeroes memory and keeps the layout).
Every range is clipped to the file, and every list to the entries its stream can hold, so a
hostile dump costs time linear in its size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from symbolicator.minidump.reader import (
    EXCEPTION,
    MEMORY64_LIST,
    MEMORY_LIST,
    MINIDUMP_SIGNATURE,
    THREAD_LIST,
)

_HEADER = struct.Struct("<IIIIIIQ")
_ENTRY = struct.Struct("<III")  # stream type, size, rva
_THREAD = struct.Struct("<IIIIQQIIII")  # MINIDUMP_THREAD: ..., stack (start, size, rva), context (size, rva)
_DESCRIPTOR = struct.Struct("<QII")  # MINIDUMP_MEMORY_DESCRIPTOR: start, size, rva
_DESCRIPTOR64 = struct.Struct("<QQ")  # MINIDUMP_MEMORY_DESCRIPTOR64: start, size (bytes follow BaseRva)
_EXCEPTION_CONTEXT = 160  # MINIDUMP_EXCEPTION_STREAM: thread id, alignment, 152-byte record, then the context


@dataclass(frozen=True)
class MemoryRange:
    """Captured memory: address ``start`` is at file offset ``rva``, ``size`` bytes (clipped to
    the file). ``stack_of`` is the thread's index in the thread list for a thread's stack
    descriptor; None for the memory lists' ranges."""

    start: int
    size: int
    rva: int
    stack_of: int | None = None

    def file_range(self, low: int, high: int) -> tuple[int, int] | None:
        """The file offsets of addresses [low, high) within this range, or None."""
        low, high = max(low, self.start), min(high, self.start + self.size)
        if low >= high:
            return None
        return self.rva + low - self.start, self.rva + high - self.start


@dataclass
class Layout:
    """The file ranges of one dump: ``streams`` {type: (rva, size)} (the first of each type,
    clipped), ``structure`` (the header, the directory and the CPU contexts) and ``memory``
    (every captured range: thread stacks, then the memory lists')."""

    size: int
    streams: dict[int, tuple[int, int]] = field(default_factory=dict)
    structure: list[tuple[int, int]] = field(default_factory=list)  # (start, end) file offsets
    memory: list[MemoryRange] = field(default_factory=list)


def read_layout(data: bytes) -> Layout:
    """The Layout of a dump's bytes; what does not fit the file is left out (never raises on
    a malformed dump; an empty Layout for bytes that are no minidump)."""
    layout = Layout(len(data))
    if len(data) < _HEADER.size or _HEADER.unpack_from(data)[0] != MINIDUMP_SIGNATURE:
        return layout
    _signature, _version, count, directory, *_ = _HEADER.unpack_from(data)
    count = min(count, max(0, (len(data) - directory) // _ENTRY.size))
    _add(layout, layout.structure, 0, _HEADER.size)
    _add(layout, layout.structure, directory, count * _ENTRY.size)
    for index in range(count):
        stream_type, size, rva = _ENTRY.unpack_from(data, directory + index * _ENTRY.size)
        if stream_type and rva < len(data):
            layout.streams.setdefault(stream_type, (rva, min(size, len(data) - rva)))
    if THREAD_LIST in layout.streams:
        _threads(data, layout, *layout.streams[THREAD_LIST])
    if EXCEPTION in layout.streams:
        rva, size = layout.streams[EXCEPTION]
        if size >= _EXCEPTION_CONTEXT + 8:
            context_size, context_rva = struct.unpack_from("<II", data, rva + _EXCEPTION_CONTEXT)
            _add(layout, layout.structure, context_rva, context_size)
    if MEMORY_LIST in layout.streams:
        _memory_list(data, layout, *layout.streams[MEMORY_LIST])
    if MEMORY64_LIST in layout.streams:
        _memory64_list(data, layout, *layout.streams[MEMORY64_LIST])
    return layout


def _add(layout: Layout, ranges: list[tuple[int, int]], rva: int, size: int) -> None:
    """Append [rva, rva + size) clipped to the file, when anything of it is in the file."""
    end = min(rva + size, layout.size)
    if 0 <= rva < end:
        ranges.append((rva, end))


def _list_start(data: bytes, rva: int, size: int, entry: int) -> tuple[int, int]:
    """(first entry, count) of a u32-counted list, as reader's list_start reads it: old
    Breakpad macOS dumps pad the count to 8 bytes; a count is clipped to what the stream holds."""
    if size < 4:
        return rva, 0
    count = struct.unpack_from("<I", data, rva)[0]
    if size == 8 + count * entry:
        return rva + 8, count
    return rva + 4, min(count, max(0, (size - 4) // entry))


def _memory(layout: Layout, start: int, size: int, rva: int, stack_of: int | None = None) -> None:
    if size and 0 < rva < layout.size:
        layout.memory.append(MemoryRange(start, min(size, layout.size - rva), rva, stack_of))


def _threads(data: bytes, layout: Layout, rva: int, size: int) -> None:
    first, count = _list_start(data, rva, size, _THREAD.size)
    for index in range(count):
        (_id, _suspend, _class, _priority, _teb, stack_start, stack_size, stack_rva, context_size,
         context_rva) = _THREAD.unpack_from(data, first + index * _THREAD.size)
        _add(layout, layout.structure, context_rva, context_size)
        _memory(layout, stack_start, stack_size, stack_rva, index)


def _memory_list(data: bytes, layout: Layout, rva: int, size: int) -> None:
    first, count = _list_start(data, rva, size, _DESCRIPTOR.size)
    for index in range(count):
        _memory(layout, *_DESCRIPTOR.unpack_from(data, first + index * _DESCRIPTOR.size))


def _memory64_list(data: bytes, layout: Layout, rva: int, size: int) -> None:
    """MINIDUMP_MEMORY64_LIST: u64 count, u64 BaseRva, then (start, size) pairs whose bytes
    follow each other from BaseRva on."""
    if size < 16:
        return
    count, offset = struct.unpack_from("<QQ", data, rva)
    for index in range(min(count, (size - 16) // 16)):
        if offset >= layout.size:
            return
        start, length = _DESCRIPTOR64.unpack_from(data, rva + 16 + index * 16)
        _memory(layout, start, length, offset)
        offset += length
