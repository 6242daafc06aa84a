"""The processed report (rust-minidump JSON, symbolicator/report.py) shaped for the pages:
threads with the crashing one first (a hang's: the hung thread, whose stack signs it), frames
with their inlined calls as rows of their own, and every module's symbol status, one page at a
time. Pure functions, no I/O.

A page stays small whatever the report holds (a report written before the limits of
symbolicator/limits.py can list 200,000 threads): views are built only for the threads and
modules of the page asked for, and a thread shows its first FRAMES_HEAD and last FRAMES_TAIL
frames (a deep recursion's start is at the bottom).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triage.kinds import HANG
from triage.signature.special import hung_thread

THREADS_PER_PAGE = 50  # the corpus's largest dump has 17 threads, a big game about 250
MODULES_PER_PAGE = 500  # the corpus's largest has 354 modules
FRAMES_HEAD = 200  # frames of a thread shown from the top, then FRAMES_TAIL from the bottom
FRAMES_TAIL = 50

# How much each frame-recovery method can be believed (rust-minidump's FrameTrust). Scanned
# frames are guesses: a return-address-looking word found on the stack, shown greyed out.
TRUST_LABELS = {
    "context": "context", "cfi": "cfi", "frame_pointer": "fp", "cfi_scan": "cfi+scan",
    "scan": "scan", "prewalked": "prewalked", "inline": "inline", "event": "event", "none": "?",
}
GUESSED = frozenset({"scan", "cfi_scan"})


def short_hex(value: str | None) -> str | None:
    """rust-minidump's zero-padded hex without the padding: ``0x000000000000000f`` -> ``0xf``."""
    if not value or not value.startswith("0x"):
        return value
    return "0x" + (value[2:].lstrip("0") or "0")


def frame_rows(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """One frame as table rows: its inlined calls first (innermost first, the way the
    report lists them), then the frame itself. Each row: index, trust, label, guessed,
    inlined, module, module_offset, function, function_offset, file, line, missing_symbols."""
    trust = frame.get("trust") or "none"
    guessed = trust in GUESSED
    rows = [{
        "index": frame.get("frame"), "trust": "inline", "label": "inline", "guessed": guessed, "inlined": True,
        "module": frame.get("module"), "module_offset": None, "function": call.get("function"),
        "function_offset": None, "file": call.get("file"), "line": call.get("line"), "missing_symbols": False,
    } for call in frame.get("inlines") or []]
    rows.append({
        "index": frame.get("frame"), "trust": trust, "label": TRUST_LABELS.get(trust, trust), "guessed": guessed,
        "inlined": False, "module": frame.get("module"), "module_offset": short_hex(frame.get("module_offset")),
        "function": frame.get("function"), "function_offset": short_hex(frame.get("function_offset")),
        "file": frame.get("file"), "line": frame.get("line"), "missing_symbols": bool(frame.get("missing_symbols")),
        "offset": frame.get("offset"),
    })
    return rows


def hung_index(report: dict[str, Any] | None, kind: str | None, hang_thread: str | None) -> int | None:
    """For a hang, the index of the thread its signature comes from: the one hang_thread
    names, else thread 0 (triage/signature/special.hung_thread). None for other kinds or a
    report without threads."""
    threads = (report or {}).get("threads") or []
    if kind != HANG or not threads:
        return None
    return hung_thread(threads, hang_thread)[0]


def hang_text(kind: str | None, seconds: float | None, thread: str | None) -> str | None:
    """How a hang is summed up on the pages: ``stuck 42.0 s on thread NAR worker`` (without
    a duration: ``stuck on thread ...``; without a thread: on thread 0, the main thread, as
    the signature); None for other kinds."""
    if kind != HANG:
        return None
    duration = f" {seconds:.1f} s" if seconds is not None else ""
    return f"stuck{duration} on thread {thread or '0 (the main thread)'}"


def thread_view(thread: dict[str, Any], index: int, crashing: bool, hung: bool = False) -> dict[str, Any]:
    """A thread for the template: id, name, whether it crashed or hung, its rows (of the first
    FRAMES_HEAD frames), ``hidden`` (frames not shown) and ``tail_rows`` (the last
    FRAMES_TAIL frames, when the thread has more than both)."""
    frames = thread.get("frames") or []
    tail: list[dict[str, Any]] = []
    shown, hidden = frames, 0
    if len(frames) > FRAMES_HEAD + FRAMES_TAIL:
        shown, hidden, tail = frames[:FRAMES_HEAD], len(frames) - FRAMES_HEAD - FRAMES_TAIL, frames[-FRAMES_TAIL:]
    return {"index": index, "thread_id": thread.get("thread_id"), "name": thread.get("thread_name"),
            "crashing": crashing, "hung": hung, "frame_count": thread.get("frame_count", len(frames)),
            "rows": [row for frame in shown for row in frame_rows(frame)], "hidden": hidden,
            "tail_rows": [row for frame in tail for row in frame_rows(frame)], "notes": thread.get("notes") or []}


@dataclass
class Page:
    """One page of a long list: its items, which page of how many, and the list's length."""

    items: list[dict[str, Any]]
    number: int
    count: int
    total: int


def _page_of(total: int, number: int, per_page: int) -> tuple[int, int, int]:
    """(page number clamped to 1..count, page count, index of the page's first item)."""
    count = max(1, -(-total // per_page))
    number = min(max(1, number), count)
    return number, count, (number - 1) * per_page


def thread_page(report: dict[str, Any] | None, number: int = 1, per_page: int = THREADS_PER_PAGE,
                hung: int | None = None) -> Page:
    """Page ``number`` of the report's threads: the hung thread (hung: its index, for a hang)
    first, then the crashing thread, then in dump order."""
    listed = (report or {}).get("threads") or []
    crashing = ((report or {}).get("crash_info") or {}).get("crashing_thread")
    order = sorted(range(len(listed)), key=lambda i: (i != hung, i != crashing, i))
    number, count, first = _page_of(len(order), number, per_page)
    views = [thread_view(listed[i], i, i == crashing, i == hung) for i in order[first : first + per_page]]
    return Page(views, number, count, len(listed))


def crashing_rows(report: dict[str, Any] | None, limit: int = 40, hung: int | None = None) -> list[dict[str, Any]]:
    """The rows (at most limit) of the crashing thread, or of the hung thread (hung: its
    index, for a hang), for the group page's representative crash."""
    threads = (report or {}).get("threads") or []
    thread = threads[hung] if hung is not None and hung < len(threads) else (report or {}).get("crashing_thread") or {}
    return [row for frame in thread.get("frames") or [] for row in frame_rows(frame)][:limit]


def symbol_status(module: dict[str, Any]) -> str:
    """``loaded``, ``missing``, ``corrupt`` or ``unused`` (no frame needed its symbols)."""
    for status in ("corrupt", "loaded", "missing"):
        if module.get(f"{status}_symbols"):
            return status
    return "unused"


SYMBOL_ORDER = {"missing": 0, "corrupt": 1, "loaded": 2, "unused": 3}


def module_page(report: dict[str, Any] | None, number: int = 1, per_page: int = MODULES_PER_PAGE) -> Page:
    """Page ``number`` of the report's modules with a ``symbols`` status; those with missing
    symbols first, then in the report's order (by base address)."""
    listed = (report or {}).get("modules") or []
    statuses = [symbol_status(m) for m in listed]
    order = sorted(range(len(listed)), key=lambda i: SYMBOL_ORDER[statuses[i]])
    number, count, first = _page_of(len(order), number, per_page)
    rows = [{**listed[i], "symbols": statuses[i]} for i in order[first : first + per_page]]
    return Page(rows, number, count, len(listed))

