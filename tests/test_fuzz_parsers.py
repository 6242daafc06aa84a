"""Property tests (hypothesis) for the upload parser (server/ingest/upload_parser.py), the envelope
parser (server/ingest/envelope.py) and the ingest endpoints: generated and mutated multipart bodies
and envelopes are parsed or refused with a reason, never a server error (issue 11).

Bounded in time: a fixed number of examples each, no deadline, no example database; the
whole file runs in about 20 s on both backends. FUZZED counts the inputs, FIVE_XX the 5xx
answers (always 0, or a test fails).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import AsyncIterator

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.ingest.envelope import MalformedEnvelope, parse_envelope
from server.ingest.sentry_native import apply_native_parts
from server.ingest.upload_parser import Budget, MalformedUpload, assemble, parse_multipart

from conftest import Crashd
from minidump_writer import small_dump

FUZZED: dict[str, int] = {}
FIVE_XX: dict[str, int] = {}
BOUNDED = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DUMP = small_dump(77)

# -- what the generated bodies are made of ---------------------------------------------------

header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
deep_json = st.sampled_from([2, 100, 101, 990, 1200]).map(lambda n: "[" * n + "]" * n)


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# Parts that once broke a parser, mixed with generated ones.
TRICKY_PARTS = [
    ("upload_file_minidump", "c.dmp", DUMP),
    ("extra", "extra.json", ('{"a":' * 995 + "1" + "}" * 995).encode()),
    ("sentry", None, ('{"a":' * 995 + "1" + "}" * 995).encode()),
    ("__sentry-event", "__sentry-event", msgpack.packb({"release": "g", "at": msgpack.Timestamp(1, 5)})),
    ("__sentry-event", "__sentry-event", msgpack.packb({"extra": _nested(990)})),
    ("__sentry-breadcrumb1", "__sentry-breadcrumb1", msgpack.packb({"t": msgpack.Timestamp(2**40)})),
    ("logs/game", "журнал\r\n.log", b"line"),
]
payloads = st.one_of(
    st.binary(max_size=200),
    st.just(DUMP),
    st.builds(lambda n: json.dumps({"release": "game@1", "extra": {"n": n}}).encode(), st.integers()),
    deep_json.map(lambda d: ('{"x":' + d + "}").encode()),
    st.builds(lambda t: msgpack.packb({"release": "g", "at": msgpack.Timestamp(t)}), st.integers(0, 2**33)),
)
field_names = st.one_of(header_text, st.sampled_from(
    ["upload_file_minidump", "extra", "sentry", "__sentry-event", "__sentry-breadcrumb1", "sentry[release]"]))


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(boundary, body): parts with odd names, file names and payloads, a preamble sometimes,
    then a few bytes flipped, inserted or cut."""
    boundary = draw(st.one_of(st.text("abcXYZ0123-_'()+,./:=?", min_size=1, max_size=70),
                              st.integers(250, 300).map(lambda n: "b" * n))).encode()
    out = bytearray(draw(st.sampled_from([b"", b"preamble\r\n", b"\r\n"])))
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            name, filename, payload = draw(st.sampled_from(TRICKY_PARTS))
        else:
            name, payload = draw(field_names), draw(payloads)
            filename = draw(header_text) if draw(st.booleans()) else None
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode("utf-8", "replace")
        if draw(st.booleans()):
            out += b"\r\nContent-Type: " + draw(header_text).encode("utf-8", "replace")
        out += b"\r\n\r\n" + payload + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return boundary, mutate(draw, bytes(out))


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """An envelope of events, attachments (minidumps too) and sessions, then mutated."""
    out = bytearray(json.dumps({"event_id": draw(st.sampled_from(["a" * 32, "nope", ""]))}).encode() + b"\n")
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["event", "attachment", "session", "sessions", "transaction", "x"]))
        headers: dict[str, object] = {"type": kind}
        if kind == "attachment":
            headers["filename"] = draw(header_text)
            headers["content_type"] = draw(header_text)
            if draw(st.booleans()):
                headers["attachment_type"] = "event.minidump"
        payload = draw(payloads)
        if draw(st.booleans()):
            headers["length"] = len(payload)
        out += json.dumps(headers).encode() + b"\n" + payload + b"\n"
    return mutate(draw, bytes(out))


def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """data with up to 4 edits: a byte replaced, bytes inserted, or the tail cut."""
    out = bytearray(data)
    for _ in range(draw(st.sampled_from([0, 0, 1, 4]))):  # unmutated half the time
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        edit = draw(st.sampled_from(["replace", "insert", "cut"]))
        if edit == "replace":
            out[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            out[at:at] = draw(st.sampled_from([b"\r\n", b"\0", b"--", b"{", b"\xff\xfe", b'"']))
        else:
            del out[at:]
    return bytes(out)


def count(kind: str, status: int) -> None:
    FUZZED[kind] = FUZZED.get(kind, 0) + 1
    if status >= 500:
        FIVE_XX[kind] = FIVE_XX.get(kind, 0) + 1


# -- the parsers, in process ----------------------------------------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@BOUNDED
@given(multipart_bodies(), st.integers(1, 4096))
def test_upload_parser_parses_or_refuses(tmp_path_factory: pytest.TempPathFactory, sample: tuple[bytes, bytes],
                                         chunk: int) -> None:
    boundary, body = sample
    tmp = tmp_path_factory.getbasetemp()
    budget = Budget(10 * 1024 * 1024)
    count("upload_parser", 200)
    try:
        parts = asyncio.run(parse_multipart(_chunks(body, chunk), boundary=boundary, tmp_dir=tmp, budget=budget))
        parsed = apply_native_parts(assemble(parts, tmp_dir=tmp, budget=budget), tmp, budget)
    except MalformedUpload as exc:
        assert exc.status_code in (400, 413) and exc.discard_code
        return
    json.dumps(parsed.annotations)  # annotations are stored as JSON
    parsed.close()


@BOUNDED
@given(envelopes())
def test_envelope_parser_parses_or_refuses(body: bytes) -> None:
    count("envelope_parser", 200)
    try:
        parsed = parse_envelope(body)
    except MalformedEnvelope as exc:
        assert exc.status_code in (400, 413) and isinstance(exc.envelope.items, list)
        return
    assert all(isinstance(item.headers, dict) for item in parsed.items)


# -- the endpoints, on both backends --------------------------------------------------------


@settings(BOUNDED, max_examples=100)
@given(sample=multipart_bodies(), gzipped=st.booleans())
def test_upload_endpoints_never_answer_5xx(crashd: Crashd, sample: tuple[bytes, bytes], gzipped: bool) -> None:
    boundary, body = sample
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    for url in (f"/submit?key={crashd.key}", f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}"):
        response = crashd.client.post(url, content=body, headers=headers)
        count("upload_endpoints", response.status_code)
        assert response.status_code < 500, (response.status_code, response.text, body[:300])


@settings(BOUNDED, max_examples=100)
@given(body=envelopes())
def test_envelope_endpoints_never_answer_5xx(crashd: Crashd, body: bytes) -> None:
    for path in ("envelope", "store"):
        response = crashd.client.post(f"/api/{crashd.project.id}/{path}/?sentry_key={crashd.key}", content=body)
        count("envelope_endpoints", response.status_code)
        assert response.status_code < 500, (response.status_code, response.text, body[:300])


def test_zz_fuzz_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Print how many inputs were fuzzed above (run last in this file) and how many 5xx."""
    with capsys.disabled():
        print(f"\nfuzzed inputs: {FUZZED}; 5xx answers: {FIVE_XX or 0}")
    assert not FIVE_XX
