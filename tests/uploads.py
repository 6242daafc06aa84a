"""Build upload request bodies the way crash clients do (multipart, gzip, zstd)."""

from __future__ import annotations

import gzip
import json
import uuid

from minidump_writer import small_dump


def multipart(
    fields: dict[str, str] | None = None,
    files: list[tuple[str, str | None, bytes, str]] | None = None,
    *,
    boundary: str | None = None,
    subtype: str = "form-data",
) -> tuple[bytes, str]:
    """Encode fields and files (name, filename, data, content_type) as multipart.

    Returns (body, content_type). A file with filename None is sent like a text field but
    with its own Content-Type (how some clients send JSON fields).
    """
    boundary = boundary or f"---crashd-test-{uuid.uuid4().hex}"
    out = bytearray()
    for name, value in (fields or {}).items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, filename, data, content_type in files or []:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/{subtype}; boundary={boundary}"


def minidump_upload(dump: bytes, **fields: str) -> tuple[bytes, str]:
    """A Breakpad-style upload: the dump as upload_file_minidump plus text fields."""
    return multipart(fields, [("upload_file_minidump", "crash.dmp", dump, "application/octet-stream")])


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body)


def ingest_requests(key: str = "some-ingest-key", project: str = "1") -> list[tuple[str, bytes, dict[str, str]]]:
    """One request of each ingest path (minidump, submit, envelope, store, sessions, symbols):
    (path with query, body, headers)."""
    dump, dump_type = minidump_upload(small_dump(1))
    symbols, symbols_type = multipart(files=[("symbol_file", "game.sym", b"MODULE windows x86_64 "
                                              b"0123456789ABCDEF0123456789ABCDEF1 game.pdb\n", "text/plain")])
    event = json.dumps({"event_id": uuid.uuid4().hex, "message": "hello"}).encode()
    envelope = json.dumps({"event_id": uuid.uuid4().hex}).encode() + b"\n" + b'{"type":"event"}\n' + event + b"\n"
    session = json.dumps({"session_id": "s1", "started": "2024-01-01T00:00:00Z", "status": "ok"}).encode()
    return [
        (f"/api/{project}/minidump/?sentry_key={key}", dump, {"Content-Type": dump_type}),
        (f"/submit?key={key}", dump, {"Content-Type": dump_type}),
        (f"/api/{project}/envelope/?sentry_key={key}", envelope, {"Content-Type": "application/x-sentry-envelope"}),
        (f"/api/{project}/store/?sentry_key={key}", event, {"Content-Type": "application/json"}),
        (f"/api/{project}/sessions/?sentry_key={key}", session, {"Content-Type": "application/json"}),
        (f"/api/{project}/symbols/?key={key}", symbols, {"Content-Type": symbols_type}),
    ]
