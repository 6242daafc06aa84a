"""The system info, misc info and exception streams: what ran, on what, and why it stopped."""

from __future__ import annotations

import re
import struct

from symbolicator.crash_reason import crash_reason
from symbolicator.minidump.bounded import Malformed
from symbolicator.minidump.context import _ContextReader
from symbolicator.minidump.model import ExceptionInfo

OS_NAMES = {  # MINIDUMP_SYSTEM_INFO.PlatformId, named as rust-minidump prints them
    2: "Windows NT", 0x8000: "Unix", 0x8101: "Mac OS X", 0x8102: "iOS", 0x8201: "Linux",
    0x8202: "Solaris", 0x8203: "Android", 0x8204: "PS3", 0x8205: "NaCl", 0x8206: "Fuchsia",
}
CPU_NAMES = {  # MINIDUMP_SYSTEM_INFO.ProcessorArchitecture
    0: "x86", 1: "mips", 3: "ppc", 5: "arm", 6: "ia64", 9: "amd64",
    10: "x86",  # PROCESSOR_ARCHITECTURE_IA32_ON_WIN64: a 32-bit process on 64-bit Windows
    12: "arm64",  # PROCESSOR_ARCHITECTURE_ARM64 (Windows, Crashpad)
    0x8001: "sparc", 0x8002: "ppc64",
    0x8003: "arm64",  # Breakpad's ARM64 before Windows defined 12 ("ARM64_OLD")
    0x8004: "mips64",
}
POINTER_32 = ("x86", "arm", "mips", "ppc", "sparc")

_SYSTEM_INFO = struct.Struct("<HHHBBIIIIIHH12sI")  # ... then the CPU union (x86: vendor first)
_EXCEPTION = struct.Struct("<IIIIQQII15QII")  # MINIDUMP_EXCEPTION_STREAM, 168 bytes


class _SystemStreams(_ContextReader):
    """Parsers of MINIDUMP_SYSTEM_INFO, MINIDUMP_MISC_INFO and MINIDUMP_EXCEPTION_STREAM."""

    def system_info(self, rva: int, size: int) -> None:
        self.need(size, _SYSTEM_INFO.size, "system info")
        (arch, level, revision, cpus, _product, major, minor, build, platform, csd_rva, _suite,
         _reserved, vendor, _version_info) = _SYSTEM_INFO.unpack_from(self.data, rva)
        system = self.system
        system.os = OS_NAMES.get(platform, f"{platform:#x}")
        system.cpu_arch = CPU_NAMES.get(arch, f"{arch:#x}")
        system.cpu_count = cpus
        if system.cpu_arch in ("x86", "amd64"):
            # rust-minidump: "GenuineIntel family 6 model 13 stepping 8" on x86, no vendor on amd64
            prefix = vendor.rstrip(b"\0").decode("latin-1") + " " if system.cpu_arch == "x86" and vendor.strip(b"\0") else ""
            system.cpu_info = f"{prefix}family {level} model {(revision >> 8) & 0xFF} stepping {revision & 0xFF}"
        csd = ""
        if csd_rva:
            try:
                csd = self.utf16(csd_rva, "system info CSD version").strip()
            except Malformed as exc:
                self.note(str(exc))
        system.os_ver = _os_version(major, minor, build, csd)

    def misc_info(self, rva: int, size: int) -> None:
        # MINIDUMP_MISC_INFO: SizeOfInfo, Flags1, ProcessId (valid with MINIDUMP_MISC1_PROCESS_ID)
        if size >= 12 and self.u32(rva + 4, "misc info") & 1:
            self.dump.pid = self.u32(rva + 8, "misc info")

    def exception_stream(self, rva: int, size: int) -> None:
        self.need(size, _EXCEPTION.size, "exception")
        thread_id, _align, code, flags, _record, address, count, _unused, *info, context_size, context_rva = (
            _EXCEPTION.unpack_from(self.data, rva))
        parameters = info[: min(count, 15)]
        system = self.system
        mask = 0xFFFFFFFF if system.cpu_arch in POINTER_32 else (1 << 64) - 1
        # 32-bit dumps may carry sign-extended addresses: 0xffffffff80000045 means 0x80000045.
        crash_address = address
        if system.os == "Windows NT" and code in (0xC0000005, 0xC0000006) and len(parameters) >= 2:
            crash_address = parameters[1]  # the data address of the access violation
        self.exception = ExceptionInfo(
            thread_id=thread_id, code=code, flags=flags, address=crash_address & mask,
            reason=crash_reason(system.os, system.cpu_arch, code, flags, parameters),
            parameters=parameters, context=self.context(context_size, context_rva, "exception context"),
            raw_address=address & mask)


def _os_version(major: int, minor: int, build: int, csd: str) -> str:
    """rust-minidump's os_ver: "10.0.19045", "5.1.2600 Service Pack 2", "10.12.6 16G29".

    Breakpad's Linux dumps write 0.0.0 and put `uname -srvm` in the CSD version
    ("Linux 3.13.0-53-generic #89-Ubuntu SMP Wed May 20 ... 2015 x86_64"): the kernel release
    becomes the version and the build drops the leading "Linux" and the trailing machine."""
    version = f"{major}.{minor}.{build}"
    if version == "0.0.0":
        match = _LINUX_UNAME.match(csd)
        if match:
            version, csd = match.group(1), match.group(2)
    return f"{version} {csd}" if csd else version


_LINUX_UNAME = re.compile(r"^Linux ([^ ]+) (.*) \w+(?: GNU/Linux)?$")
