"""Zip archives of a symbol tree (``<debug_file>/<DEBUG_ID>/<file>``, as Mozilla's and
Breakpad users' symbol zips are laid out), unpacked under caps.

A zip cannot surprise us with its size: the uncompressed sizes its directory declares are
summed against the cap before anything is written, and Python's zipfile stops each member at
its declared size (a member that inflates further fails its CRC: ``bad_zip``). Every byte
written is also counted while it is written.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from symbolicator.symbols.cache import MalformedSymbols
from symbolicator.symbols.store import StagedFile, TooLarge, stage

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
MAX_ZIP_FILES = 20_000  # a whole Firefox build's symbols are a few thousand files


def is_zip(head: bytes) -> bool:
    """Whether the first bytes of a file are a zip archive's."""
    return head[:4] in ZIP_MAGICS


def unpack_zip(file: IO[bytes], symbols_dir: Path, *, max_bytes: int,
               max_files: int = MAX_ZIP_FILES) -> list[tuple[str, StagedFile]]:
    """Stage every file of the zip as (path inside the zip, staged file).

    Skipped: folders, dot-files and ``__MACOSX/`` resource forks. Raises MalformedSymbols
    (``bad_zip``, ``zip_too_many_files``, ``zip_bad_path`` for absolute paths or ``..``,
    ``zip_encrypted``, ``no_symbol_file``) and TooLarge (``too_large_decompressed``) when the
    files hold more than max_bytes. Nothing stays staged when it raises.
    """
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MalformedSymbols("bad_zip", str(exc)) from exc
    with archive:
        members = _members(archive, max_files)
        declared = sum(info.file_size for info in members)
        if declared > max_bytes:
            raise TooLarge("too_large_decompressed", f"the zip holds {declared} bytes")
        staged: list[tuple[str, StagedFile]] = []
        try:
            for info in members:
                with archive.open(info) as src:
                    item = stage(src, symbols_dir, limit=max_bytes)
                max_bytes -= item.size
                staged.append((info.filename, item))
        except BaseException as exc:
            for _, item in staged:
                item.path.unlink(missing_ok=True)
            if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)):
                raise MalformedSymbols("bad_zip", str(exc)) from exc
            raise
    return staged


def _members(archive: zipfile.ZipFile, max_files: int) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > max_files:
        raise MalformedSymbols("zip_too_many_files", f"{len(infos)} entries, at most {max_files}")
    members = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise MalformedSymbols("zip_bad_path", info.filename)
        if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if info.flag_bits & 0x1:
            raise MalformedSymbols("zip_encrypted", info.filename)
        members.append(info)
    if not members:
        raise MalformedSymbols("no_symbol_file", "the zip holds no files")
    return members
