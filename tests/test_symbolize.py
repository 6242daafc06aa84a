"""Symbolication details: demangling C++, Rust and MSVC names."""

from __future__ import annotations

import pytest

from symbolicator.symbolize import demangle


@pytest.mark.parametrize("mangled,readable", [
    ("_ZN2ns1K1fEi", "ns::K::f(int)"),
    ("__ZN2ns1K1fEi", "ns::K::f(int)"),  # macOS adds an underscore
    ("_ZN4core9panicking5panic17h0123456789abcdefE", "core::panicking::panic"),  # legacy Rust
    ("_RNvCs1234_7mycrate3foo", "mycrate::foo"),  # Rust v0
    ("?f@K@ns@@QAEXH@Z", "public: void __thiscall ns::K::f(int)"),  # MSVC
])
def test_mangled_names_are_demangled(mangled: str, readable: str) -> None:
    assert demangle(mangled) == readable


@pytest.mark.parametrize("name", ["main", "crash_here", "ns::K::f(int)", "`anonymous namespace'::CrashFunction",
                                  "_Zgarbage", "?"])
def test_plain_or_broken_names_stay(name: str) -> None:
    assert demangle(name) == name
