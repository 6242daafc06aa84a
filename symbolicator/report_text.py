"""A human-readable rendering of a processed crash, like ``minidump_stackwalk`` prints."""

from __future__ import annotations

import os
from typing import Any


def _frame_lines(frame: dict[str, Any], number: int) -> list[str]:
    lines = []
    module = frame.get("module") or ""
    for inline in frame.get("inlines") or []:
        where = f" [{os.path.basename(inline['file'])} : {inline['line']}]" if inline.get("file") else ""
        lines.append(f"{number:2}  {module}!{inline['function']}{where}")
        lines.append("    Found by: inlining")
        number += 1
    if frame.get("function"):
        where = f" [{os.path.basename(frame['file'])} : {frame['line']}]" if frame.get("file") else ""
        text = f"{module}!{frame['function']}{where}"
    elif module:
        text = f"{module} + {frame['module_offset']}"
    else:
        text = frame["offset"]
    lines.append(f"{number:2}  {text}")
    lines.append(f"    Found by: {frame['trust']}")
    return lines


def format_thread(thread: dict[str, Any], index: int, crashed: bool) -> list[str]:
    title = f"Thread {index}" + (" (crashed)" if crashed else "")
    if thread.get("thread_name"):
        title += f" {thread['thread_name']}"
    lines = [title]
    number = 0
    for frame in thread["frames"]:
        frame_lines = _frame_lines(frame, number)
        number += len(frame_lines) // 2
        lines.extend(frame_lines)
    return lines


def format_report(report: dict[str, Any], all_threads: bool = False) -> str:
    """Crash summary, then the crashing thread (or every thread)."""
    system, crash = report["system_info"], report["crash_info"]
    lines = [
        f"Operating system: {system['os']} {system.get('os_ver') or ''}".rstrip(),
        f"CPU: {system['cpu_arch']}" + (f" {system['cpu_info']}" if system.get("cpu_info") else ""),
        f"Crash reason:  {crash['type']}",
        f"Crash address: {crash['address']}",
        "",
    ]
    crashing = crash.get("crashing_thread")
    for index, thread in enumerate(report["threads"]):
        if all_threads or index == crashing or (crashing is None and index == 0):
            lines.extend(format_thread(thread, index, index == crashing))
            lines.append("")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines).rstrip() + "\n"
