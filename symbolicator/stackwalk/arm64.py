"""arm64 unwinding: CFI, then the frame record chain (fp, lr pairs), then a stack scan.

Apple arm64e signs return addresses and frame pointers (pointer authentication): the high
bits of a saved lr are a signature, stripped with a mask covering the highest module address
(at least 47 bits, Apple's default split), as rust-minidump does.
"""

from __future__ import annotations

from schemas.stack import Frame, FrameTrust
from symbolicator.stackwalk.postfix import eval_cfi_rules
from symbolicator.stackwalk.unwind import UnwindArgs, finish_caller

WIDTH = 8
MASK = (1 << 64) - 1
CALLEE_SAVED = ("x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "fp")
ALIASES = {"x29": "fp", "x30": "lr", "x31": "sp", "wsp": "sp"}
SCAN_WORDS = 40


def is_non_canonical(address: int) -> bool:
    return 0x7FFF_FFFF_FFFF < address < 0xFFFF_8000_0000_0000


def strip_pointer_auth(args: UnwindArgs, pointer: int) -> int:
    highest = max((1 << 47) - 1, max((m.end_addr for m in args.dump.modules), default=0))
    return pointer & ((1 << highest.bit_length()) - 1)


def _with_aliases(registers: dict[str, int]) -> dict[str, int]:
    out = dict(registers)
    for alias, name in ALIASES.items():
        if name in registers:
            out[alias] = registers[name]
    return out


def by_cfi(args: UnwindArgs) -> Frame | None:
    callee = args.callee
    module = callee.module
    if module is None or "sp" not in callee.registers:
        return None
    rules = args.provider.cfi_rules(module, callee.lookup_address - module.base_addr)
    if rules is None:
        return None
    registers = _with_aliases(callee.registers)
    if callee.trust is FrameTrust.frame_pointer:
        # lr recovered from a frame record is a guess; CFI may only use it at function entry.
        registers.pop("lr", None)
        registers.pop("x30", None)
    result = eval_cfi_rules(rules, registers, lambda a: args.stack.read_word(a, WIDTH), MASK)
    if result is None:
        return None
    cfa, ra, others = result
    caller = {r: callee.registers[r] for r in CALLEE_SAVED if r in callee.registers}
    for name, value in others.items():
        caller[ALIASES.get(name, name)] = value
    for name in ("fp", "lr"):
        if name in caller:
            caller[name] = strip_pointer_auth(args, caller[name])
    pc = strip_pointer_auth(args, ra)
    caller.update(sp=cfa, pc=pc)
    return Frame(pc, FrameTrust.cfi, registers=caller)


def by_frame_pointer(args: UnwindArgs) -> Frame | None:
    regs = args.callee.registers
    fp, sp = regs.get("fp"), regs.get("sp")
    if fp is None or sp is None or fp >= MASK - 2 * WIDTH:
        return None
    if fp == 0:
        return None  # the outermost frame record: the walk is over
    caller_fp = args.stack.read_word(fp, WIDTH)
    caller_pc = args.stack.read_word(fp + WIDTH, WIDTH)
    if caller_fp is None or caller_pc is None:
        return None
    caller_fp = strip_pointer_auth(args, caller_fp)
    caller_pc = strip_pointer_auth(args, caller_pc)
    if is_non_canonical(caller_pc):
        return None
    registers = {"pc": caller_pc, "fp": caller_fp, "sp": fp + 2 * WIDTH}
    if caller_fp:
        lr = args.stack.read_word(caller_fp + WIDTH, WIDTH)
        if lr is not None:
            registers["lr"] = strip_pointer_auth(args, lr)
    return Frame(caller_pc, FrameTrust.frame_pointer, registers=registers)


def by_scan(args: UnwindArgs) -> Frame | None:
    sp = args.callee.registers.get("sp")
    if sp is None:
        return None
    trusted = args.callee.trust in (FrameTrust.context, FrameTrust.cfi)
    for i in range(SCAN_WORDS * 4 if trusted else SCAN_WORDS):
        address_of_pc = sp + i * WIDTH
        caller_pc = args.stack.read_word(address_of_pc, WIDTH)
        if caller_pc is None:
            return None
        if caller_pc and args.instruction_seems_valid(caller_pc):
            return Frame(caller_pc, FrameTrust.scan, registers={"pc": caller_pc, "sp": address_of_pc + WIDTH})
    return None


def get_caller_frame(args: UnwindArgs) -> Frame | None:
    """The caller of args.callee, or None when the walk is over."""
    caller = by_cfi(args) or by_frame_pointer(args) or by_scan(args)
    if caller is None:
        return None
    caller.call_size = 4  # every arm64 instruction is 4 bytes: look the BL itself up
    sp, callee_sp = caller.registers.get("sp"), args.callee.registers.get("sp")
    if sp is not None and sp == callee_sp:
        # Leaf functions and function-entry CFI leave sp unchanged; allow it once the pc
        # moves, from the context frame or by CFI, so a frame cannot repeat forever.
        moved = caller.registers.get("pc") != args.callee.registers.get("pc")
        if not moved or not (args.callee.trust is FrameTrust.context or caller.trust is FrameTrust.cfi):
            return None
        caller.registers["sp"] = sp
        pc = caller.registers.get("pc")
        if pc is None or pc < 4096:
            return None
        caller.instruction = pc
        return caller
    return finish_caller(args, caller, "pc", "sp")
