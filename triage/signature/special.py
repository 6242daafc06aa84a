"""The special signature forms: ``hang | ...``, ``OOM | <size class> | ...``, ``stackoverflow | ...``.

Each detector reads the report, the annotations and the normalized frames and returns why
the form applies (a note), or None. Crash reason names are those of
``symbolicator/crash_reason.py`` (rust-minidump's spelling).
"""

from __future__ import annotations

from typing import Any

from triage.signature.siglists import Entry

# Socorro's split (rules.py OOMSignature): up to 256 KiB is "small", the process or machine
# was out of memory and any allocation fails; above it the request itself is the suspect.
# Above 256 MiB we say "huge": a game rarely asks for that much at once, so it is usually a
# corrupt or overflowed size computation, a different bug from memory pressure.
OOM_SMALL_MAX = 256 * 1024
OOM_LARGE_MAX = 256 * 1024 * 1024
OOM_SIZE_KEYS = ("oomallocationsize",)  # oom_allocation_size, OOMAllocationSize (Firefox)
# STATUS_NO_MEMORY: HeapAlloc with HEAP_GENERATE_EXCEPTIONS; OUT_OF_MEMORY: Chromium allocators
OOM_REASONS = ("STATUS_NO_MEMORY", "OUT_OF_MEMORY")
STACK_OVERFLOW_REASONS = ("EXCEPTION_STACK_OVERFLOW",)
# Linux and macOS report a stack overflow as an ordinary bad access to the guard page
MEMORY_FAULT_REASONS = ("SIGSEGV", "SIGBUS", "EXC_BAD_ACCESS", "EXCEPTION_ACCESS_VIOLATION", "EXCEPTION_GUARD_PAGE")
RECURSION_MIN_FRAMES = 100  # a legitimate recursion this deep with identical frames is rare
RECURSION_MAX_PERIOD = 4  # a -> b -> a -> b ... counts as well as a -> a -> a
# A fault this close to the stack pointer hit the stack's guard page: the stack ran out. Below
# sp by up to 64 KiB (a function's frame being probed or pushed), above by up to a page.
GUARD_BELOW_SP = 64 * 1024
GUARD_ABOVE_SP = 4096
STACK_POINTERS = ("rsp", "esp", "sp", "x31")
INSTRUCTION_POINTERS = ("rip", "eip", "pc")
NULL_REGION = 0x10000  # no OS maps the first 64 KiB: a fault there is a null dereference, never a stack
HANG_FLAG_KEYS = ("hang",)  # hang=1
HANG_REASON_KEYS = ("hangreason",)  # hang_reason, HangReason: any non-empty value
HANG_THREAD_KEYS = ("hangthread",)  # hang_thread: the hung thread's id (decimal or 0x hex) or name
# Linux keeps 15 bytes of a thread's name (TASK_COMM_LEN 16 with the NUL): pthread_setname_np
# refuses longer names and prctl(PR_SET_NAME) cuts them, so "NAR dialogue worker" is
# "NAR dialogue wo" in the dump's thread names stream.
LINUX_THREAD_NAME_MAX = 15
FALSE_VALUES = {"", "0", "false", "no", "off"}


def annotation(annotations: dict[str, str], keys: tuple[str, ...]) -> str | None:
    """The value of the first annotation whose key, lower-cased without ``_`` and ``-``, is
    one of keys; None when there is none."""
    for key, value in annotations.items():
        if key.lower().replace("_", "").replace("-", "") in keys:
            return str(value).strip()
    return None


def hang_reason(annotations: dict[str, str]) -> str | None:
    """Why this dump is a hang (a watchdog's dump of a stuck game), or None."""
    reason = annotation(annotations, HANG_REASON_KEYS)
    if reason:
        return f"hang: annotation hang_reason={reason!r}"
    flag = annotation(annotations, HANG_FLAG_KEYS)
    if flag is not None and flag.lower() not in FALSE_VALUES:
        return f"hang: annotation hang={flag!r}"
    return None


def hung_thread(threads: list[dict[str, Any]], wanted: str | None) -> tuple[int, str]:
    """(index in threads, note): the thread a hang report's ``hang_thread`` names, by id
    (``thread_id``: decimal or ``0x`` hex), else by name (``thread_name``: exact, then ignoring
    case, then a name Linux cut to 15 characters); the first of several. Thread 0, the main
    thread, when wanted is empty or matches nothing. threads must not be empty."""
    if not wanted:
        return 0, "hang: using thread 0 (the main thread), not the watchdog's"
    found = [i for i, t in enumerate(threads) if t.get("thread_id") is not None
             and t.get("thread_id") == thread_number(wanted)]
    names = [str(t.get("thread_name") or "") for t in threads]
    found = found or [i for i, name in enumerate(names) if name == wanted]
    found = found or [i for i, name in enumerate(names) if name and name.lower() == wanted.lower()]
    found = found or [i for i, name in enumerate(names)
                      if len(name) == LINUX_THREAD_NAME_MAX and wanted.startswith(name)]
    if not found:
        return 0, f"hang: no thread matches hang_thread={wanted!r}: using thread 0 (the main thread)"
    more = f" (the first of {len(found)})" if len(found) > 1 else ""
    return found[0], f"hang: using thread {found[0]}, hang_thread={wanted!r}{more}"


def thread_number(text: str) -> int | None:
    """A thread id written in decimal or ``0x`` hex, else None."""
    try:
        if text.lower().startswith("0x"):
            return int(text[2:], 16)
        return int(text) if text.isdigit() else None
    except ValueError:
        return None


def size_class(size: int) -> str:
    """small (<= 256 KiB), large (<= 256 MiB) or huge."""
    if size <= OOM_SMALL_MAX:
        return "small"
    return "large" if size <= OOM_LARGE_MAX else "huge"


def oom(annotations: dict[str, str], reason: str, labels: list[str],
        markers: tuple[Entry, ...]) -> tuple[str, str] | None:
    """(size class, note) when this is an allocation failure, else None. Evidence, first found:
    a size annotation, an out-of-memory crash reason, an oom.txt entry matching labels (the
    reliable frames the signature walk looked at, top first)."""
    raw = annotation(annotations, OOM_SIZE_KEYS)
    if raw:
        try:
            size = int(raw, 0)
        except ValueError:
            return "unknown", f"OOM: annotation oom_allocation_size={raw!r} is not a number"
        return size_class(size), f"OOM: annotation oom_allocation_size={size}"
    if reason.startswith(OOM_REASONS):
        return "unknown", f"OOM: crash reason {reason}"
    for index in range(len(labels)):
        for entry in markers:
            if entry.matches_at(labels, index):
                return "unknown", f"OOM: frame {labels[index]!r} matches {entry.where} {entry.text!r}"
    return None


def recursion(labels: list[str]) -> tuple[int, int, int] | None:
    """(start, period, length) of the first run of at least RECURSION_MIN_FRAMES frames that
    repeats with a period of at most RECURSION_MAX_PERIOD frames, or None."""
    for period in range(1, RECURSION_MAX_PERIOD + 1):
        run_start, run = 0, 0
        for index in range(period, len(labels)):
            if labels[index] == labels[index - period]:
                if run == 0:
                    run_start = index - period
                run += 1
                if run + period >= RECURSION_MIN_FRAMES:
                    return run_start, period, run + period
            else:
                run = 0
    return None


def guard_page_distance(address: str | None, registers: dict[str, str] | None) -> int | None:
    """How far the faulting address is from the crashing frame's stack pointer (address - sp),
    or None when either is unknown, when the fault is in the null region (a null dereference,
    whatever a test's small stack pointer), or when it is the instruction pointer itself (code
    executed from the stack, e.g. a smashed return address: a fault near sp, no overflow)."""
    registers = registers or {}
    sp = next((registers[name] for name in STACK_POINTERS if name in registers), None)
    ip = next((registers[name] for name in INSTRUCTION_POINTERS if name in registers), None)
    try:
        fault = int(str(address), 16) if address else 0
        if fault < NULL_REGION or not sp or (ip and int(str(ip), 16) == fault):
            return None
        return int(str(address), 16) - int(str(sp), 16)
    except ValueError:
        return None


def stack_overflow(reason: str, labels: list[str], distance: int | None = None) -> str | None:
    """Why this crash is a stack overflow, or None: the Windows exception code, a memory fault
    right at the stack pointer (distance: fault address - sp; the guard page below the stack),
    or a memory fault in a thread whose reliable frames recurse RECURSION_MIN_FRAMES deep.

    The guard page matters on Linux: the crash handler runs on its own signal stack and
    Crashpad may save that one instead of the overflowed 8 MiB, so no recursion is seen
    (rust-minidump and Breakpad see one frame too)."""
    if reason.startswith(STACK_OVERFLOW_REASONS):
        return f"stackoverflow: crash reason {reason}"
    if not reason.startswith(MEMORY_FAULT_REASONS):
        return None
    if distance is not None and -GUARD_BELOW_SP <= distance <= GUARD_ABOVE_SP:
        return f"stackoverflow: {reason} at {distance:+d} bytes from the stack pointer (the stack's guard page)"
    found = recursion(labels)
    if found is None:
        return None
    start, period, length = found
    return (f"stackoverflow: {reason} with {length} frames recursing from frame {labels[start]!r}"
            f" (period {period})")
