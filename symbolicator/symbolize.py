"""Fill frames with function, file, line and inlined calls from a SymbolProvider."""

from __future__ import annotations

from schemas.stack import Frame, Thread
from symbolicator.symbols.provider import SymbolProvider, SymbolStatus


def symbolize_frame(frame: Frame, provider: SymbolProvider) -> None:
    """Look the frame up at its lookup address (return address - 1 for callers).

    The provider answers innermost first: inlined calls, then the real function, whose name,
    offset, file and line become the frame's; the inlined calls become ``frame.inlines``.
    """
    module = frame.module
    if module is None:
        return
    if provider.status(module) is not SymbolStatus.loaded:
        frame.missing_symbols = True
        return
    locations = provider.symbolize(module, frame.lookup_address - module.base_addr)
    if not locations:
        return
    outer = locations[-1]
    frame.function = outer.function
    frame.function_offset = outer.function_offset
    frame.file = outer.file
    frame.line = outer.line
    frame.inlines = list(locations[:-1])


def symbolize_thread(thread: Thread, provider: SymbolProvider) -> None:
    """Symbolize every frame of thread."""
    for frame in thread.frames:
        symbolize_frame(frame, provider)
