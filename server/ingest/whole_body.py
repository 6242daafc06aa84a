"""A crash upload's multipart body read whole into memory, then split in one pass.

Most crash uploads are a few hundred KB (Mozilla's median minidump is about 400 KB): such a
body is read into one buffer on the event loop (appending a chunk costs next to nothing) and
split off it, in the thread that persists the upload, with ``bytes.find`` over the buffer.
python-multipart's parser made ten Python callbacks per part and spooled each part's data
chunk by chunk on the event loop (bench/ingest.py, docs/benchmarks.md).

Only the plain form is split here: the body starts with its first boundary, each part has
well-formed ``Name: value`` headers, the boundary is at most 70 characters, each delimiter
is followed by CRLF or by the closing ``--``. Anything else (a preamble, transport padding
after a boundary, folded or odd headers, a delimiter that turns out to be part data, a
missing closing boundary) goes to python-multipart's parser over the same bytes (upload_parser.parse_multipart_bytes), which
accepts or refuses it exactly as it does a streamed body. A body over IN_MEMORY_BODY is
streamed through that parser as it arrives and spooled to disk part by part.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from python_multipart.multipart import TOKEN_CHARS

from server.ingest.upload_parser import (
    MAX_PART_HEADERS,
    Budget,
    UploadPart,
    close_all,
    parse_multipart,
    parse_multipart_bytes,
    part_names,
)

IN_MEMORY_BODY = 2 * 1024 * 1024  # a longer (decoded) body is streamed and spooled instead
MAX_BOUNDARY = 70  # RFC 2046's limit; python-multipart judges a longer one (it refuses over 256)
MAX_HEADER_LINE = 4096  # python-multipart refuses a header line over 4,224 bytes
Parts = list[tuple[dict[str, str], UploadPart]]


@dataclass
class WholeBody:
    """A multipart body held whole and its boundary: split_body makes it parts."""

    data: bytes
    boundary: bytes


async def read_multipart(body: AsyncIterator[bytes], *, boundary: bytes, tmp_dir: Path | None,
                         budget: Budget) -> Parts | WholeBody:
    """A body of up to IN_MEMORY_BODY bytes as a WholeBody (split_body splits it); a longer
    one parsed as it streams in (upload_parser.parse_multipart). Raises MalformedUpload,
    UploadTooLarge."""
    chunks: list[bytes] = []  # joined once at the end (a bytearray grown chunk by chunk took
    size = 0                  # 190 us against the join's 10 us in a micro bench; no change end to end)
    async for chunk in body:
        chunks.append(chunk)
        size += len(chunk)
        if size > IN_MEMORY_BODY:
            return await parse_multipart(_resumed(b"".join(chunks), body), boundary=boundary, tmp_dir=tmp_dir,
                                         budget=budget)
    return WholeBody(b"".join(chunks), boundary)


async def _resumed(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in rest:
        yield chunk


def split_body(whole: WholeBody, *, tmp_dir: Path | None, budget: Budget) -> Parts:
    """whole's (headers, part) pairs, each part's bytes in memory; the parts' sizes are
    spent from budget. Raises MalformedUpload, UploadTooLarge (the parts made so far are
    closed)."""
    spans = plain_parts(whole.data, whole.boundary)
    if spans is None:
        return parse_multipart_bytes(whole.data, boundary=whole.boundary, tmp_dir=tmp_dir, budget=budget)
    parts: Parts = []
    with memoryview(whole.data) as view:
        for headers, start, end in spans:
            try:
                budget.spend(end - start)
            except BaseException:
                close_all(parts)
                raise
            name, filename, content_type = part_names(headers)
            parts.append((headers, UploadPart(name, filename, content_type, io.BytesIO(view[start:end]),
                                              end - start)))
    return parts


def plain_parts(data: bytes | bytearray, boundary: bytes) -> list[tuple[dict[str, str], int, int]] | None:
    """Each part's headers (names in lower case, values stripped, as python-multipart's
    callbacks give them to upload_parser) and the span of its data, for a body in the plain
    form (the module docstring); None for any other body."""
    delimiter = b"--" + boundary
    if not 0 < len(boundary) <= MAX_BOUNDARY or not data.startswith(delimiter):
        return None
    close = b"\r\n" + delimiter
    spans: list[tuple[dict[str, str], int, int]] = []
    position = len(delimiter)
    while data.startswith(b"\r\n", position):
        head_end = data.find(b"\r\n\r\n", position)
        if head_end < 0:
            return None
        headers = _headers(data[position + 2:head_end]) if head_end > position else {}
        end = data.find(close, head_end + 4)
        if headers is None or end < 0:
            return None
        spans.append((headers, head_end + 4, end))
        position = end + len(close)
        if data.startswith(b"--", position):  # the closing boundary, then nothing or a CRLF
            epilogue = len(data) - position - 2
            return spans if epilogue == 0 or (epilogue == 2 and data.endswith(b"\r\n")) else None
    return None


def _headers(block: bytes | bytearray) -> dict[str, str] | None:
    """The header lines of one part, or None when one is not a plain ``Name: value``."""
    lines = block.split(b"\r\n")
    if len(lines) > MAX_PART_HEADERS:
        return None
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if (not colon or not name or name.translate(None, TOKEN_CHARS) or len(line) > MAX_HEADER_LINE
                or b"\r" in value or b"\n" in value):
            return None
        headers[name.decode("latin-1").lower()] = value.decode("utf-8", "replace").strip()
    return headers
