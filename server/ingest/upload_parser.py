"""Read a crash upload body: stream, decompress under a cap, split multipart into parts.

Clients send (all seen from real handlers):
- Crashpad: ``multipart/form-data``, ``Transfer-Encoding: chunked`` and by default the whole
  body gzipped with ``Content-Encoding: gzip``; annotations are form fields.
- Breakpad ``minidump_upload``/``HTTPUpload``: plain multipart with a Content-Length.
- sentry-native: multipart with extra parts (``__sentry-event``), or a raw body
  ``application/octet-stream``.
Every byte is counted as it arrives, so a gzip bomb stops at the cap instead of filling memory
or disk.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, AsyncIterator, Iterator

import brotli
import zstandard
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from server.ingest.discard import MalformedUpload, SpoolFull, UploadTooLarge
from storage.blobs import in_memory

if TYPE_CHECKING:  # python-multipart defines its callbacks' TypedDict for type checkers only
    from python_multipart.multipart import MultipartCallbacks

MINIDUMP_FIELD = "upload_file_minidump"
MINIDUMP_MAGIC = b"MDMP"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
OUT_CHUNK = 256 * 1024
SPOOL_IN_MEMORY = 1024 * 1024
MAX_FIELD_CHARS = 64 * 1024  # a longer text field is kept as an attachment instead
MAX_JSON_DEPTH = 100  # deeper JSON is refused: flattening it would exhaust Python's stack
MAX_PREAMBLE = 64 * 1024  # text allowed before a multipart body's first boundary
MAX_PART_HEADERS = 32  # headers of one multipart part
# A spool write failing with these means the spool folder's disk is full, not a bad upload.
SPOOL_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass
class UploadPart:
    """One file from an upload, spooled to memory or a temp file, with its digest (digest:
    its sha256 when known; else sha256 reads the file for it once)."""

    name: str
    filename: str | None
    content_type: str | None
    file: IO[bytes]
    size: int = 0
    digest: str | None = None

    @property
    def sha256(self) -> str:
        """The file's SHA-256 (hex). A part spooled in memory is hashed here, in one call over
        its buffer, when first asked: in the thread that persists it, not on the event loop
        as it arrives (SpoolWriter), where each chunk's update let the other threads take the
        interpreter and the loop wait to get it back (bench/ingest.py). The file position
        is kept."""
        if self.digest is None:
            inner = in_memory(self.file)
            if inner is not None:
                with inner.getbuffer() as view:
                    self.digest = hashlib.sha256(view).hexdigest()
            else:
                position = self.file.tell()
                self.file.seek(0)
                self.digest = hashlib.file_digest(self.file, "sha256").hexdigest()  # type: ignore[arg-type]
                self.file.seek(position)
        return self.digest

    def head(self, n: int = 4) -> bytes:
        """The first n bytes (the file position is restored to 0)."""
        self.file.seek(0)
        data = self.file.read(n)
        self.file.seek(0)
        return data

    def close(self) -> None:
        self.file.close()


@dataclass
class ParsedUpload:
    """The minidump, other files and text annotations of one upload."""

    minidump: UploadPart
    attachments: list[UploadPart] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        self.minidump.close()
        for part in self.attachments:
            part.close()


class SpoolWriter:
    """Write into a spooled temp file while counting against a shared budget. What stays in
    memory is hashed when its digest is first asked for (UploadPart.sha256); a part that
    rolls over to disk is hashed as it is written, from the bytes it had in memory on."""

    def __init__(self, tmp_dir: Path | None, budget: "Budget") -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY, dir=None if tmp_dir is None else str(tmp_dir)
        )
        self.digest: Any = None  # hashlib's sha256, from the write that rolls over
        self.size = 0
        self.budget = budget

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.budget.spend(len(data))
        if self.digest is None and self.size + len(data) > SPOOL_IN_MEMORY:
            self.digest = hashlib.sha256()
            held = in_memory(self.file)
            assert held is not None  # it rolls over with this write, not before
            with held.getbuffer() as view:
                self.digest.update(view)  # what it had in memory
        if self.digest is not None:
            self.digest.update(data)
        self.size += len(data)
        try:
            self.file.write(data)
        except OSError as exc:  # the write that rolls past SPOOL_IN_MEMORY goes to disk
            if exc.errno in SPOOL_FULL_ERRNOS:
                raise SpoolFull() from exc
            raise

    def finish(self, name: str, filename: str | None, content_type: str | None) -> UploadPart:
        self.file.seek(0)
        return UploadPart(name, filename, content_type, self.file, self.size,
                          None if self.digest is None else self.digest.hexdigest())


@dataclass
class Budget:
    """Bytes left before ``too_large_decompressed``; shared by the body and every part."""

    left: int

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise UploadTooLarge("too_large_decompressed", "decompressed upload exceeds the limit")


# -- decompression --------------------------------------------------------------------------


class Decoder:
    """Incremental decoder for one Content-Encoding; output comes in bounded chunks."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._trailing = False
        if encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        elif encoding == "zstd":
            self._zstd = zstandard.ZstdDecompressor().decompressobj()
        elif encoding == "br":  # sentry-sdk's default when the brotli module is installed
            self._br = brotli.Decompressor()
        elif encoding not in ("", "identity"):
            raise MalformedUpload("unsupported_encoding", f"Content-Encoding {encoding!r}")

    @property
    def reason(self) -> str:
        return {"zstd": "bad_zstd", "br": "bad_brotli"}.get(self.encoding, "bad_gzip")

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decode data, yielding at most OUT_CHUNK bytes at a time. Raises MalformedUpload."""
        try:
            if self.encoding in ("", "identity"):
                yield data
            elif self.encoding == "zstd":
                # zstandard's decompressobj has no output bound per call. An RLE block turns
                # 4 input bytes into 128 KiB, so 512-byte slices bound one call to ~16 MiB
                # before the budget check sees it.
                for i in range(0, len(data), 512):
                    yield self._zstd.decompress(data[i : i + 512])
            elif self.encoding == "br":
                yield from self._unbrotli(data)
            else:
                yield from self._inflate(data)
        except (zlib.error, zstandard.ZstdError, brotli.error) as exc:
            raise MalformedUpload(self.reason, str(exc)) from exc

    def _unbrotli(self, data: bytes) -> Iterator[bytes]:
        # output_buffer_limit bounds each call; the rest comes from calls with no input.
        # A call that fills its buffer may hold more output: drain until a call gives none.
        out = self._br.process(data, output_buffer_limit=OUT_CHUNK)
        while out:
            yield out
            out = self._br.process(b"", output_buffer_limit=OUT_CHUNK)

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        while data and not self._trailing:
            yield self._z.decompress(data, OUT_CHUNK)
            while self._z.unconsumed_tail:
                yield self._z.decompress(self._z.unconsumed_tail, OUT_CHUNK)
            data = b""
            if self._z.eof and self._z.unused_data:
                data = self._z.unused_data
                if self.encoding != "deflate" and data[:2] in (GZIP_MAGIC, GZIP_MAGIC[:1]):
                    # gzip allows members back to back (`cat a.gz b.gz`): start the next one.
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    # Like gzip(1): "decompression OK, trailing garbage ignored".
                    self._trailing = True

    def finish(self) -> None:
        """Raise MalformedUpload when the compressed stream ended early."""
        if self.encoding in ("gzip", "x-gzip", "deflate") and not self._z.eof:
            raise MalformedUpload(self.reason, "compressed stream is truncated")
        if self.encoding == "br" and not self._br.is_finished():
            raise MalformedUpload(self.reason, "brotli stream is truncated")


async def decoded_body(
    chunks: AsyncIterator[bytes], *, content_encoding: str, max_upload_bytes: int
) -> AsyncIterator[bytes]:
    """The request body decoded per Content-Encoding (or sniffed gzip), counted against caps."""
    received = 0
    decoder: Decoder | None = Decoder(content_encoding) if content_encoding else None
    head = b""  # without a Content-Encoding, the first bytes decide (gzip magic or not)
    async for chunk in chunks:
        if not chunk:
            continue
        received += len(chunk)
        if received > max_upload_bytes:
            raise UploadTooLarge("too_large", "upload exceeds the limit")
        if decoder is None:
            # Some Breakpad-era clients gzip the body without saying so: sniff the magic.
            head += chunk
            if len(head) < len(GZIP_MAGIC):
                continue
            decoder = Decoder("gzip" if head.startswith(GZIP_MAGIC) else "identity")
            chunk, head = head, b""
        for out in decoder.feed(chunk):
            if out:
                yield out
    if decoder is None and head:
        decoder = Decoder("identity")
        yield head
    if decoder is not None:
        decoder.finish()


async def read_whole_body(request: Any, *, max_upload_bytes: int, max_decompressed_bytes: int,
                          over_reason: str = "too_large") -> bytearray:
    """A small JSON-ish body (sessions, envelopes) decoded per Content-Encoding, whole, in
    one copy; the declared length and the decoded size are held to the caps.
    Raises MalformedUpload, UploadTooLarge ("too_large" or over_reason once decoded)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_upload_bytes:
        raise UploadTooLarge("too_large", f"Content-Length {declared}")
    body = bytearray()
    async for chunk in decoded_body(request.stream(), max_upload_bytes=max_upload_bytes,
                                    content_encoding=request.headers.get("content-encoding", "").strip().lower()):
        body += chunk
        if len(body) > max_decompressed_bytes:
            raise UploadTooLarge(over_reason, "decompressed body exceeds the limit")
    return body


def decompress_part(part: UploadPart, encoding: str, tmp_dir: Path | None, budget: Budget) -> UploadPart:
    """Replace a gzip- or zstd-compressed part by its decompressed content."""
    writer = SpoolWriter(tmp_dir, budget)
    part.file.seek(0)
    if encoding == "zstd":
        # stream_reader bounds each read's output, unlike decompressobj.
        try:
            with zstandard.ZstdDecompressor().stream_reader(part.file, closefd=False) as reader:
                while chunk := reader.read(OUT_CHUNK):
                    writer.write(chunk)
        except zstandard.ZstdError as exc:
            raise MalformedUpload("bad_zstd", str(exc)) from exc
        if writer.size == 0:
            raise MalformedUpload("bad_zstd", "empty zstd frame")
    else:
        decoder = Decoder(encoding)
        while chunk := part.file.read(OUT_CHUNK):
            for out in decoder.feed(chunk):
                writer.write(out)
        decoder.finish()
    part.close()
    return writer.finish(part.name, part.filename, part.content_type)


# -- multipart ------------------------------------------------------------------------------


class _PartCollector:
    """python-multipart callbacks that spool each part and record its headers."""

    def __init__(self, tmp_dir: Path | None, budget: Budget) -> None:
        self.tmp_dir = tmp_dir
        self.budget = budget
        self.parts: list[tuple[dict[str, str], UploadPart]] = []
        self.ended = False
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self._writer: SpoolWriter | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._append("_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._append("_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self._writer.write(memoryview(d)[s:e]) if self._writer else None,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _append(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def _begin(self) -> None:
        self._headers = {}
        self._writer = None

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("utf-8", "replace").strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        self._writer = SpoolWriter(self.tmp_dir, self.budget)

    def _part_end(self) -> None:
        if self._writer is None:
            return
        name, filename, content_type = part_names(self._headers)
        self.parts.append((self._headers, self._writer.finish(name, filename, content_type)))
        self._writer = None

    def _end(self) -> None:
        self.ended = True

    def close(self) -> None:
        """Close every spooled part, including one still being written."""
        close_all(self.parts)
        if self._writer is not None:
            self._writer.file.close()


def part_names(headers: dict[str, str]) -> tuple[str, str | None, str | None]:
    """A part's field name, file name and content type, from its (lower-case) headers."""
    return (*_disposition_names(headers.get("content-disposition", "")), headers.get("content-type"))


@functools.lru_cache(maxsize=1024)
def _disposition_names(disposition: str) -> tuple[str, str | None]:
    """(name, filename) of a Content-Disposition; remembered, as a client sends the same
    fields with every upload and python-multipart's parse_options_header is slow Python."""
    # As UTF-8 bytes: parse_options_header encodes a str as latin-1, which fails on a field
    # name such as "名前" (RFC 7578 clients send UTF-8) and mangled "é" in file names.
    _, params = parse_options_header(disposition.encode("utf-8"))
    raw_filename = params.get(b"filename")
    return (params.get(b"name", b"").decode("utf-8", "replace"),
            raw_filename.decode("utf-8", "replace") if raw_filename is not None else None)


class _Multipart:
    """python-multipart's parser over a _PartCollector: feed chunks, then end() for the parts.
    Raises MalformedUpload; the parts spooled so far are closed when it raises."""

    def __init__(self, boundary: bytes, tmp_dir: Path | None, budget: Budget) -> None:
        self.collector = _PartCollector(tmp_dir, budget)
        try:  # python-multipart refuses a boundary over 256 characters (RFC 2046 allows 70)
            self.parser = MultipartParser(boundary, self.collector.callbacks(), max_header_count=MAX_PART_HEADERS)
        except FormParserError as exc:
            raise MalformedUpload("bad_multipart", str(exc)) from exc

    def feed(self, chunk: bytes | bytearray) -> None:
        self._guarded(self.parser.write, chunk)

    def end(self) -> list[tuple[dict[str, str], UploadPart]]:
        self._guarded(self.parser.finalize)
        if not self.collector.ended:
            self.collector.close()
            raise MalformedUpload("bad_multipart", "multipart body ended before its closing boundary")
        return self.collector.parts

    def close(self) -> None:
        self.collector.close()

    def _guarded(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except FormParserError as exc:
            self.collector.close()
            raise MalformedUpload("bad_multipart", str(exc)) from exc
        except BaseException:
            self.collector.close()
            raise


async def parse_multipart(
    body: AsyncIterator[bytes], *, boundary: bytes, tmp_dir: Path | None, budget: Budget
) -> list[tuple[dict[str, str], UploadPart]]:
    """Split a multipart body into (headers, part) pairs. Raises MalformedUpload."""
    multipart = _Multipart(boundary, tmp_dir, budget)
    try:
        async for chunk in _after_preamble(body, boundary):
            multipart.feed(chunk)
    except BaseException:
        multipart.close()
        raise
    return multipart.end()


def parse_multipart_bytes(data: bytes | bytearray, *, boundary: bytes, tmp_dir: Path | None,
                          budget: Budget) -> list[tuple[dict[str, str], UploadPart]]:
    """parse_multipart over a body held whole. Raises MalformedUpload."""
    multipart = _Multipart(boundary, tmp_dir, budget)
    start = _preamble_end(data, boundary, whole=True)
    multipart.feed(data[start:] if start else data)
    return multipart.end()


async def _after_preamble(body: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[bytes]:
    """body from its first boundary on. RFC 2046 allows a preamble before it (``This is a
    multi-part message in MIME format.\r\n--b``), which python-multipart refuses.
    Raises MalformedUpload when no boundary comes within MAX_PREAMBLE bytes."""
    head: bytes | None = b""
    async for chunk in body:
        if head is None:
            yield chunk
            continue
        head += chunk
        start = _preamble_end(head, boundary, whole=False)
        if start is not None:
            yield head[start:]
            head = None
    if head:  # no boundary at all: the parser says so
        yield head


def _preamble_end(head: bytes | bytearray, boundary: bytes, *, whole: bool) -> int | None:
    """Where the first boundary starts in head (0 without a preamble); None while it may
    still come (not whole: more of the body follows), else 0 (the parser refuses the body).
    Raises MalformedUpload when no boundary comes within MAX_PREAMBLE bytes."""
    delimiter = b"\n--" + boundary  # the CRLF before it ends the preamble
    if head.startswith(delimiter[1:]):
        return 0
    found = head.find(delimiter, 0, MAX_PREAMBLE + len(delimiter))
    if found >= 0:
        return found + 1
    if len(head) >= MAX_PREAMBLE + len(delimiter):
        raise MalformedUpload("bad_multipart", "no boundary after the preamble")
    return 0 if whole else None


def close_all(parts: list[tuple[dict[str, str], UploadPart]]) -> None:
    """Close the file of every (headers, part) pair."""
    for _, part in parts:
        part.close()


# -- assembling an upload -------------------------------------------------------------------


def flatten_json(value: object, prefix: str, out: dict[str, str]) -> None:
    """Flatten JSON into dotted string annotations: {"user": {"id": 1}} -> user.id = "1"."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten_json(inner, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, str):
        out[prefix] = value
    elif value is None:
        out[prefix] = ""
    elif isinstance(value, (bool, int, float)):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = json.dumps(value, separators=(",", ":"))


def load_json_object(data: bytes, what: str) -> dict[str, object]:
    """Parse data as a JSON object at most MAX_JSON_DEPTH deep. Raises
    MalformedUpload("invalid_json")."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: ~1000 deep
        raise MalformedUpload("invalid_json", f"{what}: {str(exc)[:200]}") from exc
    if not isinstance(value, dict):
        raise MalformedUpload("invalid_json", f"{what}: expected a JSON object")
    if too_deep(value):
        raise MalformedUpload("invalid_json", f"{what}: nested deeper than {MAX_JSON_DEPTH}")
    return value


def too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON-like value (dicts, lists, tuples) nests deeper than limit. Iterative, so
    that any depth a parser returned can be checked."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        inner = node.values() if isinstance(node, dict) else node if isinstance(node, (list, tuple)) else None
        if inner is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in inner)
    return False


def assemble(
    parts: list[tuple[dict[str, str], UploadPart]], *, tmp_dir: Path | None, budget: Budget
) -> ParsedUpload:
    """Sort parts into the minidump, attachments and annotations. Raises MalformedUpload."""
    minidump: UploadPart | None = None
    attachments: list[UploadPart] = []
    annotations: dict[str, str] = {}
    try:
        for headers, part in parts:
            if part.name == MINIDUMP_FIELD and minidump is None:
                minidump = prepare_minidump(part, headers.get("content-encoding", ""), tmp_dir, budget)
            elif part.name == "extra" and _looks_like_json(part):
                flatten_json(load_json_object(part.file.read(), "extra"), "", annotations)
                part.close()
            elif part.name == "sentry" and part.filename is None:
                flatten_json(load_json_object(part.file.read(), "sentry"), "sentry", annotations)
                part.close()
            elif part.filename is None and part.size <= MAX_FIELD_CHARS:
                annotations[part.name] = part.file.read().decode("utf-8", "replace")
                part.close()
            else:
                attachments.append(part)
    except BaseException:
        close_all(parts)
        raise
    if minidump is None:
        for part in attachments:
            part.close()
        raise MalformedUpload("no_minidump", f"no {MINIDUMP_FIELD} part")
    return ParsedUpload(minidump, attachments, annotations)


def _looks_like_json(part: UploadPart) -> bool:
    # Firefox/Socorro send "extra" as a JSON file; anything else named extra is a plain field.
    return (part.content_type or "").startswith("application/json") or part.head(1) == b"{"


def prepare_minidump(part: UploadPart, encoding: str, tmp_dir: Path | None, budget: Budget) -> UploadPart:
    """Decompress a gzip/zstd minidump part (by header or magic) and check the MDMP magic."""
    head = part.head(4)
    if encoding.lower() in ("gzip", "x-gzip") or head.startswith(GZIP_MAGIC):
        part = decompress_part(part, "gzip", tmp_dir, budget)
    elif encoding.lower() == "zstd" or head == ZSTD_MAGIC:
        part = decompress_part(part, "zstd", tmp_dir, budget)
    if part.size == 0:
        raise MalformedUpload("no_minidump", "the minidump part is empty")
    if part.head(4) != MINIDUMP_MAGIC:
        raise MalformedUpload("not_minidump", "the file does not start with MDMP")
    return part
