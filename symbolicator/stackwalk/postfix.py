"""Evaluate Breakpad's postfix rules: ``STACK CFI`` register rules and ``STACK WIN`` program
strings (see docs/symbol_files.md in Breakpad).

STACK CFI: ``{".cfa": "$rsp 16 +", ".ra": ".cfa -8 + ^", "$rbp": ".cfa -16 + ^"}``: the CFA
is computed first from callee registers; ``.ra`` and other registers may use it; ``^`` reads
a pointer-sized word from stack memory.

STACK WIN (x86 Windows): a program of assignments over variables, e.g.
``$T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ = $esp $T0 8 + =``; the caller's registers are the
final values of ``$eip $esp $ebp $ebx $esi $edi``.
"""

from __future__ import annotations

from typing import Callable

ReadWord = Callable[[int], "int | None"]
MAX_TOKENS = 512  # a hostile symbol file cannot make one evaluation loop forever


def _binary(op: str, lhs: int, rhs: int, mask: int) -> int | None:
    if op == "+":
        return (lhs + rhs) & mask
    if op == "-":
        return (lhs - rhs) & mask
    if op == "*":
        return (lhs * rhs) & mask
    if op in ("/", "%"):
        if rhs == 0:
            return None
        return (lhs // rhs if op == "/" else lhs % rhs) & mask
    if op == "@":  # align down to a power of two
        if rhs == 0 or rhs & (rhs - 1):
            return None
        return lhs & ~(rhs - 1) & mask
    return None


BINARY_OPS = frozenset("+-*/%@")


def eval_cfi_expr(expr: str, registers: dict[str, int], read_word: ReadWord, cfa: int | None,
                  mask: int) -> int | None:
    """Value of one STACK CFI expression, or None when it cannot be computed.

    registers: the callee's valid registers by bare name (``rsp``, ``x29``); a token
    ``$rsp`` or bare ``x29`` (ARM syntax) reads one.
    """
    stack: list[int] = []
    for count, token in enumerate(expr.split()):
        if count >= MAX_TOKENS:
            return None
        if token in BINARY_OPS:
            if len(stack) < 2:
                return None
            rhs, lhs = stack.pop(), stack.pop()
            value = _binary(token, lhs, rhs, mask)
            if value is None:
                return None
            stack.append(value)
        elif token == "^":
            if not stack:
                return None
            word = read_word(stack.pop())
            if word is None:
                return None
            stack.append(word)
        elif token == ".cfa":
            if cfa is None:
                return None
            stack.append(cfa)
        elif token == ".undef":
            return None
        else:
            value = _constant(token)
            if value is None:
                value = registers.get(token.lstrip("$"))
                if value is None:
                    return None
            stack.append(value & mask)
    return stack[0] if len(stack) == 1 else None


def _constant(token: str) -> int | None:
    try:
        return int(token, 10)
    except ValueError:
        return None


def parse_cfi_rules(rules: str) -> dict[str, str] | None:
    """Split ``.cfa: $rsp 8 + .ra: .cfa -8 + ^`` into {".cfa": "$rsp 8 +", ".ra": ".cfa -8 + ^"}.

    Register keys keep their spelling (``$rbp``, ``x29``); None when malformed.
    """
    out: dict[str, str] = {}
    register: str | None = None
    expr: list[str] = []
    for token in rules.split():
        if token.endswith(":"):
            if register is not None:
                if not expr:
                    return None
                out[register] = " ".join(expr)
            register, expr = token[:-1], []
        elif register is None:
            return None
        else:
            expr.append(token)
    if register is None or not expr:
        return None
    out[register] = " ".join(expr)
    return out


def eval_cfi_rules(rules: dict[str, str], registers: dict[str, int], read_word: ReadWord,
                   mask: int) -> tuple[int, int, dict[str, int]] | None:
    """(cfa, return address, {other caller register: value}) or None when .cfa or .ra fail.

    Other registers that cannot be computed are left out (losing one is fine).
    """
    cfa_expr, ra_expr = rules.get(".cfa"), rules.get(".ra")
    if cfa_expr is None or ra_expr is None:
        return None
    cfa = eval_cfi_expr(cfa_expr, registers, read_word, None, mask)
    if cfa is None:
        return None
    ra = eval_cfi_expr(ra_expr, registers, read_word, cfa, mask)
    if ra is None:
        return None
    others: dict[str, int] = {}
    for register, expr in rules.items():
        if register in (".cfa", ".ra"):
            continue
        value = eval_cfi_expr(expr, registers, read_word, cfa, mask)
        if value is not None:
            others[register.lstrip("$")] = value
    return cfa, ra, others


def eval_win_program(program: str, variables: dict[str, int], read_word: ReadWord) -> dict[str, int] | None:
    """Run a STACK WIN program string over 32-bit variables; returns the final variables.

    ``=`` assigns (``.undef`` deletes), other operators work on values; a variable read
    before it is set fails the program. Some Windows toolchains drop the space after ``=``
    (``=$eip``): such tokens are split.
    """
    mask = 0xFFFFFFFF
    values = dict(variables)
    stack: list[str | int | None] = []  # a variable name, an int, or None for .undef

    def as_int(item: str | int | None) -> int | None:
        return values.get(item) if isinstance(item, str) else item

    tokens: list[str] = []
    for token in program.split():
        if token.startswith("=") and len(token) > 1:
            tokens.extend(("=", token[1:]))
        else:
            tokens.append(token)
    if len(tokens) > MAX_TOKENS:
        return None
    for token in tokens:
        if token in BINARY_OPS:
            if len(stack) < 2:
                return None
            rhs, lhs = as_int(stack.pop()), as_int(stack.pop())
            if rhs is None or lhs is None:
                return None
            value = _binary(token, lhs, rhs, mask)
            if value is None:
                return None
            stack.append(value)
        elif token == "=":
            if len(stack) < 2:
                return None
            source, target = stack.pop(), stack.pop()
            if not isinstance(target, str):
                return None
            if source is None:
                values.pop(target, None)
                continue
            value = as_int(source)
            if value is None:
                return None
            values[target] = value
        elif token == "^":
            if not stack:
                return None
            address = as_int(stack.pop())
            word = read_word(address) if address is not None else None
            if word is None:
                return None
            stack.append(word & mask)
        elif token == ".undef":
            stack.append(None)
        elif token.startswith(("$", ".")):
            stack.append(token)
        else:
            value = _constant(token)
            if value is None:
                return None
            stack.append(value & mask)
    return values
