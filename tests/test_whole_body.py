"""server/ingest/whole_body.py: a body read whole and split in one pass gives exactly the parts
(or the refusal) that python-multipart's streaming parser gives for the same bytes, and the
bodies real clients send take the one-pass split."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz_parsers import multipart_bodies

from server.ingest.upload_parser import Budget, MalformedUpload, UploadPart, UploadTooLarge, parse_multipart
from server.ingest.whole_body import IN_MEMORY_BODY, WholeBody, plain_parts, read_multipart, split_body

from minidump_writer import small_dump
from uploads import minidump_upload

SETTINGS = settings(max_examples=400, deadline=None, database=None, derandomize=True)
Outcome = list[tuple[dict[str, str], str, str | None, str | None, int, bytes]] | str


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _seen(parts: list[tuple[dict[str, str], UploadPart]]) -> Outcome:
    seen = []
    for headers, part in parts:
        part.file.seek(0)
        seen.append((headers, part.name, part.filename, part.content_type, part.size, part.file.read()))
        part.close()
    return seen


def streamed(body: bytes, boundary: bytes, chunk: int = 1000, budget: int = 10 * 1024 * 1024) -> Outcome:
    """What python-multipart's streaming parser makes of body: the parts, or the refusal's reason."""
    try:
        return _seen(asyncio.run(parse_multipart(_chunks(body, chunk), boundary=boundary, tmp_dir=None,
                                                 budget=Budget(budget))))
    except (MalformedUpload, UploadTooLarge) as exc:
        return exc.discard_code


def whole(body: bytes, boundary: bytes, chunk: int = 1000, budget: int = 10 * 1024 * 1024) -> Outcome:
    """What read_multipart + split_body make of body."""
    try:
        spent = Budget(budget)
        read = asyncio.run(read_multipart(_chunks(body, chunk), boundary=boundary, tmp_dir=None, budget=spent))
        assert isinstance(read, WholeBody)
        return _seen(split_body(read, tmp_dir=None, budget=spent))
    except (MalformedUpload, UploadTooLarge) as exc:
        return exc.discard_code


@st.composite
def plain_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(boundary, body) in the plain form mostly: parts with odd names, values and extra
    headers, data holding pieces of the delimiter, the closing boundary with or without CRLF."""
    boundary = draw(st.text("abcXYZ0123-_'()+,./:=?", min_size=1, max_size=72)).encode()
    value = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)
    token = st.text("abcXYZ-_!#$%&'*+.^`|~09", min_size=1, max_size=12)
    out = bytearray()
    for _ in range(draw(st.integers(0, 4))):
        headers = [("Content-Disposition", f'form-data; name="{draw(value)}"'
                    + (f'; filename="{draw(value)}"' if draw(st.booleans()) else ""))]
        headers += draw(st.lists(st.tuples(token, value), max_size=3))
        data = b"".join(draw(st.lists(st.sampled_from([b"x", b"\r\n", b"--", b"\r\n--" + boundary[:-1],
                                                       b"\r\n-" + boundary, bytes(range(250, 256))]), max_size=6)))
        out += b"--" + boundary + b"\r\n"
        out += b"".join(f"{name}:{draw(st.sampled_from(['', ' ', '  ']))}{text}\r\n".encode() for name, text in headers)
        out += b"\r\n" + data + b"\r\n"
    out += b"--" + boundary + b"--" + draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]))
    return boundary, bytes(out)


@SETTINGS
@given(st.one_of(multipart_bodies(), plain_bodies()), st.integers(1, 4096))
def test_the_split_agrees_with_python_multipart(sample: tuple[bytes, bytes], chunk: int) -> None:
    boundary, body = sample
    assert whole(body, boundary, chunk) == streamed(body, boundary, chunk)


def test_the_generated_bodies_take_both_ways() -> None:
    taken = {True: 0, False: 0}

    @SETTINGS
    @given(plain_bodies())
    def tally(sample: tuple[bytes, bytes]) -> None:
        taken[plain_parts(sample[1], sample[0]) is not None] += 1

    tally()
    assert taken[True] > 200 and taken[False] > 20


@pytest.mark.parametrize("body", [
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--",
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n",
    b"--b\r\n\r\nno headers\r\n--b--\r\n",
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n--b--\r\n",  # an empty part
    b"--b\r\nContent-Disposition: form-data; name=\"\xc3\xa9\xff\"; filename=\"x.dmp\"\r\n"
    b"Content-Type:   text/plain  \r\n\r\ndata\r\n--b\r\nContent-Disposition: form-data; name=\"z\"\r\n\r\n"
    b"z\r\n--b--\r\n",  # UTF-8 and a stray byte in a name, spaces around a value
])
def test_plain_bodies_take_the_one_pass_split(body: bytes) -> None:
    assert plain_parts(body, b"b") is not None
    parts = whole(body, b"b")
    assert isinstance(parts, list) and parts == streamed(body, b"b")


@pytest.mark.parametrize("body", [
    b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n",
    b"--b  \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n",  # transport padding
    b"--b\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\n1\r\n--b--\r\n",  # a folded header
    b"--b\r\nBad Name: x\r\n\r\n1\r\n--b--\r\n",
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--bX\r\n--b--\r\n",  # data that looks like it
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\nepilogue",
    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n",  # no closing boundary
    b"--b--\r\n",  # no part at all
    b"--b\r\n" + b"X-A: 1\r\n" * 33 + b"\r\n1\r\n--b--\r\n",  # more headers than allowed
])
def test_other_bodies_go_to_python_multipart(body: bytes) -> None:
    assert plain_parts(body, b"b") is None
    assert whole(body, b"b") == streamed(body, b"b")


def test_a_long_boundary_is_judged_by_python_multipart() -> None:
    for length in (71, 256, 257):
        boundary = b"b" * length
        body = b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--" + boundary + b"--\r\n"
        assert plain_parts(body, boundary) is None
        assert whole(body, boundary) == streamed(body, boundary)
    assert streamed(body, boundary) == "malformed_bad_multipart"


def test_the_budget_counts_part_data_as_before() -> None:
    body, content_type = minidump_upload(small_dump(3), guid="g-1", prod="Game", ver="1.0")
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    data_bytes = sum(size for _, _, _, _, size, _ in streamed(body, boundary))  # type: ignore[misc]
    for budget in (data_bytes - 1, data_bytes):
        assert whole(body, boundary, budget=budget) == streamed(body, boundary, budget=budget)
    assert whole(body, boundary, budget=data_bytes - 1) == "too_large_decompressed"


def test_a_client_upload_takes_the_one_pass_split() -> None:
    body, content_type = minidump_upload(small_dump(3), guid="g-1", prod="Game", ver="1.0")
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    spans = plain_parts(body, boundary)
    assert spans is not None and len(spans) == 4
    assert whole(body, boundary) == streamed(body, boundary)


def test_a_body_over_the_memory_limit_streams_to_disk(tmp_path: pytest.TempPathFactory) -> None:
    dump = small_dump(3) + bytes(IN_MEMORY_BODY)
    body, content_type = minidump_upload(dump, guid="g-1")
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    read = asyncio.run(read_multipart(_chunks(body, 65536), boundary=boundary, tmp_dir=None,
                                      budget=Budget(10 * IN_MEMORY_BODY)))
    assert isinstance(read, list)  # parsed as it came: the dump part is spooled to a file
    minidump = next(part for _, part in read if part.name == "upload_file_minidump")
    assert minidump.size == len(dump) and minidump.file.read() == dump
    assert not isinstance(getattr(minidump.file, "_file", None), __import__("io").BytesIO)
    assert _seen(read) == streamed(body, boundary, chunk=65536, budget=10 * IN_MEMORY_BODY)
