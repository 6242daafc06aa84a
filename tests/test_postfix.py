"""Breakpad postfix rules: STACK CFI expressions and STACK WIN programs."""

from __future__ import annotations

import struct

import pytest

from symbolicator.stackwalk.postfix import eval_cfi_expr, eval_cfi_rules, eval_win_program, parse_cfi_rules

MASK64 = (1 << 64) - 1


def memory(base: int, words: list[int], width: int = 8):
    data = b"".join(struct.pack("<Q" if width == 8 else "<I", w) for w in words)

    def read(address: int) -> int | None:
        offset = address - base
        if offset < 0 or offset + width > len(data):
            return None
        return int.from_bytes(data[offset:offset + width], "little")
    return read


def test_parse_rules_keeps_register_spelling() -> None:
    assert parse_cfi_rules(".cfa: $rsp 16 + .ra: .cfa -8 + ^ $rbp: .cfa -16 + ^") == {
        ".cfa": "$rsp 16 +", ".ra": ".cfa -8 + ^", "$rbp": ".cfa -16 + ^"}
    assert parse_cfi_rules(".cfa: sp 16 + .ra: x30 x29: .cfa -16 + ^")["x29"] == ".cfa -16 + ^"
    assert parse_cfi_rules("$rsp 8 +") is None  # no register first
    assert parse_cfi_rules(".cfa:") is None


def test_amd64_rules_recover_cfa_ra_and_saved_register() -> None:
    read = memory(0x1000, [0xAAAA, 0x5555, 0x401234])  # [rsp]=.., [rsp+8]=saved rbp, [rsp+16]=ra
    rules = {".cfa": "$rsp 24 +", ".ra": ".cfa -8 + ^", "$rbp": ".cfa -16 + ^"}
    cfa, ra, others = eval_cfi_rules(rules, {"rsp": 0x1000}, read, MASK64)
    assert (cfa, ra, others) == (0x1018, 0x401234, {"rbp": 0x5555})


def test_unreadable_other_register_is_dropped_not_fatal() -> None:
    read = memory(0x1000, [0x401234])
    rules = {".cfa": "$rsp 8 +", ".ra": ".cfa -8 + ^", "$rbx": ".cfa 4096 + ^"}
    assert eval_cfi_rules(rules, {"rsp": 0x1000}, read, MASK64) == (0x1008, 0x401234, {})


@pytest.mark.parametrize("expr,expected", [
    ("1 2 +", 3), ("5 3 -", 2), ("5 3 *", 15), ("7 2 /", 3), ("7 2 %", 1), ("161 8 @", 160),
    ("$rsp -8 +", 0xFF8), ("0 1 -", MASK64),
])
def test_operators(expr: str, expected: int) -> None:
    assert eval_cfi_expr(expr, {"rsp": 0x1000}, memory(0, []), None, MASK64) == expected


@pytest.mark.parametrize("expr", ["1 0 /", "1 0 %", "1 3 @", "+", "1 2", "$nope", ".cfa", ".undef", "0 ^", "1 frob"])
def test_invalid_expressions(expr: str) -> None:
    assert eval_cfi_expr(expr, {"rsp": 0x1000}, memory(0, []), None, MASK64) is None


def test_hostile_expression_is_bounded() -> None:
    assert eval_cfi_expr("1 " * 10_000, {}, memory(0, []), None, MASK64) is None


def test_stack_win_standard_prologue() -> None:
    read = memory(16, [0xFA1EF2E6, 0xB3EF04CE], width=4)  # saved ebp at 16, return address at 20
    values = eval_win_program("$T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ = $esp $T0 8 + =",
                              {"$ebp": 16, "$esp": 1600}, read)
    assert (values["$eip"], values["$ebp"], values["$esp"]) == (0xB3EF04CE, 0xFA1EF2E6, 24)


def test_stack_win_equal_sign_glued_to_next_token() -> None:
    values = eval_win_program("$T0 $ebp =$eip 5 =", {"$ebp": 16}, memory(0, [], 4))
    assert values is not None and values["$eip"] == 5 and values["$T0"] == 16


@pytest.mark.parametrize("program", ["$esp $kitties =", "0 2 =", "esp 2 =", "$esp 1 0 / =", "$esp 4000 ^ ="])
def test_stack_win_errors(program: str) -> None:
    assert eval_win_program(program, {"$esp": 32, "$ebp": 64}, memory(0, [], 4)) is None


def test_stack_win_undef_deletes() -> None:
    assert "$ebp" not in eval_win_program("$ebp .undef =", {"$ebp": 1}, memory(0, [], 4))
