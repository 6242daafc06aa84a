"""Real crashes of a test game (tests/data/realcrash): dumps written by the real Crashpad handler
for programs built with g++ 12 and rustc 1.95, processed by crashd's walker, symbolizer and
signature generator. Each signature must start at the frame a developer would blame.

How the dumps and symbols were made: tests/data/realcrash/README.md (make.py rebuilds them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from symbolicator.process import local_provider, process_minidump
from triage.signature import VERSION, Result, explain, generate

DATA = Path(__file__).parent / "data" / "realcrash"
CASES: list[dict[str, Any]] = json.loads((DATA / "cases.json").read_text())
Processed = dict[str, tuple[dict[str, Any], Result]]


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Processed:
    """Every case's report (as its JSON holds it) and signature, by case name."""
    provider = local_provider([DATA / "symbols"], tmp_path_factory.mktemp("symcache"))
    out: Processed = {}
    for case in CASES:
        doc = json.loads(json.dumps(process_minidump((DATA / case["dump"]).read_bytes(), provider)))
        out[case["name"]] = (doc, generate(doc))
    return out


def signature(processed: Processed, name: str) -> str:
    return processed[name][1].signature


def test_cases_cover_every_dump() -> None:
    dumps = {p.stem for p in (DATA / "dumps").glob("*.dmp")}
    assert dumps == {case["name"] for case in CASES}
    assert 15 <= len(dumps) <= 30


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_signature_names_the_culprit(processed: Processed, case: dict[str, Any]) -> None:
    doc, result = processed[case["name"]]
    assert result.signature == case["expected_signature"], explain(doc)
    assert result.version == VERSION
    assert not any("stack scanning" in note for note in result.notes), result.notes


def test_one_bug_one_signature_across_builds_and_call_paths(processed: Processed) -> None:
    """Dumps of one bug label share a signature (O0/O2, panic=unwind/abort, another caller of
    the same buggy function), and different bugs never do."""
    by_bug: dict[str, set[str]] = {}
    for case in CASES:
        by_bug.setdefault(case["bug"], set()).add(signature(processed, case["name"]))
    assert all(len(signatures) == 1 for signatures in by_bug.values()), by_bug
    distinct = [next(iter(signatures)) for signatures in by_bug.values()]
    assert len(set(distinct)) == len(distinct)


def test_rust_panics_name_their_ffi_function(processed: Processed) -> None:
    """Two panics in two NAR functions: two signatures, each naming its function, never the
    panic runtime (__rustc::rust_begin_unwind, __rustc::__rust_abort, core::panicking::*)."""
    unwrap = signature(processed, "game-nar-unwrap-O2-nar-abort")
    expect = signature(processed, "game-nar-expect-O2-nar-abort")
    assert (unwrap, expect) == ("nar::nar_generate_line", "nar::nar_load_persona")
    for name in ("game-nar-unwrap-O0-nar-abort", "game-nar-unwrap-O2-nar-unwind"):
        assert signature(processed, name) == unwrap
    doc = processed["game-nar-unwrap-O2-nar-abort"][0]
    names = [frame.get("function") or "" for frame in doc["crashing_thread"]["frames"]]
    assert "__rustc::rust_begin_unwind" in names and "core::option::unwrap_failed" in names


def test_kernel_crashes_join_their_caller(processed: Processed) -> None:
    assert signature(processed, "game-ggml-decode-O2") == \
        "ggml_vec_dot_f32 | ggml_compute_forward_mul_mat | llama_decode_layer"
    assert signature(processed, "game-ggml-sample-O2") == "ggml_vec_dot_f32 | llama_sample_token"


def test_uncaught_throw_names_the_thrower(processed: Processed) -> None:
    for name in ("game-uncaught-throw-O0", "game-uncaught-throw-O2"):
        doc, result = processed[name]
        names = [frame.get("function") or "" for frame in doc["crashing_thread"]["frames"]]
        assert "std::terminate()" in names and "__cxa_throw" in names
        assert result.signature == "game::load_save"


def test_libc_string_routines_join_their_caller(processed: Processed) -> None:
    """glibc's per-CPU variant (__memmove_avx512_unaligned_erms here) reads as the routine."""
    assert signature(processed, "game-memcpy-O0") == "memmove | game::copy_chat_message"
    assert signature(processed, "game-strlen-O2") == "strlen | game::chat_message_length"


def test_worker_thread_crash_uses_the_crashing_thread(processed: Processed) -> None:
    doc, result = processed["game-thread-O2"]
    assert doc["crash_info"]["crashing_thread"] != 0
    assert result.signature == "game::stream_asset"
