"""The Crashpad info stream: report and client ids, simple annotations and per-module
annotations (list, simple and string-typed annotation objects)."""

from __future__ import annotations

import struct

from symbolicator.minidump.bounded import Malformed, _BoundedReader, what_failed
from symbolicator.minidump.model import CrashpadInfo, CrashpadModuleInfo
from symbolicator.minidump.modules import _guid


class _CrashpadStreams(_BoundedReader):
    """Parser of MinidumpCrashpadInfo and the structures it points at."""

    def crashpad_info(self, rva: int, size: int) -> None:
        """MinidumpCrashpadInfo: version, report_id and client_id (UUIDs), simple annotations
        (a MinidumpSimpleStringDictionary), module list (per-module annotations)."""
        self.need(size, 52, "crashpad info")
        _version, report_id, client_id, dict_size, dict_rva, list_size, list_rva = struct.unpack_from(
            "<I16s16sIIII", self.data, rva)
        info = CrashpadInfo(report_id=_uuid(report_id), client_id=_uuid(client_id))
        self.dump.crashpad = info
        info.simple_annotations = self.string_dictionary(dict_size, dict_rva, "crashpad simple annotations")
        if list_size:
            start, count = self.list_start(list_rva, list_size, 12, "crashpad module list")
            count = self.clip("crashpad module infos", count, self.limits.modules)
            for index in range(count):
                module_index, info_size, info_rva = struct.unpack_from("<III", self.data, start + index * 12)
                try:
                    info.modules.append(self.crashpad_module(module_index, info_size, info_rva))
                except (Malformed, struct.error) as exc:
                    self.note(f"crashpad module info {index}: {what_failed(exc)}")
        annotations = self.dump.annotations
        annotations.update(info.simple_annotations)
        for module in info.modules:
            for key, value in (*module.simple_annotations.items(), *module.annotation_objects.items()):
                annotations.setdefault(key, value)

    def crashpad_module(self, module_index: int, size: int, rva: int) -> CrashpadModuleInfo:
        """MinidumpModuleCrashpadInfo: version, then locations of list annotations (an RVA list
        of strings), simple annotations and annotation objects. Older writers stop before the
        annotation objects (a 20-byte record: mac-x64-electron)."""
        self.need(size, 20, "crashpad module info")
        self.check(rva, min(size, 28), "crashpad module info")
        _version, list_size, list_rva, dict_size, dict_rva = struct.unpack_from("<IIIII", self.data, rva)
        objects_size, objects_rva = struct.unpack_from("<II", self.data, rva + 20) if size >= 28 else (0, 0)
        module = CrashpadModuleInfo(module_index)
        if list_size:
            start, count = self.list_start(list_rva, list_size, 4, "crashpad list annotations")
            count = self.annotation_count(count)
            for index in range(count):
                module.list_annotations.append(self.utf8(self.u32(start + index * 4, "list annotation"), "list annotation"))
        module.simple_annotations = self.string_dictionary(dict_size, dict_rva, "crashpad module simple annotations")
        if objects_size:
            # MinidumpAnnotationList: count, then (name RVA, u16 type, u16 reserved, value RVA);
            # type 1 is a string, its value a MinidumpByteArray (u32 length, bytes).
            start, count = self.list_start(objects_rva, objects_size, 12, "crashpad annotation objects")
            count = self.annotation_count(count)
            for index in range(count):
                name_rva, kind, _reserved, value_rva = struct.unpack_from("<IHHI", self.data, start + index * 12)
                if kind == 1:
                    module.annotation_objects[self.utf8(name_rva, "annotation name")] = self.utf8(value_rva, "annotation value")
        return module

    def annotation_count(self, count: int) -> int:
        """How many of a list's count annotations to read: limits.annotations in all the
        dump's dictionaries and lists together (a hostile dump: thousands of modules with a
        thousand annotations each)."""
        listed, read = self.annotations_seen
        allowed = min(count, max(0, self.limits.annotations - read))
        self.annotations_seen = (listed + count, read + allowed)
        if allowed < count:
            self.cut["annotations"] = self.annotations_seen
        return allowed

    def string_dictionary(self, size: int, rva: int, what: str) -> dict[str, str]:
        """A MinidumpSimpleStringDictionary: count, then (key RVA, value RVA) of UTF-8 strings."""
        if not size:
            return {}
        start, count = self.list_start(rva, size, 8, what)
        count = self.annotation_count(count)
        entries: dict[str, str] = {}
        for index in range(count):
            key_rva, value_rva = struct.unpack_from("<II", self.data, start + index * 8)
            entries[self.utf8(key_rva, what)] = self.utf8(value_rva, what)
        return entries


def _uuid(data: bytes) -> str:
    """A Crashpad UUID (GUID layout) as "42F9DE72-518A-43DD-97D7-8DDC328D3662"."""
    text = _guid(data)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
