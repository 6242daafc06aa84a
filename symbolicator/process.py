"""One call from minidump bytes to the processed crash: read, walk every thread, symbolicate.

The CLI (`crashd stackwalk`), the processing job and the benchmarks all go through here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from schemas.stack import Thread
from symbolicator.limits import DEFAULT_LIMITS, Limits
from symbolicator.minidump import Minidump, read_minidump
from symbolicator.report import build_report
from symbolicator.stackwalk.walker import walk_thread
from symbolicator.symbolize import symbolize_thread
from symbolicator.symbols.provider import CachedSymbolProvider
from symbolicator.symbols.sources import LocalDirSource
from symbolicator.symbols.types import SymbolProvider

log = logging.getLogger(__name__)


def walk_all_threads(dump: Minidump, provider: SymbolProvider, deadline: float | None = None,
                     limits: Limits = DEFAULT_LIMITS,
                     spans: dict[int, tuple[int, int]] | None = None) -> tuple[list[Thread], list[str]]:
    """Walk and symbolicate every thread read (the crashing one first, so a time limit or
    the frame budget spares it), limits.frames_per_thread frames each and
    limits.frames_per_dump in all: once that budget is spent, threads get their context
    frame only, with a note. A thread that fails becomes a note, not an error. Returns
    threads in dump order; spans, when given, gets the stack bytes each walk read
    (walker.walk_thread)."""
    order = sorted(range(len(dump.threads)), key=lambda i: i != dump.crashing_thread)
    walked: dict[int, Thread] = {}
    notes: list[str] = []
    budget = limits.frames_per_dump
    shortened = 0
    for index in order:
        dump_thread = dump.threads[index]
        if deadline is not None and time.monotonic() > deadline:
            walked[index] = Thread(thread_id=dump_thread.thread_id, name=dump_thread.name,
                                   notes=["not walked: processing time limit reached"])
            continue
        max_frames = max(1, min(limits.frames_per_thread, budget))
        try:
            thread = walk_thread(dump, index, provider, deadline, max_frames, spans)
            symbolize_thread(thread, provider)
        except Exception:  # one thread's walk must not lose the others (logged with its traceback)
            log.exception("walking thread %d failed", index)
            thread = Thread(thread_id=dump_thread.thread_id, name=dump_thread.name)
            notes.append(f"thread {index}: not walked: an internal error of the stack walker (its traceback is in "
                         f"the worker log)")
        budget -= len(thread.frames)
        if max_frames < limits.frames_per_thread and len(thread.frames) >= max_frames:
            thread.notes.append(f"stopped: the dump's budget of {limits.frames_per_dump} frames is spent")
            shortened += 1
        walked[index] = thread
    if shortened:
        notes.append(f"frames: the budget of {limits.frames_per_dump} frames per dump was spent; "
                     f"{shortened} threads were walked short (the last ones to their context frame only)")
    return [walked[i] for i in range(len(dump.threads))], notes


def process_minidump(data: bytes, provider: SymbolProvider, deadline: float | None = None,
                     limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The rust-minidump-style JSON report of a dump's bytes, its work bounded by limits."""
    dump = read_minidump(data, limits)
    threads, notes = walk_all_threads(dump, provider, deadline, limits)
    return build_report(dump, threads, provider, notes)


def local_provider(symbols_dirs: list[Path], cache_dir: Path) -> SymbolProvider:
    """A provider reading Breakpad-layout folders, caching conversions in cache_dir."""
    return CachedSymbolProvider([LocalDirSource(d) for d in symbols_dirs], cache_dir)
