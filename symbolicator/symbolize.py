"""Fill frames with function, file, line and inlined calls from a SymbolProvider."""

from __future__ import annotations

from functools import lru_cache

from pydemumble import demangle as _demumble

from schemas.stack import Frame, SourceLocation, Thread
from symbolicator.symbols.types import SymbolProvider, SymbolStatus

# Itanium C++ (_Z, __Z on macOS), Rust v0 (_R; legacy Rust names are Itanium-shaped) and
# MSVC (?) manglings; anything else is a plain name (C, or already demangled by dump_syms).
MANGLED_PREFIXES = ("_Z", "__Z", "_R", "?")


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """The readable form of a mangled C++/Rust/MSVC name; other names unchanged.

    ``_ZN4core9panicking5panic17h0123456789abcdefE`` -> ``core::panicking::panic``.
    """
    if not name.startswith(MANGLED_PREFIXES):
        return name
    try:
        readable = _demumble(name)
    except Exception:  # noqa: BLE001 - a name the demangler chokes on stays as it was
        return name
    return readable or name


def _readable(location: SourceLocation) -> SourceLocation:
    if location.function:
        location.function = demangle(location.function)
    return location


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
    locations = [_readable(loc) for loc in provider.symbolize(module, frame.lookup_address - module.base_addr)]
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
