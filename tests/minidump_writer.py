"""A small minidump writer: builds valid dumps stream by stream for tests.

Layout (MSDN MINIDUMP_HEADER): 'MDMP', version, stream count, directory RVA, checksum,
timestamp, flags. Then the data that streams point at (strings, CodeView records, contexts,
stack bytes: ``add_data`` returns its RVA), then the stream bodies, then the directory of
(type, size, rva). Every piece is padded to 4 bytes.

Streams: system info (any CPU), thread lists with amd64/x86/arm64/arm contexts and stacks,
module lists with RSDS/NB10/BpEL CodeView records, exceptions with their own context, memory
and Memory64 lists, thread names, misc info, Breakpad info and assertion, Linux text streams,
Crashpad info with annotations; lists can be written with old Breakpad macOS padding.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

MINIDUMP_SIGNATURE = 0x504D444D  # b"MDMP" little-endian
MINIDUMP_VERSION = 0xA793
THREAD_LIST_STREAM, MODULE_LIST_STREAM, MEMORY_LIST_STREAM, EXCEPTION_STREAM = 3, 4, 5, 6
SYSTEM_INFO_STREAM, MEMORY64_LIST_STREAM, UNLOADED_MODULE_LIST_STREAM = 7, 9, 0xE
MISC_INFO_STREAM, THREAD_NAMES_STREAM = 0xF, 0x18
BREAKPAD_INFO_STREAM, ASSERTION_INFO_STREAM = 0x47670001, 0x47670002
LINUX_CPU_INFO, LINUX_PROC_STATUS, LINUX_LSB_RELEASE = 0x47670003, 0x47670004, 0x47670005
LINUX_CMD_LINE, LINUX_ENVIRON, LINUX_MAPS = 0x47670006, 0x47670007, 0x47670009
CRASHPAD_INFO_STREAM = 0x43500001

ARCH_X86, ARCH_ARM, ARCH_AMD64, ARCH_ARM64, ARCH_ARM64_OLD = 0, 5, 9, 12, 0x8003
PLATFORM_WINDOWS, PLATFORM_MAC, PLATFORM_IOS, PLATFORM_LINUX, PLATFORM_ANDROID = 2, 0x8101, 0x8102, 0x8201, 0x8203

AMD64_REGISTERS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
                   "r12", "r13", "r14", "r15", "rip")
X86_REGISTERS = ("edi", "esi", "ebx", "edx", "ecx", "eax", "ebp", "eip", "cs", "eflags", "esp", "ss")
ARM64_REGISTERS = tuple(f"x{i}" for i in range(29)) + ("fp", "lr", "sp", "pc")
ARM_REGISTERS = tuple(f"r{i}" for i in range(11)) + ("fp", "ip", "sp", "lr", "pc")


# -- CPU contexts ---------------------------------------------------------------------------


def amd64_context(**registers: int) -> bytes:
    """A CONTEXT_AMD64 (1232 bytes): ContextFlags at 48, Rax..R15 and Rip from 120."""
    data = bytearray(1232)
    struct.pack_into("<I", data, 48, 0x0010000B)  # CONTEXT_AMD64 | CONTROL | INTEGER | FLOATING
    struct.pack_into("<17Q", data, 120, *(registers.get(name, 0) for name in AMD64_REGISTERS))
    return bytes(data)


def x86_context(**registers: int) -> bytes:
    """A CONTEXT_X86 (716 bytes): ContextFlags at 0, Edi..Ss from 156."""
    data = bytearray(716)
    struct.pack_into("<I", data, 0, 0x0001003F)  # CONTEXT_X86 | CONTEXT_ALL
    struct.pack_into("<12I", data, 156, *(registers.get(name, 0) for name in X86_REGISTERS))
    return bytes(data)


def arm64_context(old: bool = False, **registers: int) -> bytes:
    """A CONTEXT_ARM64 (912 bytes: flags, cpsr, X0..X28, Fp, Lr, Sp, Pc, ...) or, with old,
    Breakpad's pre-Windows layout (u64 flags 0x80000000, the same registers at 8..272)."""
    data = bytearray(912)
    if old:
        struct.pack_into("<Q", data, 0, 0x80000003)
    else:
        struct.pack_into("<II", data, 0, 0x00400003, 0x60000000)
    struct.pack_into("<33Q", data, 8, *(registers.get(name, 0) for name in ARM64_REGISTERS))
    return bytes(data)


def arm_context(**registers: int) -> bytes:
    """A CONTEXT_ARM (368 bytes): ContextFlags, R0..R15, Cpsr, ..."""
    data = bytearray(368)
    struct.pack_into("<I", data, 0, 0x40000003)
    struct.pack_into("<16I", data, 4, *(registers.get(name, 0) for name in ARM_REGISTERS))
    return bytes(data)


# -- CodeView records -----------------------------------------------------------------------


def guid_bytes(breakpad_guid: str) -> bytes:
    """The 16 bytes of a GUID written "5A9832E5287241C1838ED98914E9B7FF" (Breakpad order)."""
    return uuid.UUID(breakpad_guid).bytes_le


def rsds(guid: str, age: int, pdb: str) -> bytes:
    """A PDB 7.0 CodeView record: 'RSDS', GUID, age, NUL-terminated PDB path."""
    return b"RSDS" + guid_bytes(guid) + struct.pack("<I", age) + pdb.encode() + b"\0"


def nb10(signature: int, age: int, pdb: str) -> bytes:
    """A PDB 2.0 CodeView record: 'NB10', offset 0, signature (a timestamp), age, PDB path."""
    return b"NB10" + struct.pack("<III", 0, signature, age) + pdb.encode() + b"\0"


def elf_build_id(build_id: bytes) -> bytes:
    """Breakpad's ELF CodeView record: 'BpEL' as a little-endian u32, then the build id."""
    return struct.pack("<I", 0x4270454C) + build_id


# -- stream items ---------------------------------------------------------------------------


@dataclass
class ThreadSpec:
    """A thread to write: its context (bytes from *_context) and stack."""

    thread_id: int
    context: bytes = b""
    stack_base: int = 0
    stack: bytes = b""
    stack_in_memory_list: bool = False  # write RVA 0 for the stack, as Windows does


@dataclass
class ModuleSpec:
    base: int
    size: int
    name: str
    codeview: bytes = b""
    timestamp: int = 0
    file_version: tuple[int, int, int, int] | None = None  # (hi>>16, hi&0xffff, lo>>16, lo&0xffff)


@dataclass
class MinidumpWriter:
    """Collects streams and serializes them into a minidump."""

    timestamp: int = 1_700_000_000
    streams: list[tuple[int, bytes]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)  # what streams point at, after the header

    HEADER_SIZE = 32

    def add_stream(self, stream_type: int, data: bytes) -> "MinidumpWriter":
        self.streams.append((stream_type, data))
        return self

    def add_data(self, data: bytes) -> int:
        """Place data (4-byte aligned) after the header; its RVA."""
        self.data += b"\0" * (-len(self.data) % 4)
        rva = self.HEADER_SIZE + len(self.data)
        self.data += data
        return rva

    def add_string(self, text: str) -> int:
        """A MINIDUMP_STRING (u32 byte length, UTF-16LE, NUL); its RVA."""
        encoded = text.encode("utf-16-le")
        return self.add_data(struct.pack("<I", len(encoded)) + encoded + b"\0\0")

    def add_utf8(self, text: str) -> int:
        """A Crashpad MinidumpUTF8String (u32 length, UTF-8, NUL); its RVA."""
        encoded = text.encode()
        return self.add_data(struct.pack("<I", len(encoded)) + encoded + b"\0")

    def location(self, data: bytes) -> tuple[int, int]:
        """(DataSize, Rva) of data placed after the header; (0, 0) for no data."""
        return (len(data), self.add_data(data)) if data else (0, 0)

    # -- streams

    def add_system_info(self, arch: int = ARCH_AMD64, platform: int = PLATFORM_LINUX, cpus: int = 4, *,
                        version: tuple[int, int, int] = (6, 1, 0), csd: str | None = None,
                        level: int = 6, revision: int = 0, vendor: bytes = b"") -> "MinidumpWriter":
        csd_rva = self.add_string(csd) if csd is not None else 0
        body = struct.pack("<HHHBBIIIIIHH", arch, level, revision, cpus, 1, *version, platform, csd_rva, 0, 0)
        return self.add_stream(SYSTEM_INFO_STREAM, body + vendor.ljust(12, b"\0")[:12] + b"\0" * 12)

    def _list(self, entries: list[bytes], padded: bool) -> bytes:
        """A u32 count and the entries; padded: 4 bytes after the count (old Breakpad macOS)."""
        return struct.pack("<I", len(entries)) + (b"\0" * 4 if padded else b"") + b"".join(entries)

    def add_thread_list(self, threads: list[ThreadSpec], padded: bool = False, share: bool = False) -> "MinidumpWriter":
        """share: equal contexts and stacks are written once and pointed at by every thread
        that has them, as a hostile dump listing one thread 200,000 times does (48 bytes a
        thread)."""
        entries = []
        placed: dict[bytes, tuple[int, int]] = {}

        def location(data: bytes) -> tuple[int, int]:
            if not share:
                return self.location(data)
            if data not in placed:
                placed[data] = self.location(data)
            return placed[data]

        for thread in threads:
            context_size, context_rva = location(thread.context)
            stack_size, stack_rva = location(thread.stack)
            if thread.stack_in_memory_list:
                stack_rva = 0
            entries.append(struct.pack("<IIIIQQIIII", thread.thread_id, 0, 0, 0, 0, thread.stack_base,
                                       stack_size, stack_rva, context_size, context_rva))
        return self.add_stream(THREAD_LIST_STREAM, self._list(entries, padded))

    def add_module_list(self, modules: list[ModuleSpec], padded: bool = False) -> "MinidumpWriter":
        entries = []
        for module in modules:
            name_rva = self.add_string(module.name)
            cv_size, cv_rva = self.location(module.codeview)
            version = [0] * 13
            if module.file_version:
                a, b, c, d = module.file_version
                version[:4] = [0xFEEF04BD, 0x10000, a << 16 | b, c << 16 | d]
            entries.append(struct.pack("<QIIII13IIIIIQQ", module.base, module.size, 0, module.timestamp,
                                       name_rva, *version, cv_size, cv_rva, 0, 0, 0, 0))
        return self.add_stream(MODULE_LIST_STREAM, self._list(entries, padded))

    def add_exception(self, thread_id: int, code: int, flags: int = 0, address: int = 0,
                      parameters: tuple[int, ...] = (), context: bytes = b"") -> "MinidumpWriter":
        context_size, context_rva = self.location(context)
        info = list(parameters) + [0] * (15 - len(parameters))
        body = struct.pack("<IIIIQQII15QII", thread_id, 0, code, flags, 0, address, len(parameters), 0,
                           *info, context_size, context_rva)
        return self.add_stream(EXCEPTION_STREAM, body)

    def add_memory_list(self, regions: list[tuple[int, bytes]], padded: bool = False) -> "MinidumpWriter":
        entries = [struct.pack("<QII", base, len(data), self.add_data(data)) for base, data in regions]
        return self.add_stream(MEMORY_LIST_STREAM, self._list(entries, padded))

    def add_memory64_list(self, regions: list[tuple[int, bytes]]) -> "MinidumpWriter":
        base_rva = self.add_data(b"".join(data for _, data in regions)) if regions else 0
        body = struct.pack("<QQ", len(regions), base_rva)
        body += b"".join(struct.pack("<QQ", base, len(data)) for base, data in regions)
        return self.add_stream(MEMORY64_LIST_STREAM, body)

    def add_thread_names(self, names: dict[int, str]) -> "MinidumpWriter":
        entries = [struct.pack("<IQ", tid, self.add_string(name)) for tid, name in names.items()]
        return self.add_stream(THREAD_NAMES_STREAM, self._list(entries, False))

    def add_unloaded_modules(self, modules: list[ModuleSpec]) -> "MinidumpWriter":
        entries = [struct.pack("<QIIII", m.base, m.size, 0, m.timestamp, self.add_string(m.name)) for m in modules]
        return self.add_stream(UNLOADED_MODULE_LIST_STREAM, struct.pack("<III", 12, 24, len(entries)) + b"".join(entries))

    def add_misc_info(self, pid: int) -> "MinidumpWriter":
        return self.add_stream(MISC_INFO_STREAM, struct.pack("<IIIIII", 24, 1, pid, 0, 0, 0))

    def add_breakpad_info(self, dump_thread_id: int | None, requesting_thread_id: int | None) -> "MinidumpWriter":
        validity = (dump_thread_id is not None) | (requesting_thread_id is not None) << 1
        return self.add_stream(BREAKPAD_INFO_STREAM, struct.pack("<III", validity, dump_thread_id or 0,
                                                                 requesting_thread_id or 0))

    def add_assertion(self, expression: str, function: str, file: str, line: int, kind: int) -> "MinidumpWriter":
        def utf16(text: str) -> bytes:
            return text.encode("utf-16-le").ljust(256, b"\0")[:256]

        body = utf16(expression) + utf16(function) + utf16(file) + struct.pack("<II", line, kind)
        return self.add_stream(ASSERTION_INFO_STREAM, body)

    def add_crashpad_info(self, report_id: str, client_id: str, simple: dict[str, str],
                          modules: list[tuple[int, list[str], dict[str, str], dict[str, str]]] = ()) -> "MinidumpWriter":
        """Crashpad info: ids, simple annotations, and per module (index, list annotations,
        simple annotations, string annotation objects)."""
        links = []
        for index, lists, module_simple, objects in modules:
            list_loc = self.location(self._list([struct.pack("<I", self.add_utf8(t)) for t in lists], False))
            dict_loc = self.location(self.string_dictionary(module_simple))
            object_entries = [struct.pack("<IHHI", self.add_utf8(k), 1, 0, self.add_utf8(v)) for k, v in objects.items()]
            objects_loc = self.location(self._list(object_entries, False))
            record = struct.pack("<I6I", 1, *list_loc, *dict_loc, *objects_loc)
            links.append(struct.pack("<III", index, *self.location(record)))
        body = struct.pack("<I", 1) + guid_bytes(report_id) + guid_bytes(client_id)
        body += struct.pack("<II", *self.location(self.string_dictionary(simple)))
        body += struct.pack("<II", *self.location(self._list(links, False)))
        return self.add_stream(CRASHPAD_INFO_STREAM, body)

    def string_dictionary(self, entries: dict[str, str]) -> bytes:
        """A MinidumpSimpleStringDictionary body: count, (key RVA, value RVA) pairs."""
        return self._list([struct.pack("<II", self.add_utf8(k), self.add_utf8(v)) for k, v in entries.items()], False)

    def build(self) -> bytes:
        data = bytes(self.data) + b"\0" * (-len(self.data) % 4)
        offset = self.HEADER_SIZE + len(data)
        directory, payload = bytearray(), bytearray()
        for stream_type, body in self.streams:
            directory += struct.pack("<III", stream_type, len(body), offset + len(payload))
            payload += body
            payload += b"\0" * (-len(payload) % 4)
        directory_rva = offset + len(payload)
        header = struct.pack("<IIIIIIQ", MINIDUMP_SIGNATURE, MINIDUMP_VERSION, len(self.streams),
                             directory_rva, 0, self.timestamp, 0)
        return header + data + bytes(payload) + bytes(directory)


def small_dump(tag: int = 0, size: int = 0) -> bytes:
    """A valid little dump; tag changes its bytes (distinct crashes), size pads it."""
    writer = MinidumpWriter(timestamp=1_700_000_000 + tag).add_system_info()
    if size:
        writer.add_stream(0x4767_0000 + 0x100, b"\xab" * size)  # an unknown stream, as padding
    return writer.build()


def thread_copies_dump(copies: int, crashing_last: bool = False) -> bytes:
    """A hostile dump (issue 11 item 12): one amd64 Linux thread (id 7) listed ``copies``
    times, 48 bytes a copy, every copy pointing at one context and one stack that holds 8
    return addresses into the one module (a 9-frame walk by scanning, without symbols).
    With crashing_last, a distinct crashing thread (id 99, rip 0x401020) is listed after
    them; otherwise thread 7 crashed. 200,000 copies make 9.6 MB."""
    stack = bytearray(0x100)
    for i in range(8):
        struct.pack_into("<Q", stack, 8 + 16 * i, 0x401100 + 0x100 * i)
    threads = [ThreadSpec(7, amd64_context(rip=0x401010, rsp=0x7000), 0x7000, bytes(stack))] * copies
    if crashing_last:
        threads.append(ThreadSpec(99, amd64_context(rip=0x401020, rsp=0x7000), 0x7000, bytes(stack)))
    writer = MinidumpWriter().add_system_info(arch=ARCH_AMD64, platform=PLATFORM_LINUX)
    writer.add_thread_list(threads, share=True)
    writer.add_module_list([ModuleSpec(0x400000, 0x10000, "/opt/game/game", elf_build_id(bytes(range(1, 21))))])
    writer.add_exception(threads[-1].thread_id, 0xB, context=threads[-1].context)
    return writer.build()
