"""The filesystem blob store: atomic writes, day-partitioned keys, clear errors."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import pytest

from storage.blobs import BlobNotFound, BlobStoreError, FSBlobStore, day_key


def test_day_partitioned_keys() -> None:
    day = datetime(2026, 11, 25, 23, 59, tzinfo=timezone.utc)
    assert day_key("minidumps", day, "abc.dmp") == "minidumps/2026-11-25/abc.dmp"


def test_round_trip_and_no_temp_files_left(tmp_path: Path) -> None:
    store = FSBlobStore(tmp_path)
    data = b"MDMP" + bytes(range(256)) * 5000
    store.put_file("minidumps/2026-11-25/a.dmp", io.BytesIO(data))
    assert store.read_bytes("minidumps/2026-11-25/a.dmp") == data
    assert b"".join(store.iter_chunks("minidumps/2026-11-25/a.dmp")) == data
    assert [p.name for p in (tmp_path / "minidumps" / "2026-11-25").iterdir()] == ["a.dmp"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    class Exploding(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            raise OSError("disk vanished")

    store = FSBlobStore(tmp_path)
    with pytest.raises(BlobStoreError):
        store.put_file("x/2026-11-25/b.dmp", Exploding())
    assert list((tmp_path / "x" / "2026-11-25").iterdir()) == []


def test_missing_and_escaping_keys(tmp_path: Path) -> None:
    store = FSBlobStore(tmp_path / "root")
    with pytest.raises(BlobNotFound):
        store.open("nope/2026-11-25/c.dmp")
    with pytest.raises(BlobStoreError):
        store.put_bytes("../outside", b"x")
    assert not (tmp_path / "outside").exists()
    store.delete("nope/2026-11-25/c.dmp")  # deleting a missing key is fine


def test_check_reports_unwritable_root(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BlobStoreError):
        FSBlobStore(tmp_path / "file").check()
    FSBlobStore(tmp_path / "ok").check()
