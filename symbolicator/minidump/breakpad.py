"""Breakpad's own streams: Breakpad info, the assertion, and the Linux text streams
(/proc files, lsb-release) of Breakpad's Linux dumps."""

from __future__ import annotations

import re
import struct

from symbolicator.minidump.bounded import _BoundedReader

_MAPS_RANGE = re.compile(r"^([0-9a-fA-F]{1,16})-([0-9a-fA-F]{1,16})\s")


class _BreakpadStreams(_BoundedReader):
    """Parsers of MDRawBreakpadInfo, MDRawAssertionInfo and the Linux text streams."""

    def breakpad_info(self, rva: int, size: int) -> None:
        # MDRawBreakpadInfo: validity bits (1: dump thread id, 2: requesting thread id), ids
        self.need(size, 12, "breakpad info")
        validity, dump_tid, requesting_tid = struct.unpack_from("<III", self.data, rva)
        self.dump.dump_thread_id = dump_tid if validity & 1 else None
        self.dump.requesting_thread_id = requesting_tid if validity & 2 else None

    def assertion_info(self, rva: int, size: int) -> None:
        """MDRawAssertionInfo: expression, function, file (128 UTF-16 units each), line, type.
        Worded as Breakpad's minidump_stackwalk prints it; an all-empty record is no assertion."""
        self.need(size, 776, "assertion info")
        expression, function, file = (self.take(rva + i * 256, 256, "assertion").decode("utf-16-le", "replace")
                                      .split("\0", 1)[0] for i in range(3))
        line, kind = struct.unpack_from("<II", self.data, rva + 768)
        if not (expression or function or file or line or kind):
            return
        text = {1: "Invalid parameter passed to library function", 2: "Pure virtual function called"}.get(
            kind, f"Unknown assertion type {kind:#010x}")
        text += f" {expression}" if expression else ""
        text += f" in function {function}" if function else ""
        text += f", in file {file}" if file else ""
        text += f" at line {line}" if line else ""
        self.dump.assertion = text

    def linux_text(self, rva: int, size: int, key: str) -> None:
        text = self.take(rva, size, f"linux {key}").decode("utf-8", "replace")
        if key in ("cmdline", "environ"):
            text = text.rstrip("\0").replace("\0", " " if key == "cmdline" else "\n")
        elif key == "maps":
            text = self.valid_maps(text)
        if text:
            self.dump.linux[key] = text

    def valid_maps(self, text: str) -> str:
        """The lines of /proc/<pid>/maps that start with a start-end address range, start <= end.
        Others are dropped with a note (a fuzzed dump: malformed-rust-invalid-range)."""
        lines = [line for line in text.splitlines() if line.strip()]
        valid = []
        for line in lines:
            match = _MAPS_RANGE.match(line)
            if match and int(match.group(1), 16) <= int(match.group(2), 16):
                valid.append(line)
        if len(valid) < len(lines):
            self.note(f"linux maps: invalid range on {len(lines) - len(valid)} of {len(lines)} lines; dropped")
        return "\n".join(valid)


def _status_pid(status: str) -> int | None:
    """The Pid: line of /proc/<pid>/status (Breakpad Linux dumps have no misc info stream)."""
    match = re.search(r"^Pid:\s*(\d+)", status, re.MULTILINE)
    return int(match.group(1)) if match else None
