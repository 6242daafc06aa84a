"""Blob store for raw uploads: minidumps, attachments and annotation documents (and, on an
object store, uploaded symbol files: symbolicator/symbols/remote.py).

Keys look like ``minidumps/2026-11-25/<crash_id>.dmp``: partitioned by the UTC day the crash
was received, so old days can be archived or pruned folder by folder.

Two backends behind BlobStore: FSBlobStore (a folder, ``CRASHD_BLOB_URL=file:///path``, the
default ``<data dir>/blobs``) and S3BlobStore (``s3://bucket/prefix`` on any S3-compatible
server, through obstore: bench/object_store.py measured it against boto3). make_blob_store
picks one from the settings.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterator
from urllib.parse import unquote, urlsplit

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store

from schemas.settings import Settings

CHUNK = 1024 * 1024


class BlobStoreError(Exception):
    """The store could not write or read a blob (disk full, permissions, ...)."""


class BlobNotFound(BlobStoreError):
    """No blob under that key."""


@dataclass(frozen=True)
class BlobInfo:
    """What the store says of a blob without reading it: its size, and the sha256 given to
    put_file when it was written (None: none was given, or the store keeps none)."""

    size: int
    sha256: str | None


def checked_key(key: str) -> str:
    """key itself, when it stays inside the store. Keys are ours (kind/day/name), but a name may
    come from a client: anything that could leave the root (or name another key on S3, which
    folds ``a//b``) raises BlobStoreError. A text check; resolve() per key was measurable."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise BlobStoreError(f"key escapes the blob root: {key!r}")
    return key


def day_key(kind: str, day: datetime, name: str) -> str:
    """Build a key ``<kind>/<YYYY-MM-DD>/<name>``."""
    return f"{kind}/{day.strftime('%Y-%m-%d')}/{name}"


class BlobStore(ABC):
    """Where raw uploads live. Writes are atomic: a reader sees the whole blob or none."""

    @abstractmethod
    def put_file(self, key: str, source: IO[bytes], *, sha256: str | None = None) -> None:
        """Copy source (read from its current position) into key; sha256 (the hex digest of
        source, when the caller knows it) is kept with the blob where the store can keep it,
        for info(). Raises BlobStoreError."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open key for reading. Raises BlobNotFound."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key; a missing key is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True when key holds a blob."""

    @abstractmethod
    def info(self, key: str) -> BlobInfo:
        """The blob's size and recorded sha256, without reading it. Raises BlobNotFound."""

    @abstractmethod
    def check(self) -> None:
        """Raise BlobStoreError when the store cannot be written (used by health checks)."""

    @abstractmethod
    def iter_keys(self, after: str = "") -> Iterator[tuple[str, float]]:
        """Every key (unfinished writes included) with its modification time (seconds since
        the epoch), in key order, starting after the key ``after``."""

    @abstractmethod
    def iter_folder(self, folder: str) -> Iterator[tuple[str, str]]:
        """Every key under ``folder/`` (at any depth) with its version, a string that changes
        whenever the key is written again (S3: the ETag; files: mtime and size), in key order."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store data under key."""
        self.put_file(key, io.BytesIO(data))

    def read_bytes(self, key: str) -> bytes:
        """The whole blob under key. Raises BlobNotFound."""
        with self.open(key) as handle:
            return handle.read()

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        """Stream key in chunks (for HTTP downloads). Raises BlobNotFound."""
        handle = self.open(key)
        try:
            while chunk := handle.read(CHUNK):
                yield chunk
        finally:
            handle.close()


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file in path's folder (made when missing: tried first, as it mostly exists)."""
    try:
        return tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")


def in_memory(file: IO[bytes]) -> io.BytesIO | None:
    """The BytesIO holding file's bytes: file itself, or the one inside a SpooledTemporaryFile
    that has not rolled over to disk; None for anything else (a file on disk, a reader of
    its own, a subclass of BytesIO), which has to be read."""
    inner = getattr(file, "_file", file)
    return inner if type(inner) is io.BytesIO else None


def _copy(source: IO[bytes], out: BinaryIO) -> None:
    """source (from its position) into out; an upload spooled in memory is written from its
    buffer without a copy."""
    inner = in_memory(source)
    if inner is None:
        shutil.copyfileobj(source, out, CHUNK)
        return
    with inner.getbuffer() as view:
        out.write(view[source.tell():])
    source.seek(0, os.SEEK_END)


class FSBlobStore(BlobStore):
    """Blobs as files under a root folder; temp file + fsync + rename for atomicity."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*checked_key(key).split("/"))

    def put_file(self, key: str, source: IO[bytes], *, sha256: str | None = None) -> None:
        path = self._path(key)  # sha256 is not kept: files have nowhere to put it
        try:
            fd, tmp = _temp_beside(path)
            try:
                with os.fdopen(fd, "wb") as out:
                    _copy(source, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                _unlink_quietly(Path(tmp))
                raise
        except OSError as exc:
            raise BlobStoreError(f"cannot write blob {key}: {exc}") from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        except OSError as exc:
            raise BlobStoreError(f"cannot read blob {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        _unlink_quietly(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def info(self, key: str) -> BlobInfo:
        try:
            return BlobInfo(self._path(key).stat().st_size, None)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        except OSError as exc:
            raise BlobStoreError(f"cannot read blob {key}: {exc}") from exc

    def iter_keys(self, after: str = "") -> Iterator[tuple[str, float]]:
        for kind in _sorted_entries(self.root):
            if kind.is_dir():  # blobs live in <kind>/...: root files are probes
                yield from _walk(Path(kind.path), f"{kind.name}/", after)

    def iter_folder(self, folder: str) -> Iterator[tuple[str, str]]:
        base = self._path(folder.rstrip("/"))
        found = []
        for parent, _, names in os.walk(base):
            for name in names:
                path = Path(parent) / name
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted while listed
                    continue
                found.append((path.relative_to(self.root).as_posix(), f"{st.st_mtime_ns}-{st.st_size}"))
        return iter(sorted(found))

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".heartbeat"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise BlobStoreError(f"blob store not writable: {exc}") from exc


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    """folder's entries in the order of the keys under them: a folder sorts as its name + "/"
    ("a.json" < "a/x"); a missing folder has none."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name + "/" if e.is_dir() else e.name)
    except FileNotFoundError:
        return []


def _walk(folder: Path, prefix: str, after: str) -> Iterator[tuple[str, float]]:
    """Keys under folder (named prefix + ...) after ``after``, in order, with their mtime.
    A subfolder whose keys all sort before ``after`` is not listed."""
    for entry in _sorted_entries(folder):
        key = prefix + entry.name
        try:
            if entry.is_dir():
                if after > key + "/" and not after.startswith(key + "/"):
                    continue
                yield from _walk(Path(entry.path), key + "/", after)
            elif key > after:
                yield key, entry.stat().st_mtime
        except FileNotFoundError:  # deleted while listed
            continue


# Backoff between retries of one S3 request (their number and time bound are settings:
# CRASHD_S3_MAX_RETRIES, CRASHD_S3_RETRY_TIMEOUT_SECONDS).
S3_BACKOFF = {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=1), "base": 2}
S3_SHA256 = "sha256"  # user metadata (x-amz-meta-sha256) holding the digest given to put_file
S3_SPOOL_BYTES = 8 * 1024 * 1024  # open(): a blob up to this size is held in memory, larger ones in a temp file


class S3BlobStore(BlobStore):
    """Blobs as objects under ``s3://bucket/prefix`` on any S3-compatible server. A PUT is
    atomic (readers see the old object or the new one) and confirmed before put_file returns.
    Credentials and region come from the usual AWS variables (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION), read by obstore.

    Fork folklore: obstore runs requests on a tokio runtime started by the first request; a
    child forked after that inherits a runtime without its threads, and its requests hang
    (seen with obstore 0.12). So a process that forks (``crashd worker --fork``) never makes
    a request itself: each child builds its own store (tests/test_scale_out.py checks it)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 connect_timeout: float = 3.0, request_timeout: float = 30.0, max_retries: int = 2,
                 retry_timeout: float = 5.0) -> None:
        """The bounds (seconds) are CRASHD_S3_CONNECT_TIMEOUT_SECONDS, _REQUEST_TIMEOUT_SECONDS,
        _MAX_RETRIES and _RETRY_TIMEOUT_SECONDS: a hiccup is retried, an object store that is down
        is reported within seconds (the upload then gets 503 + Retry-After), not after obstore's
        default 3 min."""
        self.bucket, self.prefix = bucket, prefix.strip("/")
        options: dict[str, Any] = {"timeout": timedelta(seconds=request_timeout),
                                   "connect_timeout": timedelta(seconds=connect_timeout)}
        retry = {"max_retries": max_retries, "retry_timeout": timedelta(seconds=retry_timeout), "backoff": S3_BACKOFF}
        config: dict[str, Any] = {}
        if endpoint_url:
            config["endpoint"] = endpoint_url
            options["allow_http"] = endpoint_url.startswith("http://")
        self.store = S3Store(bucket, prefix=self.prefix or None, config=config,  # type: ignore[arg-type]
                             client_options=options, retry_config=retry)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def put_file(self, key: str, source: IO[bytes], *, sha256: str | None = None) -> None:
        with _s3_errors(key, "write"):
            obstore.put(self.store, checked_key(key), source, attributes={S3_SHA256: sha256} if sha256 else None)

    def open(self, key: str) -> BinaryIO:
        spool = tempfile.SpooledTemporaryFile(max_size=S3_SPOOL_BYTES)  # noqa: SIM115 - handed to the caller
        try:
            for chunk in self._stream(key):
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool  # type: ignore[return-value]

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        return self._stream(key)

    def _stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks; the GET is sent (and BlobNotFound raised) before the
        first chunk is asked for, so a caller answering HTTP learns of a missing blob in time."""
        with _s3_errors(key, "read"):
            result = obstore.get(self.store, checked_key(key))
        return _guarded_chunks(key, result.stream(min_chunk_size=CHUNK))

    def delete(self, key: str) -> None:
        with _s3_errors(key, "delete"):
            try:
                obstore.delete(self.store, checked_key(key))
            except FileNotFoundError:  # S3 answers 204 for a missing key; some servers 404
                pass

    def exists(self, key: str) -> bool:
        try:
            with _s3_errors(key, "read"):
                obstore.head(self.store, checked_key(key))
        except BlobNotFound:
            return False
        return True

    def info(self, key: str) -> BlobInfo:
        # A HEAD request: obstore.head's ObjectMeta has no user metadata, a GET's head has.
        with _s3_errors(key, "read"):
            result = obstore.get(self.store, checked_key(key), options={"head": True})
            return BlobInfo(result.meta["size"], result.attributes.get(S3_SHA256))

    def iter_keys(self, after: str = "") -> Iterator[tuple[str, float]]:
        # S3 lists in key (byte) order; offset= is ListObjectsV2's StartAfter.
        with _s3_errors(after or "<list>", "list"):
            for batch in obstore.list(self.store, offset=after or None, chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    if "/" in key:  # blobs live in <kind>/...: root objects are probes
                        yield key, meta["last_modified"].timestamp()

    def iter_folder(self, folder: str) -> Iterator[tuple[str, str]]:
        prefix = checked_key(folder.rstrip("/"))
        found: list[tuple[str, str]] = []
        with _s3_errors(folder, "list"):  # a prefix listing: only the folder's objects are sent
            for batch in obstore.list(self.store, prefix=prefix, chunk_size=1000):
                found += [(m["path"], f"{m['e_tag']}-{m['size']}") for m in batch]
        return iter(sorted(found))

    def check(self) -> None:
        self.put_bytes(".heartbeat", b"ok")
        self.delete(".heartbeat")


@contextmanager
def _s3_errors(key: str, what: str) -> Iterator[None]:
    """Turn obstore's exceptions into ours: FileNotFoundError -> BlobNotFound, anything else
    it raises (connection refused, timeouts, 5xx, access denied) -> BlobStoreError."""
    try:
        yield
    except BlobStoreError:
        raise
    except FileNotFoundError as exc:
        raise BlobNotFound(key) from exc
    except (ObstoreError, OSError, ValueError, RuntimeError) as exc:
        raise BlobStoreError(f"cannot {what} blob {key}: {_first_line(exc)}") from exc


def _guarded_chunks(key: str, chunks: Iterator[Any]) -> Iterator[bytes]:
    with _s3_errors(key, "read"):
        for chunk in chunks:
            yield bytes(chunk)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def make_blob_store(settings: Settings) -> BlobStore:
    """The store CRASHD_BLOB_URL names: ``file:///path`` (default ``<data dir>/blobs``) or
    ``s3://bucket/prefix`` (at CRASHD_S3_ENDPOINT_URL when set). Raises ValueError for any
    other scheme or an s3 URL without a bucket."""
    url = settings.blob_url
    if not url:
        return FSBlobStore(settings.blob_dir)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FSBlobStore(Path(unquote(parts.netloc + parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"CRASHD_BLOB_URL names no bucket: {url}")
        return S3BlobStore(parts.netloc, parts.path, endpoint_url=settings.s3_endpoint_url,
                           connect_timeout=settings.s3_connect_timeout_seconds,
                           request_timeout=settings.s3_request_timeout_seconds,
                           max_retries=settings.s3_max_retries, retry_timeout=settings.s3_retry_timeout_seconds)
    raise ValueError(f"CRASHD_BLOB_URL must be file:///path or s3://bucket/prefix, not {url}")
