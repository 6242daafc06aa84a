"""The module and unloaded module lists: names, address ranges, versions, and the debug
file, debug id and code id derived from each module's CodeView record."""

from __future__ import annotations

import struct

from schemas.stack import Module
from symbolicator.minidump.bounded import _U32, MAX_CODEVIEW, Malformed, _BoundedReader

_MODULE = struct.Struct("<QIIII13IIIII")  # MINIDUMP_MODULE up to MiscRecord; 108 with reserved
_MODULE_SIZE = 108
_UNLOADED_MODULE = struct.Struct("<QIIII")  # MINIDUMP_UNLOADED_MODULE, 24 bytes


class _ModuleStreams(_BoundedReader):
    """Parsers of MINIDUMP_MODULE_LIST and MINIDUMP_UNLOADED_MODULE_LIST."""

    def module_list(self, rva: int, size: int) -> None:
        start, count = self.list_start(rva, size, _MODULE_SIZE, "module list")
        count = self.clip("modules", count, self.limits.modules)
        for index in range(count):
            self.modules.append(self.module(start + index * _MODULE_SIZE))

    def module(self, offset: int) -> Module:
        """One MINIDUMP_MODULE. A name or CodeView record that cannot be read is noted and
        left out; the module stays (its address range still names frames)."""
        (base, size, _checksum, timestamp, name_rva, *version_info, cv_size, cv_rva, _misc_size,
         _misc_rva) = _MODULE.unpack_from(self.data, offset)
        os = self.system.os
        try:
            name = self.utf16(name_rva, "module name")
        except Malformed as exc:
            self.note(f"module at {base:#x}: {exc}")
            name = ""
        codeview = None
        if cv_size:
            try:
                self.check(cv_rva, cv_size, "CodeView record")
                codeview = self.take(cv_rva, min(cv_size, MAX_CODEVIEW), "CodeView record")
            except Malformed as exc:
                self.note(f"module {name or hex(base)}: {exc}")
        debug_file, debug_id, code_id = _codeview(codeview, os, name, timestamp, size)
        version = _file_version(version_info, os) if version_info[0] else None
        return Module(base, size, name, code_id, debug_file, debug_id, version)

    def unloaded_module_list(self, rva: int, size: int) -> None:
        """MINIDUMP_UNLOADED_MODULE_LIST: header size, entry size, count, then entries."""
        self.need(size, 12, "unloaded module list")
        header, entry, count = struct.unpack_from("<III", self.data, rva)
        if entry < _UNLOADED_MODULE.size or header < 12:
            raise Malformed(f"entry size {entry}, header size {header}")
        fit = max(0, (size - header) // entry)
        if count > fit:
            self.note(f"unloaded module list: count {count} does not fit the stream's {size} bytes; reading {fit}")
            count = fit
        count = self.clip("unloaded modules", count, self.limits.unloaded_modules)
        for index in range(count):
            base, module_size, _checksum, timestamp, name_rva = _UNLOADED_MODULE.unpack_from(
                self.data, rva + header + index * entry)
            try:
                name = self.utf16(name_rva, f"unloaded module {index} name")
            except Malformed as exc:
                self.note(str(exc))
                continue
            self.unloaded.append(Module(base, module_size, name, code_id=f"{timestamp:08x}{module_size:x}"))


def _guid(data: bytes) -> str:
    """A GUID as Breakpad prints it: Data1, Data2, Data3 as little-endian integers, then the
    eight bytes of Data4 in order, upper-case hex without separators."""
    return (data[3::-1] + data[5:3:-1] + data[7:5:-1] + data[8:16]).hex().upper()


_NIL_GUID = "0" * 32


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _codeview(record: bytes | None, os: str, name: str, timestamp: int, size: int
              ) -> tuple[str | None, str | None, str | None]:
    """(debug_file, debug_id, code_id) of a module, as rust-minidump derives them.

    - ``RSDS`` (PDB 7.0): GUID + age in hex -> debug id; the PDB's base name is the debug file.
      macOS/iOS writers use the same record with the Mach-O UUID and age 0; there the code id
      is the UUID in lower case (``67e9247c814e392ba027dbde6748fcbf``).
    - ``NB10`` (PDB 2.0): signature (a timestamp) %08X + age %x.
    - ``BpEL`` (Breakpad ELF, bytes ``LEpB``): the build id's first 16 bytes read as a GUID, age 0; the code id
      is the whole build id in lower-case hex. An all-zero build id (fonts, mapped data files)
      has neither.
    - Windows code id: TimeDateStamp %08x + SizeOfImage %x, lower case as rust-minidump
      prints it (``62d66daa101000``; symbol servers match it case-insensitively). Windows
      modules without a CodeView record get it too.
    """
    windows_code_id = f"{timestamp:08x}{size:x}"
    record = record or b""  # no CodeView record: only the Windows code id below
    signature = record[:4]
    if signature == b"RSDS" and len(record) >= 24:
        guid, age = _guid(record[4:20]), _U32.unpack_from(record, 20)[0]
        pdb = record[24:].split(b"\0", 1)[0].decode("utf-8", "replace")
        debug_id = None if guid == _NIL_GUID else f"{guid}{age:x}"
        code_id = guid.lower() if os in ("Mac OS X", "iOS") else windows_code_id
        return _basename(pdb), debug_id, code_id
    if signature == b"NB10" and len(record) >= 16:
        pdb_signature, age = struct.unpack_from("<II", record, 8)
        pdb = record[16:].split(b"\0", 1)[0].decode("utf-8", "replace")
        return _basename(pdb), f"{pdb_signature:08X}{age:x}", windows_code_id
    if signature == b"LEpB":  # MD_CVINFOELF_SIGNATURE 'BpEL' as a little-endian u32
        build_id = record[4:]
        if not any(build_id):
            return _basename(name), None, None
        padded = build_id[:16].ljust(16, b"\0")  # short build ids are padded with zeros
        return _basename(name), f"{_guid(padded)}0", build_id.hex()
    return None, None, windows_code_id if os == "Windows NT" else None


def _file_version(version_info: list[int], os: str) -> str | None:
    """VS_FIXEDFILEINFO's file version "10.0.19041.1806" (rust-minidump's module version).
    Crashpad's Linux modules keep the four fields unsplit ("0.0.0.0")."""
    signature, struct_version, file_hi, file_lo, product_hi, product_lo = version_info[:6]
    if signature != 0xFEEF04BD or struct_version != 0x10000:
        return None
    if os in ("Windows NT", "Mac OS X", "iOS"):
        return f"{file_hi >> 16}.{file_hi & 0xFFFF}.{file_lo >> 16}.{file_lo & 0xFFFF}"
    return f"{file_hi}.{file_lo}.{product_hi}.{product_lo}"
