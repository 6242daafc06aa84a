"""A readable account of one signature: the result, its notes, and each frame's fate."""

from __future__ import annotations

from typing import Any

from triage.signature.generator import SigFrame, trace
from triage.signature.siglists import SigLists

LABEL_WIDTH = 60


def explain(report: dict[str, Any], annotations: dict[str, str] | None = None, *,
            lists: SigLists | None = None) -> str:
    """The signature, version and notes, then one line per frame (inlined calls included):
    number, trust, normalized name, and what happened to it: kept, prefix, irrelevant,
    sentinel, above sentinel, collapsed, scanned or not used, with the list line that decided."""
    result = trace(report, annotations, lists=lists)
    lines = [f"signature: {result.result.signature}", f"version:   {result.result.version}"]
    lines += ["notes:"] + [f"  - {note}" for note in result.result.notes] if result.result.notes else []
    if result.frames:
        lines.append(f"frames of thread {result.thread_index}, innermost first:")
        lines += [_frame_line(frame) for frame in result.frames]
    return "\n".join(lines)


def _frame_line(frame: SigFrame) -> str:
    number = f"{frame.index}{'i' if frame.inline else ''}"
    trust = "inline" if frame.inline else frame.trust
    label = frame.label if len(frame.label) <= LABEL_WIDTH else frame.label[:LABEL_WIDTH - 3] + "..."
    status = f"sentinel ({frame.sentinel}), {frame.status}" if frame.sentinel else frame.status
    detail = f"  [{frame.detail}]" if frame.detail else ""
    return f"  {number:>5} {trust:<13} {label:<{LABEL_WIDTH}} {status}{detail}"
