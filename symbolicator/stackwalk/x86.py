"""x86 unwinding: STACK WIN (frame data, then FPO) or STACK CFI, then the ebp chain, then a
stack scan. Mirrors rust-minidump's x86 walker, which follows Breakpad."""

from __future__ import annotations

from schemas.stack import Frame, FrameTrust
from symbolicator.stackwalk.postfix import ReadWord, eval_cfi_rules, eval_win_program
from symbolicator.stackwalk.unwind import UnwindArgs, finish_caller
from symbolicator.symbols.types import WinFrameInfo

WIDTH = 4
MASK = 0xFFFFFFFF
CALLEE_SAVED = ("ebp", "ebx", "edi", "esi")
WIN_OUTPUTS = ("eip", "esp", "ebp", "ebx", "esi", "edi")
SCAN_WORDS = 40
MAX_FRAME_GAP = 128 * 1024


def _read(args: UnwindArgs) -> ReadWord:
    return lambda address: args.stack.read_word(address, WIDTH)


def by_cfi(args: UnwindArgs) -> Frame | None:
    callee = args.callee
    module = callee.module
    if module is None or "esp" not in callee.registers:
        return None
    offset = callee.lookup_address - module.base_addr
    win = args.provider.win_frame_info(module, offset)
    registers = _by_stack_win(args, win) if win is not None else None
    if registers is None:
        rules = args.provider.cfi_rules(module, offset)
        if rules is None:
            return None
        result = eval_cfi_rules(rules, callee.registers, _read(args), MASK)
        if result is None:
            return None
        cfa, ra, others = result
        forwarded = {r: callee.registers[r] for r in CALLEE_SAVED if r in callee.registers}
        registers = {**forwarded, **others, "esp": cfa, "eip": ra}
    # else: STACK WIN forwards nothing implicitly (every callee-saved register is one of its
    # outputs): the caller has only what the program computed.
    if "eip" not in registers or "esp" not in registers:
        return None
    return Frame(registers["eip"], FrameTrust.cfi, registers=registers)


def _frame_size(info: WinFrameInfo, grand_callee_parameter_size: int) -> int:
    return info.local_size + info.saved_register_size + grand_callee_parameter_size


def _by_stack_win(args: UnwindArgs, info: WinFrameInfo) -> dict[str, int] | None:
    if info.program_string is not None:
        return _win_framedata(args, info)
    return _win_fpo(args, info)


def _win_framedata(args: UnwindArgs, info: WinFrameInfo) -> dict[str, int] | None:
    regs = args.callee.registers
    esp, ebp = regs.get("esp"), regs.get("ebp")
    if esp is None or ebp is None:
        return None
    grand = args.grand_callee_parameter_size
    program = info.program_string or ""
    # An aligned frame (`@`) makes $esp useless: assume the standard prologue and look for
    # the return address just above the saved $ebp.
    search_start = (ebp + 4) if "@" in program else (esp + _frame_size(info, grand))
    variables = {"$esp": esp, "$ebp": ebp, ".cbParams": info.parameter_size, ".cbCalleeParams": grand,
                 ".cbSavedRegs": info.saved_register_size, ".cbLocals": info.local_size,
                 ".raSearch": search_start & MASK, ".raSearchStart": search_start & MASK}
    if "ebx" in regs:
        variables["$ebx"] = regs["ebx"]
    values = eval_win_program(program, variables, _read(args))
    if values is None:
        return None
    return {name: values[f"${name}"] for name in WIN_OUTPUTS if f"${name}" in values}


def _win_fpo(args: UnwindArgs, info: WinFrameInfo) -> dict[str, int] | None:
    regs = args.callee.registers
    esp = regs.get("esp")
    if esp is None:
        return None
    grand = args.grand_callee_parameter_size
    eip_address = esp + _frame_size(info, grand)
    caller_eip = args.stack.read_word(eip_address, WIDTH)
    if caller_eip is None:
        return None
    # A "leftover return address": frame-pointer-optimized system calls can leave the
    # return address on the stack, so the context frame's eip shows up again. Skip it.
    if args.grand_callee is None and caller_eip == regs.get("eip"):
        eip_address += WIDTH
        caller_eip = args.stack.read_word(eip_address, WIDTH)
        if caller_eip is None:
            return None
    out = {"eip": caller_eip, "esp": eip_address + WIDTH}
    if info.allocates_base_pointer:
        ebp = args.stack.read_word(esp + grand + info.saved_register_size - 8, WIDTH)
        if ebp is None:
            return None
        out["ebp"] = ebp
    else:
        if "ebp" not in regs:
            return None
        out["ebp"] = regs["ebp"]
        if "ebx" in regs:  # ntdll forwarders leave %ebx untouched (Breakpad folklore)
            out["ebx"] = regs["ebx"]
    return out


def by_frame_pointer(args: UnwindArgs) -> Frame | None:
    bp = args.callee.registers.get("ebp")
    if bp is None or bp >= MASK - 2 * WIDTH:
        return None
    caller_ip = args.stack.read_word(bp + WIDTH, WIDTH)
    caller_bp = args.stack.read_word(bp, WIDTH)
    if caller_ip is None or caller_bp is None:
        return None
    return Frame(caller_ip, FrameTrust.frame_pointer, registers={"eip": caller_ip, "esp": bp + 2 * WIDTH, "ebp": caller_bp})


def by_scan(args: UnwindArgs) -> Frame | None:
    regs = args.callee.registers
    sp = regs.get("esp")
    if sp is None:
        return None
    last_bp = regs.get("ebp")
    words = SCAN_WORDS * 4 if args.callee.trust is FrameTrust.context else SCAN_WORDS
    for i in range(words):
        address_of_ip = sp + i * WIDTH
        caller_ip = args.stack.read_word(address_of_ip, WIDTH)
        if caller_ip is None:
            return None
        if caller_ip == 0 or not args.instruction_seems_valid(caller_ip):
            continue
        caller_sp = address_of_ip + WIDTH
        registers = {"eip": caller_ip, "esp": caller_sp}
        if i > 0:
            address_of_bp = address_of_ip - WIDTH
            bp = args.stack.read_word(address_of_bp, WIDTH)
            if bp is not None and bp > address_of_ip and bp - address_of_bp <= MAX_FRAME_GAP:
                if args.stack.contains(bp, WIDTH):
                    registers["ebp"] = bp
            elif last_bp is not None and last_bp >= caller_sp and args.stack.contains(last_bp, WIDTH):
                registers["ebp"] = last_bp
        return Frame(caller_ip, FrameTrust.scan, registers=registers)
    return None


def get_caller_frame(args: UnwindArgs) -> Frame | None:
    """The caller of args.callee, or None when the walk is over."""
    caller = by_cfi(args) or by_frame_pointer(args) or by_scan(args)
    return finish_caller(args, caller, "eip", "esp")
