"""The symbol store: identify uploaded debug files and keep them in the Breakpad layout.

Library code (no HTTP, no database), used by the upload endpoint and `crashd symbols upload`.
A file lives at ``<symbols_dir>/<debug_file>/<DEBUG_ID>/<name>``, where sources.LocalDirSource
looks: a Breakpad ``.sym`` as ``sym_file_name(debug_file)`` (``foo.pdb`` -> ``foo.sym``), a
native file (ELF, Mach-O, PDB) under its own name. Who names the module:

- a ``.sym``: its MODULE record. Names given beside it (form fields, query, a zip path) must
  agree, or it is refused ``id_mismatch``.
- a native file: symbolic reads its objects' debug ids (one per architecture of a universal
  Mach-O); the debug file is the name given beside it, else the file's own name. A PE names
  its PDB inside, which symbolic's Python API does not expose: it needs the name given.

Files are written atomically (link into the folder under a dot-name, then rename) and converted
once with cache.build_caches, so the first crash that needs them does not pay. A file that
cannot be converted is refused and the file it would have replaced comes back.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from symbolic.debuginfo import Archive
from symbolic.exceptions import SymbolicError

from symbolicator.symbols.cache import MalformedSymbols, breakpad_debug_id, build_caches, corrupt_path, module_cache_dir
from symbolicator.symbols.sources import LocalDirSource, breakpad_layout, store_root, sym_file_name
from symbolicator.symbols.symfile import read_module_record, scan_sym

SYM_MAGIC = b"MODULE "
STAGING = ".staging"  # under symbols_dir: same file system as the store, so rename works
MAX_OBJECTS = 32  # objects of one archive (a universal Mach-O holds 2-4)
CHUNK = 256 * 1024
# What each native format's module reports as its OS in a minidump (Breakpad's MODULE words).
NATIVE_OS = {"elf": "Linux", "macho": "mac", "pdb": "windows", "pe": "windows"}
# The folder of a debug id in a layout path: a GUID plus age (Breakpad ids are 33 hex digits).
_LAYOUT_ID = re.compile(r"[0-9A-Fa-f]{32,64}")


class TooLarge(MalformedSymbols):
    """Past a size cap (the HTTP layer answers 413 with ``reason``)."""


@dataclass(frozen=True)
class Names:
    """What an uploader said about a file beside it: form fields, query, a zip path."""

    debug_file: str | None = None
    debug_id: str | None = None
    code_file: str | None = None
    code_id: str | None = None
    os: str | None = None
    cpu: str | None = None


@dataclass(frozen=True)
class Identity:
    """The module a stored file serves (debug_file base name, upper-case Breakpad debug_id)."""

    debug_file: str
    debug_id: str
    code_file: str | None
    code_id: str | None
    os: str | None
    cpu: str | None
    file_format: str  # "breakpad", "elf", "macho", "pdb", "pe"


@dataclass(frozen=True)
class StagedFile:
    """An upload copied under ``<symbols_dir>/.staging``, with its digest."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class StoredFile:
    """Where a file went; status is ``stored`` (new content) or ``unchanged``."""

    identity: Identity
    size: int
    sha256: str
    stored_as: str  # relative to symbols_dir, "/"-separated
    status: str

    def as_dict(self) -> dict[str, object]:
        i = self.identity
        return {"debug_file": i.debug_file, "debug_id": i.debug_id, "code_file": i.code_file,
                "code_id": i.code_id, "os": i.os, "cpu": i.cpu, "size": self.size, "sha256": self.sha256,
                "stored_as": self.stored_as, "status": self.status}


# -- identification ---------------------------------------------------------------------------


def compact_id(debug_id: str | None) -> str | None:
    """A debug id as Breakpad names folders: no dashes, upper case (symupload sends it so)."""
    compact = (debug_id or "").replace("-", "").strip().upper()
    return compact or None


def layout_names(path: str) -> Names:
    """The module a ``.../<debug_file>/<DEBUG_ID>/<file>`` path names; empty Names otherwise."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if len(parts) >= 3 and _LAYOUT_ID.fullmatch(parts[-2]):
        return Names(debug_file=parts[-3], debug_id=parts[-2])
    return Names()


def identify(path: Path, *, name: str | None, names: Names = Names()) -> list[Identity]:
    """The modules the debug file at path serves (one, or one per object of a fat archive).

    Raises MalformedSymbols: ``no_module_record``, ``bad_module_id``, ``id_mismatch``,
    ``not_symbols`` (neither a .sym nor a file symbolic reads), ``no_debug_file``.
    """
    with open(path, "rb") as f:
        if f.read(len(SYM_MAGIC)) == SYM_MAGIC:
            f.seek(0)
            return [_sym_identity(f, names)]
    return _native_identities(path, name, names)


def _sym_identity(f: IO[bytes], names: Names) -> Identity:
    module = read_module_record(f.readline(4096))
    if module is None:
        raise MalformedSymbols("no_module_record", "the first line is not a MODULE record")
    key = breakpad_layout(module.debug_file, module.debug_id)
    if key is None:
        raise MalformedSymbols("bad_module_id", f"MODULE names {module.debug_file!r} {module.debug_id!r}")
    _check_agrees(key, names)
    info = scan_sym(itertools.islice(f, 16))  # INFO CODE_ID follows MODULE
    return Identity(key[0], key[1], info.code_file or names.code_file, info.code_id or names.code_id,
                    module.os, module.arch, "breakpad")


def _check_agrees(key: tuple[str, str], names: Names) -> None:
    given = breakpad_layout(names.debug_file or key[0], compact_id(names.debug_id) or key[1])
    if given is None or given[0].lower() != key[0].lower() or given[1] != key[1]:
        raise MalformedSymbols("id_mismatch", f"the file is {key[0]}/{key[1]}, the upload names "
                                              f"{names.debug_file}/{names.debug_id}")


def _native_identities(path: Path, name: str | None, names: Names) -> list[Identity]:
    name = PurePosixPath((name or "").replace("\\", "/")).name or None
    try:
        objects = list(Archive.open(str(path)).iter_objects())
    except SymbolicError as exc:
        raise MalformedSymbols("not_symbols", str(exc).splitlines()[0] if str(exc) else "") from exc
    if not objects or len(objects) > MAX_OBJECTS:
        raise MalformedSymbols("not_symbols", f"{len(objects)} objects")
    formats = {obj.file_format for obj in objects}
    if "breakpad" in formats:  # symbolic reads text symbols that do not start with MODULE
        raise MalformedSymbols("no_module_record", "the first line is not a MODULE record")
    debug_file = names.debug_file or (None if "pe" in formats else name)
    if not debug_file:
        raise MalformedSymbols("no_debug_file", "name the module: debug_file (a PE's is its PDB name)")
    wanted = compact_id(names.debug_id)
    found = []
    for obj in objects:
        key = breakpad_layout(debug_file, breakpad_debug_id(obj.debug_id))
        if key is None or set(key[1]) == {"0"}:
            raise MalformedSymbols("bad_module_id", f"{debug_file!r} {obj.debug_id!r}")
        if wanted is None or key[1] == wanted:
            code_file = names.code_file or (name if obj.file_format in ("elf", "macho", "pe") else None)
            found.append(Identity(key[0], key[1], code_file, obj.code_id or names.code_id,
                                  names.os or NATIVE_OS.get(obj.file_format), names.cpu or obj.arch, obj.file_format))
    if not found:
        raise MalformedSymbols("id_mismatch", f"no object of the file has debug id {wanted}")
    return found


# -- staging and storing ----------------------------------------------------------------------


def stage(src: IO[bytes], symbols_dir: Path, *, limit: int | None = None) -> StagedFile:
    """Copy src into the staging folder (hashing it, fsync'ed). Raises TooLarge past limit bytes."""
    folder = symbols_dir / STAGING
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="upload-")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise TooLarge("too_large_decompressed", "decompressed upload exceeds the limit")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return StagedFile(Path(tmp), digest.hexdigest(), size)


def stored_name(identity: Identity, name: str | None) -> str:
    """The file name inside the module folder: ``<debug_file minus .pdb>.sym`` for a .sym, else
    the file's own base name (the debug file when it has none, or one LocalDirSource skips)."""
    if identity.file_format == "breakpad":
        return sym_file_name(identity.debug_file)
    base = PurePosixPath((name or "").replace("\\", "/")).name
    ok = base and not base.startswith(".") and "\0" not in base and not base.endswith((".tmp", ".part", ".json"))
    return base if ok else identity.debug_file


def stored_path(identity: Identity, name: str, project_id: int | None = None) -> str:
    """Where store_file puts identity's file called name, relative to the symbols folder:
    ``[.projects/<id>/]<debug_file>/<DEBUG_ID>/<name>``."""
    return (store_root(Path(), project_id) / identity.debug_file / identity.debug_id / name).as_posix()


def store_file(staged: StagedFile, identity: Identity, *, name: str, symbols_dir: Path,
               cache_dir: Path, project_id: int | None = None, room: int | None = None) -> StoredFile:
    """Put staged at its place for identity in the store of project_id (None: the shared one;
    staged itself stays) and convert it. ``stored_as`` is relative to symbols_dir either way.
    The same content already there is ``unchanged`` and takes no room.

    Raises TooLarge (``symbol_quota_exceeded``) when new content is larger than room bytes;
    MalformedSymbols when it cannot be converted (nothing kept: the file it replaced is back);
    OSError when the store cannot be written.
    """
    root, cache_dir = store_root(symbols_dir, project_id), store_root(cache_dir, project_id)
    rel = stored_path(identity, name, project_id)
    final = symbols_dir / rel
    folder = final.parent
    if final.is_file() and file_sha256(final) == staged.sha256:
        return StoredFile(identity, staged.size, staged.sha256, rel, "unchanged")
    if room is not None and staged.size > room:
        raise TooLarge("symbol_quota_exceeded", f"{staged.size} bytes, {max(room, 0)} left in the store")
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    tmp, backup = folder / f".{name}-{token}.tmp", folder / f".{name}-{token}.old"
    _link_or_copy(staged.path, tmp)
    had_old = final.is_file()
    if had_old:
        os.link(final, backup)  # a second name for the old file: readers never find none
    os.replace(tmp, final)
    try:
        _convert(final, identity, root, cache_dir, scratch_dir=symbols_dir / STAGING)
    except BaseException:
        _roll_back(final, backup if had_old else None, identity, cache_dir)
        raise
    backup.unlink(missing_ok=True)
    return StoredFile(identity, staged.size, staged.sha256, rel, "stored")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copyfile(src, dst)


def _convert(final: Path, identity: Identity, root: Path, cache_dir: Path, *, scratch_dir: Path) -> None:
    """Build the module's caches from final (in the store at root). When LocalDirSource would
    pick another file of the folder (a .sym beside this ELF), final is only checked, in a
    scratch folder: the caches of the file crashes will use stay."""
    picked = LocalDirSource(root).fetch(identity.debug_file, identity.debug_id).path
    ids = {"debug_file": identity.debug_file, "debug_id": identity.debug_id}
    try:
        if picked is not None and picked.resolve() == final.resolve():
            build_caches(final, cache_dir, **ids)
        else:
            with tempfile.TemporaryDirectory(dir=scratch_dir) as scratch:
                build_caches(final, Path(scratch), **ids)
    except (MalformedSymbols, OSError):
        raise
    except Exception as exc:
        raise MalformedSymbols("conversion_failed", f"{type(exc).__name__}: {exc}") from exc


def _roll_back(final: Path, backup: Path | None, identity: Identity, cache_dir: Path) -> None:
    """Undo store_file: the old file back (or none), no corrupt marker, no empty folders."""
    corrupt_path(module_cache_dir(cache_dir, identity.debug_file, identity.debug_id), final).unlink(missing_ok=True)
    if backup is not None:
        os.replace(backup, final)
        return
    final.unlink(missing_ok=True)
    for folder in (final.parent, final.parent.parent):
        try:
            folder.rmdir()
        except OSError:
            break  # not empty: another file of the module, or of another id


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at path, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
