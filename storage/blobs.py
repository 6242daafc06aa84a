"""Blob store for raw uploads: minidumps, attachments and annotation documents.

Keys look like ``minidumps/2026-11-25/<crash_id>.dmp``: partitioned by the UTC day the crash
was received, so old days can be archived or pruned folder by folder.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import IO, BinaryIO, Iterator

CHUNK = 1024 * 1024


class BlobStoreError(Exception):
    """The store could not write or read a blob (disk full, permissions, ...)."""


class BlobNotFound(BlobStoreError):
    """No blob under that key."""


def day_key(kind: str, day: datetime, name: str) -> str:
    """Build a key ``<kind>/<YYYY-MM-DD>/<name>``."""
    return f"{kind}/{day.strftime('%Y-%m-%d')}/{name}"


class BlobStore(ABC):
    """Where raw uploads live. Writes are atomic: a reader sees the whole blob or none."""

    @abstractmethod
    def put_file(self, key: str, source: IO[bytes]) -> None:
        """Copy source (read from its current position) into key. Raises BlobStoreError."""

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
    def check(self) -> None:
        """Raise BlobStoreError when the store cannot be written (used by health checks)."""

    @abstractmethod
    def iter_keys(self, after: str = "") -> Iterator[tuple[str, float]]:
        """Every key (unfinished writes included) with its modification time (seconds since
        the epoch), in key order, starting after the key ``after``."""

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


class FSBlobStore(BlobStore):
    """Blobs as files under a root folder; temp file + fsync + rename for atomicity."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        # Keys are ours (kind/day/name), but a name may come from a client: refuse anything
        # that could leave the root. A text check; resolve() per key was measurable.
        parts = key.split("/")
        if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
            raise BlobStoreError(f"key escapes the blob root: {key!r}")
        return self.root.joinpath(*parts)

    def put_file(self, key: str, source: IO[bytes]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
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

    def iter_keys(self, after: str = "") -> Iterator[tuple[str, float]]:
        for kind in _sorted_entries(self.root):
            if kind.is_dir():  # blobs live in <kind>/...: root files are probes
                yield from _walk(Path(kind.path), f"{kind.name}/", after)

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
