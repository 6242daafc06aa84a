"""amd64 unwinding: CFI, then the rbp chain (not on Windows), then a stack scan."""

from __future__ import annotations

from schemas.stack import Frame, FrameTrust
from symbolicator.stackwalk.postfix import eval_cfi_rules
from symbolicator.stackwalk.unwind import UnwindArgs, finish_caller

WIDTH = 8
MASK = (1 << 64) - 1
CALLEE_SAVED = ("rbx", "rbp", "r12", "r13", "r14", "r15")
SCAN_WORDS = 40
MAX_FRAME_GAP = 128 * 1024


def is_non_canonical(address: int) -> bool:
    """x86-64 uses 48-bit addresses sign-extended: anything in the hole is no pointer."""
    return 0x7FFF_FFFF_FFFF < address < 0xFFFF_8000_0000_0000


def by_cfi(args: UnwindArgs) -> Frame | None:
    callee = args.callee
    module = callee.module
    if module is None or "rsp" not in callee.registers:
        return None
    rules = args.provider.cfi_rules(module, callee.lookup_address - module.base_addr)
    if rules is None:
        return None
    result = eval_cfi_rules(rules, callee.registers, lambda a: args.stack.read_word(a, WIDTH), MASK)
    if result is None:
        return None
    cfa, ra, others = result
    registers = {r: callee.registers[r] for r in CALLEE_SAVED if r in callee.registers}
    registers.update(others)
    registers.update(rsp=cfa, rip=ra)
    return Frame(ra, FrameTrust.cfi, registers=registers)


def by_frame_pointer(args: UnwindArgs) -> Frame | None:
    # Windows x64 frames need UNWIND_INFO: rbp may point into the middle of the frame.
    if args.is_windows:
        return None
    regs = args.callee.registers
    bp, sp = regs.get("rbp"), regs.get("rsp")
    if bp is None or sp is None or bp >= MASK - 2 * WIDTH:
        return None
    caller_ip = args.stack.read_word(bp + WIDTH, WIDTH)
    caller_bp = args.stack.read_word(bp, WIDTH)
    if caller_ip is None or caller_bp is None:
        return None
    caller_sp = bp + 2 * WIDTH
    if caller_sp <= bp or caller_bp < caller_sp:
        return None
    if not args.stack.contains(caller_bp, WIDTH) or is_non_canonical(caller_ip):
        return None
    if caller_sp <= sp or not args.stack.contains(caller_sp, WIDTH):
        return None
    return Frame(caller_ip, FrameTrust.frame_pointer, registers={"rip": caller_ip, "rsp": caller_sp, "rbp": caller_bp})


def by_scan(args: UnwindArgs) -> Frame | None:
    regs = args.callee.registers
    sp = regs.get("rsp")
    if sp is None:
        return None
    last_bp = regs.get("rbp")
    trusted = args.callee.trust in (FrameTrust.context, FrameTrust.cfi)
    for i in range(SCAN_WORDS * 4 if trusted else SCAN_WORDS):
        address_of_ip = sp + i * WIDTH
        caller_ip = args.stack.read_word(address_of_ip, WIDTH)
        if caller_ip is None:
            return None
        if caller_ip == 0 or is_non_canonical(caller_ip) or not args.instruction_seems_valid(caller_ip):
            continue
        caller_sp = address_of_ip + WIDTH
        registers = {"rip": caller_ip, "rsp": caller_sp}
        if last_bp is not None and i > 0:
            address_of_bp = address_of_ip - WIDTH
            bp = args.stack.read_word(address_of_bp, WIDTH)
            if bp is not None and last_bp == address_of_bp and bp > address_of_ip and bp - address_of_bp <= MAX_FRAME_GAP:
                if args.stack.contains(bp, WIDTH):
                    registers["rbp"] = bp
            elif last_bp >= caller_sp:
                registers["rbp"] = last_bp
        return Frame(caller_ip, FrameTrust.scan, registers=registers)
    return None


def get_caller_frame(args: UnwindArgs) -> Frame | None:
    """The caller of args.callee, or None when the walk is over."""
    caller = by_cfi(args) or by_frame_pointer(args) or by_scan(args)
    return finish_caller(args, caller, "rip", "rsp")
