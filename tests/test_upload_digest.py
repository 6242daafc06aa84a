"""The SHA-256 of an uploaded part (server/ingest/upload_parser.py): hashed in one call when
first asked while it is in memory, as it is written once it rolls over to disk; the same
digest either way, from the whole file, wherever its position stands."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from server.ingest import upload_parser
from server.ingest.upload_parser import Budget, SpoolWriter, UploadPart


def written(tmp_path: Path, data: bytes, chunk: int = 64 * 1024) -> UploadPart:
    writer = SpoolWriter(tmp_path, Budget(len(data) + 1))
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])
    return writer.finish("upload_file_minidump", "a.dmp", None)


@pytest.mark.parametrize("size", [0, 1, 410 * 1024, upload_parser.SPOOL_IN_MEMORY,
                                  upload_parser.SPOOL_IN_MEMORY + 1, 3 * upload_parser.SPOOL_IN_MEMORY + 17])
def test_the_digest_is_the_whole_files_in_memory_or_on_disk(tmp_path: Path, size: int) -> None:
    data = bytes((i * 7919) % 251 for i in range(size))
    part = written(tmp_path, data)
    in_memory = type(part.file._file) is io.BytesIO  # what UploadPart.sha256 looks at
    assert in_memory == (size <= upload_parser.SPOOL_IN_MEMORY)
    assert (part.digest is None) == in_memory  # not hashed yet while in memory: on the loop
    part.file.seek(5 if size > 5 else 0)
    position = part.file.tell()
    assert part.sha256 == hashlib.sha256(data).hexdigest()
    assert part.digest == part.sha256  # remembered
    assert part.file.tell() == position
    assert part.file.read() == data[position:]
    part.close()


def test_a_part_made_elsewhere_is_hashed_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "part"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as file:
        file.seek(4)
        part = UploadPart("log", "a.log", "text/plain", file, 10)
        assert part.sha256 == hashlib.sha256(b"0123456789").hexdigest()
        assert file.tell() == 4
    given = UploadPart("x", None, None, io.BytesIO(b"abc"), 3, "f" * 64)
    assert given.sha256 == "f" * 64  # a digest given is believed
