"""Ingest's side of scrubbing (docs/privacy.md): the rules of a project, and attachments
scrubbed while they are copied to the blob store. The rules engine is triage/scrub.py.

- Annotations, Sentry events and feedback text: scrub_fields / scrub_value / scrub_text
  (triage/scrub.py) on the values, before they are stored.
- An attachment: a JSON document of at most JSON_BYTES is scrubbed as JSON (key rules and
  patterns); other text streams through triage/scrub_stream.TextScrubber (patterns only), in
  bounded memory; binary files (sniffed_binary) are stored as received.
"""

from __future__ import annotations

import hashlib
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import IO

from typing_extensions import Buffer

from server.ingest.upload_parser import UploadPart
from server.state import ServerState
from triage.scrub import Rules, RuleSet, load_rules, scrub_value
from triage.scrub_stream import TextScrubber

READ_CHUNK = 1024 * 1024
JSON_BYTES = 4 * 1024 * 1024  # a bigger JSON attachment is scrubbed as text (patterns only)
SNIFF_BYTES = 8192
# Files that are never text, whatever their content type says (the start of the file).
BINARY_MAGIC = (b"MDMP", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x1f\x8b", b"PK\x03\x04", b"\x28\xb5\x2f\xfd",
                b"%PDF", b"RIFF", b"\x7fELF", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf")
BINARY_TYPES = ("image/", "audio/", "video/", "font/", "application/zip", "application/gzip",
                "application/x-7z", "application/pdf", "application/x-dmp", "application/x-minidump")
TEXT_CONTROLS = b"\t\n\r\f\x1b"


@lru_cache(maxsize=8)
def _rule_set(path: Path) -> RuleSet:
    return load_rules(path)


def project_rules(state: ServerState, project_name: str | None) -> Rules:
    """The scrubbing rules of a project (CRASHD_SCRUB_RULES, read once per process).
    Raises ScrubRulesError (serve and worker check the file at start: server/cli/context.py)."""
    return _rule_set(Path(state.settings.scrub_rules)).for_project(project_name)


def sniffed_binary(head: bytes, content_type: str | None) -> bool:
    """True for a file to store as received: a known binary magic, a binary content type,
    a NUL byte or more than 10% control characters in its first bytes (UTF-16 text too:
    its NULs make it binary here; docs/privacy.md)."""
    kind = (content_type or "").strip().lower()
    if head.startswith(BINARY_MAGIC) or kind.startswith(BINARY_TYPES) or b"\x00" in head:
        return True
    controls = sum(1 for byte in head if byte < 32 and byte not in TEXT_CONTROLS)
    return controls * 10 > len(head)


class ScrubbedReader(io.RawIOBase):
    """A text file read through a TextScrubber; size and sha256 are those of what was read."""

    def __init__(self, source: IO[bytes], scrubber: TextScrubber) -> None:
        super().__init__()
        self.source, self.scrubber = source, scrubber
        self.pending = bytearray()
        self.done = False
        self.size = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int:
        while not self.pending and not self.done:
            data = self.source.read(READ_CHUNK)
            if data:
                self.pending += self.scrubber.feed(data)
            else:
                self.pending += self.scrubber.finish()
                self.done = True
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self.pending))
        view[:n] = self.pending[:n]
        self.digest.update(self.pending[:n])
        del self.pending[:n]
        self.size += n
        return n

    def as_file(self) -> IO[bytes]:
        """This reader, buffered, as the file put_file takes."""
        return io.BufferedReader(self, READ_CHUNK)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


def scrubbed_reader(rules: Rules, part: UploadPart) -> ScrubbedReader | None:
    """What to store for an attachment part: a reader of its scrubbed text, or None for a
    binary part (store part.file as it is). The part's file is read from its start."""
    if sniffed_binary(part.head(SNIFF_BYTES), part.content_type):
        return None
    if part.size <= JSON_BYTES and part.head(64).lstrip()[:1] in (b"{", b"["):
        document = _scrubbed_json(rules, part)
        if document is not None:
            return ScrubbedReader(io.BytesIO(document), TextScrubber(Rules()))
    part.file.seek(0)
    return ScrubbedReader(part.file, TextScrubber(rules))


def _scrubbed_json(rules: Rules, part: UploadPart) -> bytes | None:
    """The part as scrubbed JSON (as received when nothing is filtered); None when it is not
    a JSON object or list."""
    part.file.seek(0)
    raw = part.file.read(JSON_BYTES + 1)
    part.file.seek(0)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, (dict, list)):
        return None
    scrubbed = scrub_value(rules, document)
    return raw if scrubbed == document else json.dumps(scrubbed, separators=(",", ":")).encode()
