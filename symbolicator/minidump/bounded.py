"""Bounded reads of one dump's bytes, shared by every stream parser.

``_BoundedReader`` holds one pass's state (the partial result, the notes, the work budget)
and the primitives that check every offset against the dump and charge every copy to the
budget, so that a hostile dump costs at most a small multiple of its size. ``Malformed`` is
what the parsers raise for a structure that does not fit.
"""

from __future__ import annotations

import struct

from schemas.stack import Module
from symbolicator.limits import DEFAULT_LIMITS, Limits
from symbolicator.minidump.model import DumpThread, ExceptionInfo, Memory, Minidump, SystemInfo

_U32 = struct.Struct("<I")

MAX_NOTES = 64  # notes kept per dump; the rest are counted
MAX_STRING = 1 << 16  # bytes read of one string (paths, names, annotations)
MAX_CONTEXT = 2048  # bytes read of one CPU context (the registers are in the first 272)
MAX_CODEVIEW = 4096  # bytes read of one CodeView record (a GUID and a path, or a build id)
WORK_FACTOR = 8  # bytes copied or decoded, at most, per byte of dump


class Malformed(Exception):
    """A structure that does not fit in the dump. read_minidump turns it into a note."""


def what_failed(exc: Exception) -> str:
    """A note's words for a parse error: a Malformed says what did not fit where in our own
    words; struct's errors ("unpack_from requires a buffer of at least 8 bytes") are Python's,
    so a note says what they mean instead (processing notes never carry exception text)."""
    return str(exc) if isinstance(exc, Malformed) else "a record runs past the end of its data"


class _BoundedReader:
    """The state of one pass over one dump and the bounded primitives the stream parsers
    (the mixins in this package, joined in reader._Reader) read it with."""

    def __init__(self, data: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
        self.data = data
        self.size = len(data)
        self.limits = limits
        self.notes: list[str] = []
        self.cut: dict[str, tuple[int, int]] = {}  # list -> (entries listed, entries read)
        self.system = SystemInfo(os="unknown", os_ver=None, cpu_arch="unknown")
        self.exception: ExceptionInfo | None = None
        self.threads: list[DumpThread] = []
        self.modules: list[Module] = []
        self.unloaded: list[Module] = []
        self.regions: dict[int, bytes] = {}  # start address -> captured bytes (the longest)
        self.slices: dict[tuple[int, int], bytes] = {}  # (rva, size) -> bytes, copied once
        self.thread_names: dict[int, str] = {}
        self.missing_stacks: dict[int, int] = {}  # thread index -> stack start address
        self.crashing_past_limit: int | None = None  # its index in the dump's thread list
        self.annotations_seen = (0, 0)  # Crashpad annotations (listed, read), against limits.annotations
        self.budget = WORK_FACTOR * len(data) + (1 << 20)
        self.dropped_notes = 0
        self.dump = Minidump(self.system, None, [], [], Memory([]))

    # -- bounded primitives

    def note(self, text: str) -> None:
        """Record a problem; a hostile dump gets MAX_NOTES of them and a count of the rest."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.dropped_notes += 1

    def clip(self, what: str, count: int, limit: int) -> int:
        """count, or limit when the list is longer: the cut is recorded in ``cut`` (the
        report's ``cut`` and a note say what was left out; Limits says why)."""
        if count <= limit:
            return count
        listed, read = self.cut.get(what, (0, 0))
        self.cut[what] = (listed + count, read + limit)
        return limit

    def check(self, rva: int, size: int, what: str) -> None:
        """Raise Malformed unless size bytes at rva are inside the dump."""
        if rva < 0 or size < 0 or rva + size > self.size:
            raise Malformed(f"{what}: {size} bytes at {rva:#x} run past the end of the dump ({self.size} bytes)")

    def take(self, rva: int, size: int, what: str) -> bytes:
        """A copy of size bytes at rva, charged to the work budget: structures may point at
        the same bytes many times (a thousand modules naming one huge "string"), and the
        budget keeps the total copied and decoded linear in the dump's size."""
        self.check(rva, size, what)
        self.budget -= size
        if self.budget < 0:
            raise Malformed(f"{what}: the dump refers to more bytes than {WORK_FACTOR}x its size; reading stopped")
        return self.data[rva : rva + size]

    def u32(self, offset: int, what: str) -> int:
        self.check(offset, 4, what)
        return _U32.unpack_from(self.data, offset)[0]

    def utf16(self, rva: int, what: str) -> str:
        """A MINIDUMP_STRING: u32 length in bytes, then UTF-16LE (at most MAX_STRING bytes)."""
        length = min(self.u32(rva, what), MAX_STRING) & ~1
        return self.take(rva + 4, length, what).decode("utf-16-le", "replace")

    def utf8(self, rva: int, what: str) -> str:
        """A Crashpad MinidumpUTF8String: u32 length, then UTF-8 (and a NUL not counted)."""
        length = min(self.u32(rva, what), MAX_STRING)
        return self.take(rva + 4, length, what).decode("utf-8", "replace")

    def need(self, size: int, needed: int, what: str) -> None:
        """Raise Malformed when a stream is shorter than its fixed structure."""
        if size < needed:
            raise Malformed(f"{what}: {size} bytes, {needed} needed")

    def list_start(self, rva: int, size: int, entry: int, what: str) -> tuple[int, int]:
        """(offset of the first entry, entry count) of a u32-counted list stream.

        Old Breakpad macOS dumps pad the count to 8 bytes: a module list of 43 entries is
        8 + 43 * 108 = 4652 bytes, not 4648 (mac-x64-symbolic-mini). A count the stream cannot
        hold (fuzzed dumps) is clipped to the entries that fit."""
        count = self.u32(rva, what)
        if rva + size > self.size:  # a nested location (Crashpad) is not clipped by the directory
            self.note(f"{what}: {size} bytes at {rva:#x} run past the end of the dump; clipped")
            size = self.size - rva
        if size == 4 + count * entry:
            return rva + 4, count
        if size == 8 + count * entry:
            return rva + 8, count
        fit = max(0, (size - 4) // entry)
        self.note(f"{what}: count {count} does not fit the stream's {size} bytes; reading {min(count, fit)}")
        return rva + 4, min(count, fit)
