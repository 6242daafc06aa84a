"""The blob stores (filesystem and S3): atomic writes, day-partitioned keys, clear errors."""

from __future__ import annotations

import hashlib
import io
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from schemas.settings import Settings
from storage.blobs import BlobInfo, BlobNotFound, BlobStoreError, FSBlobStore, S3BlobStore, day_key, make_blob_store


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
    before = list(store.iter_folder("minidumps/2026-11-25"))
    assert [key for key, _ in before] == ["minidumps/2026-11-25/a.dmp"]
    store.put_bytes("minidumps/2026-11-25/a.dmp", b"new")
    assert list(store.iter_folder("minidumps/2026-11-25/"))[0][1] != before[0][1]  # its version changed


def test_a_spooled_upload_is_written_from_where_it_stands_in_memory_or_on_disk(tmp_path: Path) -> None:
    """put_file writes an upload spooled in memory from its buffer (storage/blobs._copy), one
    rolled over to disk by reading it: from the current position on, either way; the folder
    is made when missing."""
    import tempfile

    store = FSBlobStore(tmp_path)
    data = bytes(range(256)) * 4000
    for in_memory in (True, False):
        with tempfile.SpooledTemporaryFile(max_size=len(data) + 1 if in_memory else 16) as spool:
            spool.write(data)
            assert (type(spool._file) is io.BytesIO) is in_memory  # what _copy looks at
            spool.seek(3)
            key = f"minidumps/2026-12-06/{in_memory}.dmp"
            store.put_file(key, spool)
            assert store.read_bytes(key) == data[3:]
            assert spool.tell() == len(data)  # read to its end, as copyfileobj leaves it


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


# -- S3BlobStore against a real S3-compatible server (SeaweedFS) -----------------------------


def s3_store(env: dict[str, str]) -> S3BlobStore:
    store = make_blob_store(Settings(blob_url=env["CRASHD_BLOB_URL"], s3_endpoint_url=env["CRASHD_S3_ENDPOINT_URL"]))
    assert isinstance(store, S3BlobStore)
    return store


def test_blob_url_picks_the_backend(tmp_path: Path) -> None:
    default = make_blob_store(Settings(data_dir=tmp_path))
    assert isinstance(default, FSBlobStore) and default.root == (tmp_path / "blobs").resolve()
    there = make_blob_store(Settings(data_dir=tmp_path, blob_url=f"file://{tmp_path}/elsewhere"))
    assert isinstance(there, FSBlobStore) and there.root == (tmp_path / "elsewhere").resolve()
    for bad in ("s3:///prefix", "gs://bucket/x", "/plain/path"):
        with pytest.raises(ValueError):
            make_blob_store(Settings(blob_url=bad))


def test_s3_round_trip_and_listing(s3_env: dict[str, str]) -> None:
    store = s3_store(s3_env)
    data = b"MDMP" + bytes(range(256)) * 5000
    store.put_file("minidumps/2026-11-25/a.dmp", io.BytesIO(data))
    store.put_bytes("attachments/2026-11-25/a/log.txt", b"log")
    store.put_bytes("minidumps/2026-11-26/b.dmp", b"b")
    assert store.read_bytes("minidumps/2026-11-25/a.dmp") == data
    assert b"".join(store.iter_chunks("minidumps/2026-11-25/a.dmp")) == data
    with store.open("minidumps/2026-11-25/a.dmp") as handle:
        assert handle.read(4) == b"MDMP"
    assert store.exists("minidumps/2026-11-26/b.dmp") and not store.exists("minidumps/2026-11-26/c.dmp")
    store.check()  # the probe goes and leaves nothing listed
    keys = [key for key, _ in store.iter_keys()]
    assert keys == ["attachments/2026-11-25/a/log.txt", "minidumps/2026-11-25/a.dmp", "minidumps/2026-11-26/b.dmp"]
    assert [key for key, _ in store.iter_keys(after="minidumps/2026-11-25/a.dmp")] == ["minidumps/2026-11-26/b.dmp"]
    assert all(mtime > 1.7e9 for _, mtime in store.iter_keys())
    before = list(store.iter_folder("minidumps/2026-11-25"))
    assert [key for key, _ in before] == ["minidumps/2026-11-25/a.dmp"]
    store.put_bytes("minidumps/2026-11-25/a.dmp", b"new")
    assert list(store.iter_folder("minidumps/2026-11-25/"))[0][1] != before[0][1]  # its version changed
    assert list(store.iter_folder("minidumps/2026-11")) == []  # a folder, not a prefix of names
    store.delete("minidumps/2026-11-26/b.dmp")
    store.delete("minidumps/2026-11-26/b.dmp")  # deleting a missing key is fine
    assert not store.exists("minidumps/2026-11-26/b.dmp")


def test_s3_missing_and_escaping_keys(s3_env: dict[str, str]) -> None:
    store = s3_store(s3_env)
    with pytest.raises(BlobNotFound):
        store.open("nope/2026-11-25/c.dmp")
    with pytest.raises(BlobNotFound):
        store.iter_chunks("nope/2026-11-25/c.dmp")  # raised before the first chunk is asked for
    for bad in ("../outside", "a//b", "/abs"):
        with pytest.raises(BlobStoreError):
            store.put_bytes(bad, b"x")


def test_s3_down_is_a_store_error_within_seconds(s3_env: dict[str, str], tmp_path: Path) -> None:
    from s3_server import free_ports

    nobody = f"http://127.0.0.1:{free_ports(1)[0]}"
    store = make_blob_store(Settings(blob_url=s3_env["CRASHD_BLOB_URL"], s3_endpoint_url=nobody))
    started = time.monotonic()
    for action in (lambda: store.put_bytes("minidumps/2026-11-25/a.dmp", b"x"),
                   lambda: store.read_bytes("minidumps/2026-11-25/a.dmp"), store.check):
        with pytest.raises(BlobStoreError) as caught:
            action()
        assert not isinstance(caught.value, BlobNotFound)
    assert time.monotonic() - started < 30


def test_info_is_the_size_and_the_sha256_given_at_put(s3_env: dict[str, str], tmp_path: Path) -> None:
    """What decides whether a symbol upload is new (symbols/remote.holds): an object's size and
    the sha256 kept with it, read without reading the object."""
    data = b"MODULE " + bytes(range(256)) * 100
    digest = hashlib.sha256(data).hexdigest()
    store = s3_store(s3_env)
    store.put_file("symbols/a.so/AB/a.so.sym", io.BytesIO(data), sha256=digest)
    store.put_bytes("symbols/b.so/AB/b.so.sym", b"plain")
    assert store.info("symbols/a.so/AB/a.so.sym") == BlobInfo(len(data), digest)
    assert store.info("symbols/b.so/AB/b.so.sym") == BlobInfo(5, None)
    with pytest.raises(BlobNotFound):
        store.info("symbols/c.so/AB/c.so.sym")
    files = FSBlobStore(tmp_path)
    files.put_file("symbols/a.so/AB/a.so.sym", io.BytesIO(data), sha256=digest)
    assert files.info("symbols/a.so/AB/a.so.sym") == BlobInfo(len(data), None)  # files keep no digest
    with pytest.raises(BlobNotFound):
        files.info("symbols/c.so/AB/c.so.sym")


def test_s3_timeouts_and_retries_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """CRASHD_S3_REQUEST_TIMEOUT_SECONDS and CRASHD_S3_MAX_RETRIES bound a request to an object
    store that accepts connections and never answers (hung): 1 s without a retry here, where the
    defaults (30 s a request) would hold the caller half a minute."""
    for name, value in {"CRASHD_S3_REQUEST_TIMEOUT_SECONDS": "1", "CRASHD_S3_MAX_RETRIES": "0",
                        "CRASHD_S3_CONNECT_TIMEOUT_SECONDS": "0.5", "CRASHD_S3_RETRY_TIMEOUT_SECONDS": "2",
                        "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with socket.create_server(("127.0.0.1", 0)) as hung:  # the kernel accepts; nobody reads or answers
        settings = Settings(blob_url="s3://crashd/hung", s3_endpoint_url=f"http://127.0.0.1:{hung.getsockname()[1]}")
        assert (settings.s3_connect_timeout_seconds, settings.s3_request_timeout_seconds) == (0.5, 1.0)
        assert (settings.s3_max_retries, settings.s3_retry_timeout_seconds) == (0, 2.0)
        store = make_blob_store(settings)
        started = time.monotonic()
        with pytest.raises(BlobStoreError) as caught:
            store.read_bytes("minidumps/2026-11-25/a.dmp")
        assert not isinstance(caught.value, BlobNotFound)
        assert 0.9 < time.monotonic() - started < 5
