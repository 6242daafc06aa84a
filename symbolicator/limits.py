"""How much of one dump is read, walked and reported: the bound on the work per dump.

A dump's lists are counted by the dump itself, and a hostile one lists 200,000 copies of one
thread in 9.6 MB (48 bytes a thread, all pointing at one context and one stack): read and
walked whole, that took 15 to 18 s and a 1.2 GB worker, and made a 167 MB report and a 284 MB
crash page (docs/benchmarks.md, "Amplification"). Past these limits the rest of a list is
left out and the report says so (``cut``, and a note: ``threads: 200000 listed, 1024 read
and walked; ...``). The table of limits and what each cut does: docs/processing.md.

Each limit is far above what a real game's dump holds: the corpus's largest has 17 threads,
354 modules (an iOS app with every system framework), 65 memory regions and 8 annotations;
an Unreal Engine game on a 64-core machine runs about 250 threads, a Windows game loads 300
to 800 modules, and a full-memory Windows dump has some thousands of regions.

A leaf module: it imports nothing of the package, so the reader and the walker both can.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """The bounds on one dump's work. The crashing thread is always read and walked, even
    past ``threads``; it is walked first, so ``frames_per_dump`` never shortens it."""

    threads: int = 1024  # threads read and walked, in dump order (plus the crashing one)
    modules: int = 4096  # loaded modules read (frames outside them have no module)
    unloaded_modules: int = 1024  # unloaded modules read
    memory_regions: int = 65536  # memory list and memory64 list ranges read, each list
    annotations: int = 1024  # Crashpad annotations read, all dictionaries and lists together
    frames_per_thread: int = 1024  # frames walked in one thread
    frames_per_dump: int = 32768  # frames walked in all threads together; then context frames only

    @classmethod
    def unbounded(cls) -> "Limits":
        """No limit on any list: what processing did before the limits, for
        bench/amplification.py (frames per thread stay at 1024, the walker's stop from the
        start)."""
        big = 1 << 62
        return cls(threads=big, modules=big, unloaded_modules=big, memory_regions=big, annotations=big,
                   frames_per_dump=big)


DEFAULT_LIMITS = Limits()
