"""The thread list, thread names and the memory lists (where thread stacks and other
captured memory live)."""

from __future__ import annotations

import struct

from symbolicator.minidump.bounded import Malformed
from symbolicator.minidump.context import _ContextReader
from symbolicator.minidump.model import DumpThread, Memory, MemoryRegion

_THREAD = struct.Struct("<IIIIQQIIII")  # MINIDUMP_THREAD, 48 bytes
_THREAD_ID = struct.Struct("<I44x")  # only the ThreadId of a MINIDUMP_THREAD
_MEMORY_DESCRIPTOR = struct.Struct("<QII")  # start, DataSize, Rva
_MEMORY64_DESCRIPTOR = struct.Struct("<QQ")  # start, DataSize
_THREAD_NAME = struct.Struct("<IQ")  # MINIDUMP_THREAD_NAME, packed: 12 bytes


class _ThreadStreams(_ContextReader):
    """Parsers of MINIDUMP_THREAD_LIST, MINIDUMP_THREAD_NAME_LIST, MINIDUMP_MEMORY_LIST and
    MINIDUMP_MEMORY64_LIST."""

    def thread_list(self, rva: int, size: int) -> None:
        """The first limits.threads threads, and the crashing one wherever it is listed
        (the exception stream is read before this one)."""
        start, listed = self.list_start(rva, size, _THREAD.size, "thread list")
        count = self.clip("threads", listed, self.limits.threads)
        for index in range(count):
            self.thread(start + index * _THREAD.size, index)
        crashing = self.exception.thread_id if self.exception else None
        if count < listed and crashing not in {t.thread_id for t in self.threads}:
            rest = self.data[start + count * _THREAD.size : start + listed * _THREAD.size]
            ids = [thread_id for (thread_id,) in _THREAD_ID.iter_unpack(rest)]
            if crashing in ids:
                index = count + ids.index(crashing)
                self.thread(start + index * _THREAD.size, index)
                self.crashing_past_limit = index
                self.cut["threads"] = (listed, count + 1)

    def thread(self, offset: int, index: int) -> None:
        """One MINIDUMP_THREAD (number index in the dump's list) with its context and stack."""
        (thread_id, _suspend, _class, _priority, _teb, stack_start, stack_size, stack_rva,
         context_size, context_rva) = _THREAD.unpack_from(self.data, offset)
        context = self.context(context_size, context_rva, f"thread {index} context")
        stack = self.memory_at(stack_start, stack_size, stack_rva, f"thread {index} stack")
        if stack is None and stack_size:
            self.missing_stacks[len(self.threads)] = stack_start
        self.threads.append(DumpThread(thread_id, context, stack))

    def thread_names_stream(self, rva: int, size: int) -> None:
        """The names of the threads read (the thread list is read before this stream), the
        last one listed for each; only those are decoded: a list naming one thread 200,000
        times decodes one name."""
        start, count = self.list_start(rva, size, _THREAD_NAME.size, "thread names")
        wanted = {t.thread_id for t in self.threads}
        names: dict[int, tuple[int, int]] = {}  # thread id -> (index in the list, name RVA)
        for index in range(count):
            thread_id, name_rva = _THREAD_NAME.unpack_from(self.data, start + index * _THREAD_NAME.size)
            if thread_id in wanted:
                names[thread_id] = (index, name_rva)
        for thread_id, (index, name_rva) in names.items():
            try:
                self.thread_names[thread_id] = self.utf16(name_rva, f"thread name {index}")
            except Malformed as exc:
                self.note(str(exc))

    def memory_at(self, start: int, size: int, rva: int, what: str) -> MemoryRegion | None:
        """The captured bytes of a MINIDUMP_MEMORY_DESCRIPTOR, clipped to the dump; None when
        there are none here (Windows writes RVA 0 for stacks that are in the memory list)."""
        if size == 0 or rva == 0 or rva >= self.size:
            return None
        if rva + size > self.size:
            self.note(f"{what}: {size} bytes at {rva:#x} run past the end of the dump; clipped")
            size = self.size - rva
        data = self.slices.get((rva, size))
        if data is None:  # a thread's stack is usually in the memory list too: copy it once
            try:
                data = self.slices[(rva, size)] = self.take(rva, size, what)
            except Malformed as exc:
                self.note(str(exc))
                return None
        if len(data) > len(self.regions.get(start, b"")):
            self.regions[start] = data
        return MemoryRegion(start, data)

    def memory_list(self, rva: int, size: int) -> None:
        start, count = self.list_start(rva, size, _MEMORY_DESCRIPTOR.size, "memory list")
        count = self.clip("memory regions", count, self.limits.memory_regions)
        for index in range(count):
            base, data_size, data_rva = _MEMORY_DESCRIPTOR.unpack_from(self.data, start + index * 16)
            self.memory_at(base, data_size, data_rva, f"memory range {index}")

    def memory64_list(self, rva: int, size: int) -> None:
        """MINIDUMP_MEMORY64_LIST: u64 count, u64 BaseRva, then (start, size) pairs whose bytes
        follow each other from BaseRva on."""
        self.need(size, 16, "memory64 list")
        count, offset = struct.unpack_from("<QQ", self.data, rva)
        fit = (size - 16) // 16
        if count > fit:
            self.note(f"memory64 list: count {count} does not fit the stream's {size} bytes; reading {fit}")
            count = fit
        count = self.clip("memory regions", count, self.limits.memory_regions)
        for index in range(count):
            base, data_size = _MEMORY64_DESCRIPTOR.unpack_from(self.data, rva + 16 + index * 16)
            if offset >= self.size:
                self.note(f"memory64 list: ranges from {index} on are past the end of the dump")
                return
            self.memory_at(base, data_size, offset, f"memory64 range {index}")
            offset += data_size


def _stack_from(memory: Memory, start: int) -> MemoryRegion | None:
    """A stack the thread list left without bytes (Windows writes RVA 0 when the stack is in
    the memory list), found in the memory lists by its start address."""
    region = memory.region_at(start)
    if region is None:
        return None
    return region if region.base == start else MemoryRegion(start, region.data[start - region.base :])
