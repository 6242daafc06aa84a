"""Name a minidump exception the way rust-minidump's minidump-stackwalk does (crash_info.type).

Pure tables, no I/O. The exception code means something different on each OS: 0xb is SIGSEGV on
Linux, KERN_* sub-codes go with EXC_BAD_ACCESS on macOS/iOS, 0xc0000005 is an access violation
on Windows. ``crash_reason(os, cpu_arch, code, flags, parameters)`` returns e.g.
``EXCEPTION_ACCESS_VIOLATION_WRITE``, ``EXCEPTION_STACK_BUFFER_OVERRUN / FAST_FAIL_FATAL_APP_EXIT``,
``SIGSEGV / SEGV_MAPERR``, ``SIGABRT``, ``EXC_BAD_ACCESS / KERN_INVALID_ADDRESS``. Codes missing
from the tables get a hex name: ``unknown 0x43506e78 / 0x00000000`` (rust's wording).

To add a code: put it in the table of its OS; names are the constants of the OS headers.
"""

from __future__ import annotations

# -- Windows (WinNT.h, ntstatus.h) ------------------------------------------------------------

WINDOWS_EXCEPTIONS = {
    0x80000001: "EXCEPTION_GUARD_PAGE",
    0x80000002: "EXCEPTION_DATATYPE_MISALIGNMENT",
    0x80000003: "EXCEPTION_BREAKPOINT",
    0x80000004: "EXCEPTION_SINGLE_STEP",
    0xC0000005: "EXCEPTION_ACCESS_VIOLATION",
    0xC0000006: "EXCEPTION_IN_PAGE_ERROR",
    0xC0000008: "EXCEPTION_INVALID_HANDLE",
    0xC000001D: "EXCEPTION_ILLEGAL_INSTRUCTION",
    0xC0000025: "EXCEPTION_NONCONTINUABLE_EXCEPTION",
    0xC0000026: "EXCEPTION_INVALID_DISPOSITION",
    0xC000008C: "EXCEPTION_BOUNDS_EXCEEDED",
    0xC000008D: "EXCEPTION_FLT_DENORMAL_OPERAND",
    0xC000008E: "EXCEPTION_FLT_DIVIDE_BY_ZERO",
    0xC000008F: "EXCEPTION_FLT_INEXACT_RESULT",
    0xC0000090: "EXCEPTION_FLT_INVALID_OPERATION",
    0xC0000091: "EXCEPTION_FLT_OVERFLOW",
    0xC0000092: "EXCEPTION_FLT_STACK_CHECK",
    0xC0000093: "EXCEPTION_FLT_UNDERFLOW",
    0xC0000094: "EXCEPTION_INT_DIVIDE_BY_ZERO",
    0xC0000095: "EXCEPTION_INT_OVERFLOW",
    0xC0000096: "EXCEPTION_PRIV_INSTRUCTION",
    0xC00000FD: "EXCEPTION_STACK_OVERFLOW",
    0xC0000194: "EXCEPTION_POSSIBLE_DEADLOCK",
    0xE0000008: "OUT_OF_MEMORY",  # Chromium allocators
    0xE06D7363: "UNHANDLED_CPP_EXCEPTION",  # MSVC throw
    0xE0434352: "MANAGED_EXCEPTION_CODE_V4",  # .NET
    0x0517A7ED: "SIMULATED",  # Crashpad's DumpWithoutCrashing
}
EXCEPTION_ACCESS_VIOLATION = 0xC0000005
EXCEPTION_IN_PAGE_ERROR = 0xC0000006
STATUS_STACK_BUFFER_OVERRUN = 0xC0000409  # __fastfail: parameters[0] is the FAST_FAIL_* code

# NTSTATUS values seen as crash codes (the full ntstatus.h has thousands).
WINDOWS_NTSTATUS = {
    0x40000015: "STATUS_FATAL_APP_EXIT",
    0x4000001F: "STATUS_WX86_BREAKPOINT",
    0x80000029: "STATUS_UNWIND_CONSOLIDATE",
    0xC0000002: "STATUS_NOT_IMPLEMENTED",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC0000017: "STATUS_NO_MEMORY",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC0000028: "STATUS_BAD_STACK",
    0xC0000029: "STATUS_INVALID_UNWIND_TARGET",
    0xC0000034: "STATUS_OBJECT_NAME_NOT_FOUND",
    0xC000007B: "STATUS_INVALID_IMAGE_FORMAT",
    0xC000009A: "STATUS_INSUFFICIENT_RESOURCES",
    0xC000012D: "STATUS_COMMITMENT_LIMIT",
    0xC0000135: "STATUS_DLL_NOT_FOUND",
    0xC0000139: "STATUS_ENTRYPOINT_NOT_FOUND",
    0xC000013A: "STATUS_CONTROL_C_EXIT",
    0xC0000142: "STATUS_DLL_INIT_FAILED",
    0xC0000264: "STATUS_RESOURCE_NOT_OWNED",
    0xC000027B: "STATUS_STOWED_EXCEPTION",
    0xC00002B4: "STATUS_FLOAT_MULTIPLE_FAULTS",
    0xC00002B5: "STATUS_FLOAT_MULTIPLE_TRAPS",
    0xC00002C9: "STATUS_REG_NAT_CONSUMPTION",
    0xC0000374: "STATUS_HEAP_CORRUPTION",
    0xC0000409: "STATUS_STACK_BUFFER_OVERRUN",
    0xC000041D: "STATUS_FATAL_USER_CALLBACK_EXCEPTION",
    0xC0000417: "STATUS_INVALID_CRUNTIME_PARAMETER",
    0xC0000420: "STATUS_ASSERTION_FAILURE",
    0xC0000602: "STATUS_FAIL_FAST_EXCEPTION",
    0xC000071C: "STATUS_INVALID_THREAD",
}

# parameters[0] of EXCEPTION_ACCESS_VIOLATION / EXCEPTION_IN_PAGE_ERROR
WINDOWS_ACCESS_TYPES = {0: "READ", 1: "WRITE", 8: "EXEC"}

# winnt.h FAST_FAIL_* codes, parameters[0] of STATUS_STACK_BUFFER_OVERRUN
_FAST_FAIL_NAMES = """LEGACY_GS_VIOLATION VTGUARD_CHECK_FAILURE STACK_COOKIE_CHECK_FAILURE
CORRUPT_LIST_ENTRY INCORRECT_STACK INVALID_ARG GS_COOKIE_INIT FATAL_APP_EXIT RANGE_CHECK_FAILURE
UNSAFE_REGISTRY_ACCESS GUARD_ICALL_CHECK_FAILURE GUARD_WRITE_CHECK_FAILURE INVALID_FIBER_SWITCH
INVALID_SET_OF_CONTEXT INVALID_REFERENCE_COUNT - - - INVALID_JUMP_BUFFER MRDATA_MODIFIED
CERTIFICATION_FAILURE INVALID_EXCEPTION_CHAIN CRYPTO_LIBRARY INVALID_CALL_IN_DLL_CALLOUT
INVALID_IMAGE_BASE DLOAD_PROTECTION_FAILURE UNSAFE_EXTENSION_CALL DEPRECATED_SERVICE_INVOKED
INVALID_BUFFER_ACCESS INVALID_BALANCED_TREE INVALID_NEXT_THREAD GUARD_ICALL_CHECK_SUPPRESSED
APCS_DISABLED INVALID_IDLE_STATE MRDATA_PROTECTION_FAILURE UNEXPECTED_HEAP_EXCEPTION
INVALID_LOCK_STATE GUARD_JUMPTABLE INVALID_LONGJUMP_TARGET INVALID_DISPATCH_CONTEXT INVALID_THREAD
INVALID_SYSCALL_NUMBER INVALID_FILE_OPERATION LPAC_ACCESS_DENIED GUARD_SS_FAILURE
LOADER_CONTINUITY_FAILURE GUARD_EXPORT_SUPPRESSION_FAILURE INVALID_CONTROL_STACK
SET_CONTEXT_DENIED INVALID_IAT HEAP_METADATA_CORRUPTION PAYLOAD_RESTRICTION_VIOLATION
LOW_LABEL_ACCESS_DENIED ENCLAVE_CALL_FAILURE UNHANDLED_LSS_EXCEPTON ADMINLESS_ACCESS_DENIED
UNEXPECTED_CALL CONTROL_INVALID_RETURN_ADDRESS UNEXPECTED_HOST_BEHAVIOR FLAGS_CORRUPTION
VEH_CORRUPTION ETW_CORRUPTION RIO_ABORT INVALID_PFN GUARD_ICALL_CHECK_FAILURE_XFG CAST_GUARD
HOST_VISIBILITY_CHANGE KERNEL_CET_SHADOW_STACK_ASSIST PATCH_CALLBACK_FAILED NTDLL_PATCH_FAILED
INVALID_FLS_DATA""".split()
FAST_FAIL_CODES = {i: f"FAST_FAIL_{name}" for i, name in enumerate(_FAST_FAIL_NAMES) if name != "-"}
FAST_FAIL_CODES[0xFFFFFFFF] = "FAST_FAIL_INVALID_FAST_FAIL_CODE"


def windows_reason(code: int, parameters: list[int]) -> str:
    """EXCEPTION_ACCESS_VIOLATION_WRITE, EXCEPTION_STACK_BUFFER_OVERRUN / FAST_FAIL_..., ..."""
    if code in (EXCEPTION_ACCESS_VIOLATION, EXCEPTION_IN_PAGE_ERROR):
        base = WINDOWS_EXCEPTIONS[code]
        access = WINDOWS_ACCESS_TYPES.get(parameters[0]) if parameters else None
        if access is None:
            return base
        if code == EXCEPTION_IN_PAGE_ERROR and len(parameters) >= 3:
            status = parameters[2] & 0xFFFFFFFF
            return f"{base}_{access} / {WINDOWS_NTSTATUS.get(status, f'{status:#010x}')}"
        return f"{base}_{access}"
    if code == STATUS_STACK_BUFFER_OVERRUN:
        if not parameters:
            return "EXCEPTION_STACK_BUFFER_OVERRUN"
        fast_fail = FAST_FAIL_CODES.get(parameters[0], f"{parameters[0]:#x}")
        return f"EXCEPTION_STACK_BUFFER_OVERRUN / {fast_fail}"
    name = WINDOWS_EXCEPTIONS.get(code) or WINDOWS_NTSTATUS.get(code)
    return name or f"unknown {code:#010x}"


# -- Linux and Android (signal.h, asm-generic/siginfo.h) --------------------------------------

LINUX_SIGNALS = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
    20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
    26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
    0xFFFFFFFF: "DUMP_REQUESTED",  # Breakpad: a dump written on request, no signal
}
# si_code values per signal; the flags field of the exception record holds si_code.
LINUX_SIGNAL_CODES = {
    "SIGILL": {1: "ILL_ILLOPC", 2: "ILL_ILLOPN", 3: "ILL_ILLADR", 4: "ILL_ILLTRP", 5: "ILL_PRVOPC",
               6: "ILL_PRVREG", 7: "ILL_COPROC", 8: "ILL_BADSTK", 9: "ILL_BADIADDR"},
    "SIGTRAP": {1: "TRAP_BRKPT", 2: "TRAP_TRACE", 3: "TRAP_BRANCH", 4: "TRAP_HWBKPT",
                5: "TRAP_UNK", 6: "TRAP_PERF"},
    "SIGFPE": {1: "FPE_INTDIV", 2: "FPE_INTOVF", 3: "FPE_FLTDIV", 4: "FPE_FLTOVF",
               5: "FPE_FLTUND", 6: "FPE_FLTRES", 7: "FPE_FLTINV", 8: "FPE_FLTSUB"},
    "SIGSEGV": {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR",
                5: "SEGV_ACCADI", 6: "SEGV_ADIDERR", 7: "SEGV_ADIPERR", 8: "SEGV_MTEAERR",
                9: "SEGV_MTESERR"},
    "SIGBUS": {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR", 4: "BUS_MCEERR_AR",
               5: "BUS_MCEERR_AO"},
    "SIGSYS": {1: "SYS_SECCOMP"},
}
# Generic si_code values (signed, stored as u32). SI_USER (0) is not printed: Breakpad
# writes 0 when it knows nothing, and rust-minidump prints a bare "SIGABRT" then.
LINUX_SI_CODES = {
    0x80: "SI_KERNEL", 0xFFFFFFFF: "SI_QUEUE", 0xFFFFFFFE: "SI_TIMER", 0xFFFFFFFD: "SI_MESGQ",
    0xFFFFFFFC: "SI_ASYNCIO", 0xFFFFFFFB: "SI_SIGIO", 0xFFFFFFFA: "SI_TKILL",
    0xFFFFFFF9: "SI_DETHREAD", 0xFFFFFFC4: "SI_ASYNCNL",
}


def linux_reason(code: int, flags: int) -> str:
    """SIGSEGV / SEGV_MAPERR, SIGABRT / SI_TKILL, SIGSEGV (si_code 0), unknown 0x... / 0x..."""
    signal = LINUX_SIGNALS.get(code)
    if signal is None:
        return f"unknown {code:#010x} / {flags:#010x}"
    sub = LINUX_SIGNAL_CODES.get(signal, {}).get(flags) or LINUX_SI_CODES.get(flags)
    return f"{signal} / {sub}" if sub else signal


# -- macOS and iOS (mach/exception_types.h, mach/kern_return.h, mach/i386|arm/exception.h) -----

MAC_EXCEPTIONS = {
    1: "EXC_BAD_ACCESS", 2: "EXC_BAD_INSTRUCTION", 3: "EXC_ARITHMETIC", 4: "EXC_EMULATION",
    5: "EXC_SOFTWARE", 6: "EXC_BREAKPOINT", 7: "EXC_SYSCALL", 8: "EXC_MACH_SYSCALL",
    9: "EXC_RPC_ALERT", 10: "EXC_CRASH", 11: "EXC_RESOURCE", 12: "EXC_GUARD",
    13: "EXC_CORPSE_NOTIFY",
    0x43507378: "SIMULATED",  # Crashpad 'CPsx': a dump without a crash
}
KERN_RETURNS = {
    1: "KERN_INVALID_ADDRESS", 2: "KERN_PROTECTION_FAILURE", 3: "KERN_NO_SPACE",
    4: "KERN_INVALID_ARGUMENT", 5: "KERN_FAILURE", 6: "KERN_RESOURCE_SHORTAGE",
    7: "KERN_NOT_RECEIVER", 8: "KERN_NO_ACCESS", 9: "KERN_MEMORY_FAILURE", 10: "KERN_MEMORY_ERROR",
    14: "KERN_ABORTED", 37: "KERN_TERMINATED", 46: "KERN_NOT_SUPPORTED",
    49: "KERN_OPERATION_TIMED_OUT", 50: "KERN_CODESIGN_ERROR", 51: "KERN_POLICY_STATIC",
}
_X86 = ("x86", "amd64")
# (exception, cpu family) -> {code: name}; cpu family "x86" covers x86 and amd64.
MAC_CODES = {
    ("EXC_BAD_ACCESS", "x86"): {13: "EXC_I386_GPFLT"},
    ("EXC_BAD_ACCESS", "arm"): {0x101: "EXC_ARM_DA_ALIGN", 0x102: "EXC_ARM_DA_DEBUG",
                                0x103: "EXC_ARM_SP_ALIGN", 0x104: "EXC_ARM_SWP",
                                0x105: "EXC_ARM_PAC_FAIL"},
    ("EXC_BAD_INSTRUCTION", "x86"): {1: "EXC_I386_INVOP", 10: "EXC_I386_INVTSSFLT",
                                     11: "EXC_I386_SEGNPFLT", 12: "EXC_I386_STKFLT",
                                     13: "EXC_I386_GPFLT", 17: "EXC_I386_ALIGNFLT"},
    ("EXC_BAD_INSTRUCTION", "arm"): {1: "EXC_ARM_UNDEFINED"},
    ("EXC_ARITHMETIC", "x86"): {1: "EXC_I386_DIV", 2: "EXC_I386_INTO", 3: "EXC_I386_NOEXT",
                                4: "EXC_I386_EXTOVR", 5: "EXC_I386_EXTERR", 6: "EXC_I386_EMERR",
                                7: "EXC_I386_BOUND", 8: "EXC_I386_SSEEXTERR"},
    ("EXC_ARITHMETIC", "arm"): {0: "EXC_ARM_FP_UNDEFINED", 1: "EXC_ARM_FP_IO", 2: "EXC_ARM_FP_DZ",
                                3: "EXC_ARM_FP_OF", 4: "EXC_ARM_FP_UF", 5: "EXC_ARM_FP_IX",
                                6: "EXC_ARM_FP_ID"},
    ("EXC_BREAKPOINT", "x86"): {1: "EXC_I386_SGL", 2: "EXC_I386_BPT"},
    ("EXC_BREAKPOINT", "arm"): {1: "EXC_ARM_BREAKPOINT"},
}
# EXC_SOFTWARE codes: 0x10000 + signal (EXC_SOFT_SIGNAL) as Breakpad writes them.
MAC_SOFTWARE = {0x10002: "SIGABRT", 0x10003: "EXC_SOFT_SIGNAL", 0x1000C: "SIGSYS",
                0x1000D: "SIGPIPE"}


def mac_reason(code: int, flags: int, cpu_arch: str) -> str:
    """EXC_BAD_ACCESS / KERN_INVALID_ADDRESS, EXC_BAD_INSTRUCTION / EXC_I386_INVOP, ..."""
    exception = MAC_EXCEPTIONS.get(code)
    if exception is None:
        return f"unknown {code:#010x} / {flags:#010x}"
    family = "x86" if cpu_arch in _X86 else "arm" if cpu_arch in ("arm", "arm64") else cpu_arch
    sub = None
    if exception == "EXC_BAD_ACCESS":
        sub = KERN_RETURNS.get(flags)
    elif exception == "EXC_SOFTWARE":
        sub = MAC_SOFTWARE.get(flags)
    if sub is None:
        sub = MAC_CODES.get((exception, family), {}).get(flags)
    if exception == "SIMULATED":
        return exception
    return f"{exception} / {sub}" if sub else f"{exception} / {flags:#010x}"


def crash_reason(os: str, cpu_arch: str, code: int, flags: int, parameters: list[int]) -> str:
    """The crash reason of an exception record, named for the dump's OS."""
    if os == "Windows NT":
        return windows_reason(code, parameters)
    if os in ("Linux", "Android"):
        return linux_reason(code, flags)
    if os in ("Mac OS X", "iOS"):
        return mac_reason(code, flags, cpu_arch)
    return f"unknown {code:#010x} / {flags:#010x}"
