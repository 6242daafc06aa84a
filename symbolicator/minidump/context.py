"""CPU contexts: the registers of a thread or of the exception, for amd64, x86, arm64 and arm."""

from __future__ import annotations

import struct

from symbolicator.minidump.bounded import _U32, MAX_CONTEXT, Malformed, _BoundedReader, what_failed
from symbolicator.minidump.model import CpuContext

# CPU contexts: the CPU bits of ContextFlags name the layout; each layout has its registers
# at a fixed offset, read with one struct and named as rust-minidump names them.
_CONTEXT_CPU_MASK = 0xFFFFFF00
_AMD64_FLAG, _X86_FLAG, _ARM_FLAG = 0x00100000, 0x00010000, 0x40000000
_ARM64_FLAG, _ARM64_OLD_FLAG = 0x00400000, 0x80000000
_AMD64_REGS = struct.Struct("<17Q")  # CONTEXT_AMD64 at 120: Rax..R15 (Windows order), Rip
_AMD64_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
                "r12", "r13", "r14", "r15", "rip")
_X86_REGS = struct.Struct("<12I")  # CONTEXT_X86 at 156: Edi..Ss
_X86_NAMES = ("edi", "esi", "ebx", "edx", "ecx", "eax", "ebp", "eip", None, "eflags", "esp", None)
# CONTEXT_ARM64 (and Breakpad's old ARM64 layout, which differs only in its 64-bit flags and
# where cpsr sits): X0..X28, Fp, Lr, Sp, Pc as 33 u64 at offset 8.
_ARM64_REGS = struct.Struct("<33Q")
_ARM64_NAMES = tuple(f"x{i}" for i in range(29)) + ("fp", "lr", "sp", "pc")
_ARM_REGS = struct.Struct("<16I")  # CONTEXT_ARM at 4: R0..R15
_ARM_NAMES = tuple(f"r{i}" for i in range(11)) + ("fp", "ip", "sp", "lr", "pc")  # r11=fp, r12=ip


class _ContextReader(_BoundedReader):
    """Reads the CPU context a thread or the exception stream points at."""

    def context(self, size: int, rva: int, what: str) -> CpuContext | None:
        """The CPU context at a location, or None (with a note) when it cannot be read."""
        if size == 0:
            return None
        try:
            self.check(rva, size, what)
            return _parse_context(self.take(rva, min(size, MAX_CONTEXT), what), self.system.cpu_arch)
        except (Malformed, struct.error) as exc:
            self.note(f"{what}: {what_failed(exc)}")
            return None


def _parse_context(data: bytes, cpu_arch: str) -> CpuContext:
    """A CONTEXT record, recognised by the CPU bits of its ContextFlags (at offset 48 for
    amd64, whose record starts with six home-parameter slots; at 0 for the others). Records
    may be longer than the base layout (Windows XSAVE/CET contexts append state)."""
    flags0 = _U32.unpack_from(data, 0)[0] & _CONTEXT_CPU_MASK if len(data) >= 4 else 0
    flags48 = _U32.unpack_from(data, 48)[0] & _CONTEXT_CPU_MASK if len(data) >= 52 else 0
    if flags48 == _AMD64_FLAG and (cpu_arch in ("amd64", "unknown") or flags0 not in (_X86_FLAG, _ARM64_FLAG, _ARM_FLAG)):
        return _registers("amd64", data, 120, _AMD64_REGS, _AMD64_NAMES)
    if flags0 == _X86_FLAG:
        return _registers("x86", data, 156, _X86_REGS, _X86_NAMES)
    if flags0 in (_ARM64_FLAG, _ARM64_OLD_FLAG):
        return _registers("arm64", data, 8, _ARM64_REGS, _ARM64_NAMES)
    if flags0 == _ARM_FLAG:
        return _registers("arm", data, 4, _ARM_REGS, _ARM_NAMES)
    raise Malformed(f"unsupported context (flags {flags0:#x}, {len(data)} bytes, cpu {cpu_arch})")


def _registers(arch: str, data: bytes, offset: int, layout: struct.Struct, names: tuple) -> CpuContext:
    if len(data) < offset + layout.size:
        raise Malformed(f"{arch} context of {len(data)} bytes, {offset + layout.size} needed")
    values = layout.unpack_from(data, offset)
    return CpuContext(arch, {name: value for name, value in zip(names, values, strict=False) if name})
