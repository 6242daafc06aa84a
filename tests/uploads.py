"""Build upload request bodies the way crash clients do (multipart, gzip, zstd)."""

from __future__ import annotations

import gzip
import uuid


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
