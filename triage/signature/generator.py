"""Crash signatures: one short string that groups crashes with the same cause (Socorro-style).

Pure: a processed report (rust-minidump ``minidump-stackwalk --json`` shape) and annotations
in, ``Result(signature, notes, version)`` out. The only I/O is reading the list files once.

The walk over the crashing thread's frames (a hang's: the thread its ``hang_thread`` annotation
names, else thread 0), innermost first (inlined calls expanded):
1. consecutive frames of one module without symbols collapse into the first;
2. the topmost reliable frame matching the first line of ``sentinels.txt`` that matches any
   becomes the top of the stack (a line's place in the file is its priority);
3. frames matching ``irrelevant.txt`` are skipped; a frame matching ``prefix.txt`` is taken
   and the walk goes on; the first other frame is taken and the walk stops;
4. frames found by stack scanning (and those below them) are used only when no reliable frame
   went into the signature; a walk that reaches them with a signature already stops there.
Special forms then wrap the result (``hang``, ``OOM | <size>``, ``stackoverflow``), and the whole
is cut at a frame boundary to 255 characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triage.signature.normalize import frame_label
from triage.signature.siglists import SigLists, default_siglists, first_match
from triage.signature.special import (
    HANG_THREAD_KEYS,
    annotation,
    guard_page_distance,
    hang_reason,
    hung_thread,
    oom,
    stack_overflow,
)

VERSION = "crashd-sig-2"  # bump on any change to the rules or the lists: signatures change
MAX_LENGTH = 255
SEPARATOR = " | "
SCAN_TRUSTS = ("scan", "cfi_scan")
NO_THREAD = "EMPTY: no crashing thread identified"
NO_FRAMES = "EMPTY: no frame data available"


@dataclass
class Result:
    """A signature with the notes that explain it and the generator version that made it."""

    signature: str
    notes: list[str] = field(default_factory=list)
    version: str = VERSION


@dataclass
class SigFrame:
    """One frame as the walk sees it: a physical frame or one inlined call of it."""

    index: int  # the physical frame's number in the thread
    inline: bool
    trust: str
    label: str  # normalized: what goes into the signature
    symbolicated: bool
    module: str | None
    scanned: bool  # found by stack scanning, or below such a frame
    status: str = "not used"  # kept, prefix, irrelevant, collapsed, scanned, above sentinel
    detail: str = ""  # the list line that decided, or the frame a collapsed one joined
    sentinel: str = ""  # the sentinels.txt line when the signature starts here


@dataclass
class Trace:
    """The result with what happened to each frame, for ``explain``."""

    result: Result
    thread_index: int | None
    frames: list[SigFrame]


def generate(report: dict[str, Any], annotations: dict[str, str] | None = None, *,
             lists: SigLists | None = None) -> Result:
    """The signature of a processed crash. annotations (upload fields) are merged over the
    dump's own ``report["annotations"]``; lists defaults to the shipped list files."""
    return trace(report, annotations, lists=lists).result


def trace(report: dict[str, Any], annotations: dict[str, str] | None = None, *,
          lists: SigLists | None = None) -> Trace:
    """``generate`` with the fate of every frame."""
    lists = lists or default_siglists()
    own = report.get("annotations")
    merged = {str(k): str(v) for k, v in {**(own if isinstance(own, dict) else {}), **(annotations or {})}.items()}
    notes: list[str] = []
    hang = hang_reason(merged)
    thread_index, thread, empty = _pick_thread(report, hang, merged, notes)
    lower = (report.get("system_info") or {}).get("os") == "Windows NT"
    frames = expand_frames(thread, lower) if thread else []
    if empty is None and not frames:
        empty = NO_FRAMES
        notes.append(f"thread {thread_index} has no frames")
    parts = [empty] if empty else _walk(frames, lists, notes)
    reason = str((report.get("crash_info") or {}).get("type") or "")
    distance = guard_page_distance((report.get("crash_info") or {}).get("address"),
                                   ((thread or {}).get("frames") or [{}])[0].get("registers"))
    wrap, why = _special_form(hang, merged, reason, frames, lists, distance)
    if why:
        notes.append(why)
    return Trace(Result(_join(wrap, parts, notes), notes), thread_index, frames)


def _special_form(hang: str | None, annotations: dict[str, str], reason: str, frames: list[SigFrame],
                  lists: SigLists, distance: int | None = None) -> tuple[list[str], str | None]:
    """The words that go before the frames (hang, OOM | <size>, stackoverflow; first that
    applies) and the note saying why; ([], None) for an ordinary crash."""
    if hang:
        return ["hang"], hang
    if found := oom(annotations, reason, _looked_at(frames), lists.oom):
        return ["OOM", found[0]], found[1]
    if overflow := stack_overflow(reason, [f.label for f in frames if not f.scanned], distance):
        return ["stackoverflow"], overflow
    return [], None


def _pick_thread(report: dict[str, Any], hang: str | None, annotations: dict[str, str],
                 notes: list[str]) -> tuple[int | None, dict[str, Any] | None, str | None]:
    """(thread index, thread document, EMPTY signature or None). A hang uses the thread its
    ``hang_thread`` annotation names (special.hung_thread), else thread 0, the main thread: a
    watchdog writes its dump from its own thread (Socorro's shutdownhang)."""
    if hang:
        threads = report.get("threads") or []
        if not threads:
            notes.append("hang dump without threads")
            return None, None, NO_FRAMES
        index, why = hung_thread(threads, annotation(annotations, HANG_THREAD_KEYS))
        notes.append(why)
        return index, threads[index], None
    crashing = report.get("crashing_thread")
    if not crashing:
        notes.append("the dump names no crashing thread (no exception record)")
        return None, None, NO_THREAD
    return crashing.get("threads_index"), crashing, None


def expand_frames(thread: dict[str, Any], lower_module: bool) -> list[SigFrame]:
    """The thread's frames with inlined calls as frames of their own, innermost first, before
    their physical frame (rust-minidump lists them inside it). Inlined calls share the
    physical frame's trust; everything from the first scanned frame down is ``scanned``."""
    out: list[SigFrame] = []
    scanned = False
    for number, frame in enumerate(thread.get("frames") or []):
        index = frame.get("frame", number)
        trust = str(frame.get("trust") or "none")
        scanned = scanned or trust in SCAN_TRUSTS
        module = frame.get("module")
        for inline in frame.get("inlines") or []:
            label = frame_label(inline.get("function"), frame, lower_module)
            out.append(SigFrame(index, True, trust, label, bool(inline.get("function")), module, scanned))
        function = frame.get("function")
        out.append(SigFrame(index, False, trust, frame_label(function, frame, lower_module),
                            bool(function), module, scanned))
    return out


def _collapse(frames: list[SigFrame]) -> None:
    """Mark frames without symbols that follow one of the same module: one entry per run."""
    for previous, frame in zip(frames, frames[1:], strict=False):
        if (not frame.symbolicated and not previous.symbolicated and frame.module
                and frame.module == previous.module):
            frame.status = "collapsed"
            frame.detail = previous.detail if previous.status == "collapsed" else f"frame {previous.index}"


def _find_sentinel(frames: list[SigFrame], lists: SigLists, notes: list[str]) -> int:
    """The index where the signature starts (0 when no sentinel applies); frames above it are
    marked. The first sentinels.txt line that matches a reliable frame wins, at the topmost
    frame it matches: a line's place in the file is its priority."""
    reliable = [(p, f) for p, f in enumerate(_until_scanned(frames)) if f.status != "collapsed"]
    for entry in lists.sentinels:
        position, frame = next(((p, f) for p, f in reliable if entry.matches(f.label)), (-1, None))
        if frame is None:
            continue
        for above in frames[:position]:
            above.status, above.detail = "above sentinel", ""
        frame.sentinel = entry.where
        notes.append(f"sentinel {frame.label!r} ({entry.where}): the signature starts at frame {frame.index}")
        return position
    return 0


def _until_scanned(frames: list[SigFrame]) -> list[SigFrame]:
    """The frames above the first one found by stack scanning."""
    return next((frames[:i] for i, f in enumerate(frames) if f.scanned), frames)


def _walk(frames: list[SigFrame], lists: SigLists, notes: list[str]) -> list[str]:
    """The signature's frames (at least one)."""
    _collapse(frames)
    start = _find_sentinel(frames, lists, notes)
    parts: list[str] = []
    used_scan = False
    for frame in frames[start:]:
        if frame.status == "collapsed":
            continue
        if frame.scanned and parts:
            notes.append(f"the signature stops at frame {frame.index}: it was found by stack scanning")
            break
        _decide(frame, lists, parts)
        if frame.scanned and parts and not used_scan:
            used_scan = True
            notes.append(f"no reliable frame is relevant: the signature comes from frames found by stack "
                         f"scanning, from frame {frame.index}")
        if frame.status == "kept":
            break
    if not parts:
        top = next(f for f in frames[start:] if f.status != "collapsed")
        top.status, top.detail, parts = "kept", f"fallback ({top.detail} ignored)", [top.label]
        notes.append(f"every frame is irrelevant: the signature is frame {top.index}")
    for frame in frames:
        if frame.status == "not used" and frame.scanned:
            frame.status = "scanned"
    return parts


def _decide(frame: SigFrame, lists: SigLists, parts: list[str]) -> None:
    """Classify one frame, appending its label to parts unless it is irrelevant."""
    if entry := first_match(lists.irrelevant, frame.label):
        frame.status, frame.detail = "irrelevant", entry.where
        return
    parts.append(frame.label)
    if entry := first_match(lists.prefix, frame.label):
        frame.status, frame.detail = "prefix", entry.where
    else:
        frame.status = "kept"


def _looked_at(frames: list[SigFrame]) -> list[str]:
    """Labels of the reliable frames from the top down to the signature's last one: where OOM
    handlers are looked for (they are irrelevant, so never in the signature itself)."""
    last = max((i for i, f in enumerate(frames) if f.status in ("kept", "prefix")), default=len(frames) - 1)
    return [f.label for f in frames[:last + 1] if not f.scanned]


def _join(wrap: list[str], parts: list[str], notes: list[str]) -> str:
    """wrap + parts joined with " | ", cut to MAX_LENGTH at a frame boundary with "..." last
    (a single frame longer than that is cut inside)."""
    signature = SEPARATOR.join(wrap + parts)
    if len(signature) <= MAX_LENGTH:
        return signature
    kept = list(parts)
    while len(kept) > 1 and len(SEPARATOR.join(wrap + kept + ["..."])) > MAX_LENGTH:
        kept.pop()
    signature = SEPARATOR.join(wrap + kept + ["..."])
    if len(signature) > MAX_LENGTH:
        signature = signature[:MAX_LENGTH - 3] + "..."
    notes.append(f"signature truncated to {MAX_LENGTH} characters: {len(parts) - len(kept)} of "
                 f"{len(parts)} frames dropped")
    return signature
