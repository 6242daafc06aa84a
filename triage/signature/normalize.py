"""Frame names as they appear in signatures: one stable string per frame.

A function name loses what changes between builds or compilers but not between bugs:
argument lists, return types, cv/ref qualifiers, template and generic arguments (``<T>``),
Rust hashes, compiler clone suffixes, closure numbers. A frame without a function becomes
``module@0x<module_offset>``, and one without a module ``@0x<address>``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

# Rust legacy mangling ends every path with a hash of the crate: core::panicking::panic::h1f2e...
RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")
# GCC/clang clones: "foo(int) [clone .cold]", "foo [clone .isra.0] [clone .constprop.1]", and
# the raw symbol forms of C functions: "process_item.cold", "crc32.part.0", "f.llvm.1234".
CLONE_BRACKETS = re.compile(r"\s*\[clone [^\]]*\]$")
CLONE_DOTS = re.compile(r"\.(?:cold|isra|constprop|part|lto_priv|llvm|localalias)(?:\.\d+)*$")
# Rust closures: v0 demangling numbers them ({closure#0}), legacy does not ({{closure}}). The
# number moves when a closure is added above, so both become the legacy form.
RUST_CLOSURE = re.compile(r"\{closure#\d+\}")
# glibc picks a string or memory routine per CPU at load time (IFUNC), and its symbols name
# the variant: memcpy reads __memmove_avx512_unaligned_erms on one tester's machine and
# __memmove_avx_unaligned_erms on the next (memcpy shares memmove's code), strlen reads
# __strlen_evex or __strlen_avx2. The routine's own name keeps one bug in one group.
GLIBC_VARIANT = re.compile(
    r"__((?:w?mem|w?str|stp|rawmem)[a-z]*)"
    r"(?:_(?:sse2|ssse3|sse4_[12]|avx2?|avx512[a-z]*|evex(?:512)?|erms|unaligned|aligned|movbe|rtm|nt|generic))+"
)
# Breakpad's dump_syms joins the DWARF path of a Rust function that has no mangled linkage
# name (#[no_mangle] exports, some std internals) with dots: nar.nar_generate_line,
# std.sys.personality.gcc.rust_eh_personality. Other tools write nar::nar_generate_line.
# C clone suffixes (.cold, .part.0) are stripped before this is tried.
BREAKPAD_RUST_PATH = re.compile(r"[a-z_][a-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
# Operator names hold characters that are delimiters elsewhere: operator<, operator(),
# operator new[], conversion operators "operator bool". Longest alternatives first.
OPERATOR = re.compile(
    r"\boperator\s*(?:<=>|<<=|>>=|->\*|<<|>>|<=|>=|->|\(\)|\[\]|&&|\|\||\+\+|--|==|!="
    r"|new\s*\[\]|delete\s*\[\]|(?:new|delete|co_await)\b|\"\"\s*\w+|[-+*/%^&|~!=<>,]=?"
    r"|\s[A-Za-z_][\w:]*)"
)
QUALIFIERS = {"const", "volatile", "&", "&&", "const&", "const&&", "noexcept", "__ptr64", "override", "final"}
PAIRS = {"(": ")", "<": ">", "[": "]", "{": "}", "`": "'"}
PLACEHOLDER = re.compile("\x00(\\d+)\x00")


def normalize_function(name: str) -> str:
    """The signature form of a demangled function name; ``name`` itself when nothing is left.

    ``std::vector<int, std::allocator<int>>::push_back(int const&)`` -> ``std::vector<T>::push_back``
    """
    text = " ".join(name.split())
    text = text.replace("`anonymous namespace'", "(anonymous namespace)")  # MSVC spelling
    text = _strip_suffixes(text)
    if variant := GLIBC_VARIANT.fullmatch(text):
        return variant.group(1)
    if BREAKPAD_RUST_PATH.fullmatch(text):
        return text.replace(".", "::")
    operators: list[str] = []
    text = OPERATOR.sub(lambda m: _protect(m.group(0), operators), text)
    text = text.replace("->", "\x01")  # Rust "fn() -> u32": its ">" closes no group
    text = _drop_return_type(text)
    text = _replace_groups(text, "<", ">", _template_replacement)
    text = _replace_groups(text, "(", ")", _argument_replacement)
    text = re.sub(r"::<T>", "<T>", text)  # Rust turbofish: lang_start::<()> -> lang_start<T>
    text = RUST_CLOSURE.sub("{{closure}}", text)
    text = PLACEHOLDER.sub(lambda m: operators[int(m.group(1))], text).replace("\x01", "->")
    text = re.sub(r"(?<!\bfor)(?<!\bas)(?<!\bdyn)\s+(?=[*&,])", "", text)  # Rust "for &F" stays
    text = re.sub(r",(?! )", ", ", text)
    return " ".join(text.split()) or name


def _strip_suffixes(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = RUST_HASH.sub("", text)
        text = CLONE_BRACKETS.sub("", text)
        text = CLONE_DOTS.sub("", text)
    return text


def _protect(operator: str, store: list[str]) -> str:
    """A placeholder for an operator name; the canonical spelling goes to store."""
    symbol = operator[len("operator"):].strip()
    if symbol.startswith(("new", "delete")):
        symbol = symbol.replace(" ", "")
        canonical = "operator " + symbol
    elif symbol[:1].isalpha() or symbol[:1] == "_":
        canonical = "operator " + symbol  # conversion operator: operator bool
    else:
        canonical = "operator" + symbol
    store.append(canonical)
    return f"\x00{len(store) - 1}\x00"


def _tokens(text: str) -> list[str]:
    """Split at spaces outside (), <>, [], {} and `' groups."""
    tokens: list[str] = []
    current: list[str] = []
    stack: list[str] = []
    for char in text:
        if stack and char == PAIRS[stack[-1]]:
            stack.pop()
        elif char in PAIRS:
            stack.append(char)
        elif char == " " and not stack:
            tokens.append("".join(current))
            current = []
            continue
        current.append(char)
    tokens.append("".join(current))
    return [t for t in tokens if t]


def _drop_return_type(text: str) -> str:
    """The last top-level token without trailing qualifiers: drops return types, calling
    conventions and MSVC access specifiers ("public: virtual void __cdecl Foo::bar(void) const")."""
    tokens = _tokens(text)
    while len(tokens) > 1 and tokens[-1] in QUALIFIERS:
        tokens.pop()
    while len(tokens) > 1 and _only_groups(tokens[-1]):
        # "foo (int)", "std::operator<< <std::char_traits<char> >(...)": a space before the
        # arguments or template arguments of the name
        tokens[-2:] = [tokens[-2] + tokens[-1]]
    return tokens[-1] if tokens else text


def _only_groups(token: str) -> bool:
    """Whether token is nothing but bracketed groups: "(int)", "<char>(int)"."""
    depth = 0
    for char in token:
        if depth == 0 and char not in "(<":
            return False
        if char in "(<":
            depth += 1
        elif char in ")>":
            depth -= 1
    return depth == 0 and token != "(anonymous namespace)"


def _replace_groups(text: str, opening: str, closing: str, replace: Callable[[str, str], str]) -> str:
    """Replace every outermost opening...closing group with replace(text_before, group)."""
    out, start, depth = [], 0, 0
    for index, char in enumerate(text):
        if char == opening:
            if depth == 0:
                out.append(text[start:index])
                start = index
            depth += 1
        elif char == closing and depth:
            depth -= 1
            if depth == 0:
                out.append(replace("".join(out), text[start:index + 1]))
                start = index + 1
    out.append(text[start:])  # the tail, or an unbalanced group kept as it was
    return "".join(out)


def _template_replacement(before: str, group: str) -> str:
    inside = group[1:-1]
    if " in " in inside:  # Breakpad's "<.plt ELF section in crashme>", "<unknown in foo.dll>"
        return group
    if " as " in inside or inside.startswith("impl "):  # Rust: <T as Trait>::f, <impl Trait for T>
        return "<" + _replace_groups(inside, "<", ">", _template_replacement) + ">"
    if inside.startswith("lambda_"):  # MSVC: Foo::<lambda_1a2b3c...>::operator(), a per-build hash
        return "<lambda>"
    return "<T>"


def _argument_replacement(before: str, group: str) -> str:
    if group == "(anonymous namespace)":
        return group
    return ""


def strip_hex(value: str | None) -> str:
    """rust-minidump's zero-padded hex without the padding: 0x0000a6cd -> 0xa6cd."""
    if not value:
        return "0x0"
    try:
        return hex(int(value, 16))
    except ValueError:
        return value


def frame_label(function: str | None, frame: dict[str, Any], lower_module: bool) -> str:
    """A frame's signature text: its normalized function, else module@0x<module_offset>, else
    @0x<address>. Windows module names are lower-cased: the same DLL is kernel32.dll in one dump
    and KERNEL32.DLL in another (corpus win-x64-breakpad-cet-xsave, win-x86-*)."""
    if function:
        return normalize_function(function)
    module = frame.get("module")
    if module:
        return f"{module.lower() if lower_module else module}@{strip_hex(frame.get('module_offset'))}"
    return f"@{strip_hex(frame.get('offset'))}"
