"""The records the symbol modules share: what became of a module's symbols, the function and
STACK WIN records a lookup returns, and the SymbolProvider protocol the walker and symbolizer
ask (rust-minidump's ``breakpad-symbols/src/sym_file/types.rs``).

A leaf: it imports nothing of ``symbolicator.symbols``, so provider.py, cache/ and symfile.py
all import it and none of them imports another for a type. Addresses given to a provider are
module offsets (address - module.base_addr).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from schemas.stack import Module, SourceLocation


class SymbolStatus(str, Enum):
    """What became of a module's symbols (rust-minidump's loaded/missing/corrupt)."""

    loaded = "loaded"
    missing = "missing"  # not found anywhere
    corrupt = "corrupt"  # found, but could not be parsed
    unavailable = "unavailable"  # a source could not be reached: try again later


@dataclass(frozen=True)
class WinFrameInfo:
    """A Breakpad ``STACK WIN`` record (x86 Windows frame data or FPO), for one function.

    ``STACK WIN type rva code_size prolog_size epilog_size parameter_size saved_register_size
    local_size max_stack_size has_program_string program_string_OR_allocates_base_pointer``
    """

    type: int  # 4 = FrameData (program string), 0 = FPO
    rva: int
    code_size: int
    prolog_size: int
    epilog_size: int
    parameter_size: int
    saved_register_size: int
    local_size: int
    max_stack_size: int
    program_string: str | None
    allocates_base_pointer: bool


@dataclass(frozen=True)
class FunctionInfo:
    """A function (FUNC record, or PUBLIC symbol when there is no FUNC) covering an address."""

    name: str
    address: int  # module offset of its start
    size: int | None  # None for PUBLIC symbols
    parameter_size: int = 0


class SymbolProvider(Protocol):
    """Symbols of the crashed process's modules, looked up by module and module offset."""

    def status(self, module: Module) -> SymbolStatus:
        """Whether the module's symbols were loaded (looking them up if not done yet)."""

    def cfi_rules(self, module: Module, offset: int) -> dict[str, str] | None:
        """The STACK CFI rules in force at offset: the INIT record's rules updated by every
        delta record at or below offset, as {register: postfix expression} with keys like
        ``.cfa``, ``.ra``, ``$rbp``/``rbp``. None when no CFI covers offset."""

    def win_frame_info(self, module: Module, offset: int) -> WinFrameInfo | None:
        """The STACK WIN record covering offset (the FrameData one when both kinds exist)."""

    def function_at(self, module: Module, offset: int) -> FunctionInfo | None:
        """The FUNC (or nearest preceding PUBLIC) covering offset; None when none does."""

    def symbolize(self, module: Module, offset: int) -> list[SourceLocation]:
        """Source locations at offset: inlined calls innermost first, then the function
        itself (its function_offset set). Empty when the module has no symbols there."""
