"""The processed report (rust-minidump JSON, symbolicator/report.py) shaped for the pages:
threads with the crashing one first, frames with their inlined calls as rows of their own,
and every module's symbol status. Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

# How much each frame-recovery method can be believed (rust-minidump's FrameTrust). Scanned
# frames are guesses: a return-address-looking word found on the stack, shown greyed out.
TRUST_LABELS = {
    "context": "context", "cfi": "cfi", "frame_pointer": "fp", "cfi_scan": "cfi+scan",
    "scan": "scan", "prewalked": "prewalked", "inline": "inline", "none": "?",
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


def thread_view(thread: dict[str, Any], index: int, crashing: bool) -> dict[str, Any]:
    """A thread for the template: id, name, whether it crashed, and its rows."""
    rows = [row for frame in thread.get("frames") or [] for row in frame_rows(frame)]
    return {"index": index, "thread_id": thread.get("thread_id"), "name": thread.get("thread_name"),
            "crashing": crashing, "frame_count": thread.get("frame_count", len(thread.get("frames") or [])),
            "rows": rows, "notes": thread.get("notes") or []}


def threads(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every thread of the report, the crashing thread first, then in dump order."""
    if not report:
        return []
    crashing = (report.get("crash_info") or {}).get("crashing_thread")
    views = [thread_view(t, i, i == crashing) for i, t in enumerate(report.get("threads") or [])]
    return sorted(views, key=lambda v: (not v["crashing"], v["index"]))


def crashing_rows(report: dict[str, Any] | None, limit: int = 40) -> list[dict[str, Any]]:
    """The crashing thread's rows (at most limit), for the group page's representative crash."""
    crashing = (report or {}).get("crashing_thread") or {}
    return [row for frame in crashing.get("frames") or [] for row in frame_rows(frame)][:limit]


def symbol_status(module: dict[str, Any]) -> str:
    """``loaded``, ``missing``, ``corrupt`` or ``unused`` (no frame needed its symbols)."""
    for status in ("corrupt", "loaded", "missing"):
        if module.get(f"{status}_symbols"):
            return status
    return "unused"


def modules(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The report's modules with a ``symbols`` status; those with missing symbols first."""
    rows = [{**m, "symbols": symbol_status(m)} for m in (report or {}).get("modules") or []]
    order = {"missing": 0, "corrupt": 1, "loaded": 2, "unused": 3}
    return sorted(rows, key=lambda m: order[m["symbols"]])
