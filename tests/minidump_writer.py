"""A small minidump writer: builds valid dumps stream by stream for tests.

Layout (MSDN MINIDUMP_HEADER): 'MDMP', version, stream count, directory RVA, checksum,
timestamp, flags; then a directory of (type, size, rva) and the stream bodies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MINIDUMP_SIGNATURE = 0x504D444D  # b"MDMP" little-endian
MINIDUMP_VERSION = 0xA793
SYSTEM_INFO_STREAM = 7
ARCH_AMD64 = 9
PLATFORM_LINUX = 0x8201


@dataclass
class MinidumpWriter:
    """Collects streams and serializes them into a minidump."""

    timestamp: int = 1_700_000_000
    streams: list[tuple[int, bytes]] = field(default_factory=list)

    def add_stream(self, stream_type: int, data: bytes) -> "MinidumpWriter":
        self.streams.append((stream_type, data))
        return self

    def add_system_info(self, arch: int = ARCH_AMD64, platform: int = PLATFORM_LINUX, cpus: int = 4) -> "MinidumpWriter":
        body = struct.pack("<HHHBBIIIIIHH", arch, 6, 0, cpus, 1, 6, 1, 0, platform, 0, 0, 0) + b"\0" * 24
        return self.add_stream(SYSTEM_INFO_STREAM, body)

    def build(self) -> bytes:
        header_size, entry_size = 32, 12
        directory_rva = header_size
        offset = directory_rva + entry_size * len(self.streams)
        directory, payload = bytearray(), bytearray()
        for stream_type, data in self.streams:
            directory += struct.pack("<III", stream_type, len(data), offset + len(payload))
            payload += data
            payload += b"\0" * (-len(payload) % 4)
        header = struct.pack("<IIIIIIQ", MINIDUMP_SIGNATURE, MINIDUMP_VERSION, len(self.streams),
                             directory_rva, 0, self.timestamp, 0)
        return header + bytes(directory) + bytes(payload)


def small_dump(tag: int = 0, size: int = 0) -> bytes:
    """A valid little dump; tag changes its bytes (distinct crashes), size pads it."""
    writer = MinidumpWriter(timestamp=1_700_000_000 + tag).add_system_info()
    if size:
        writer.add_stream(0x4767_0000 + 0x100, b"\xab" * size)  # an unknown stream, as padding
    return writer.build()
