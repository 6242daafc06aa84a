"""triage/components.py: which component owns a crash, from its stack and its log attachments."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest

from symbolicator.process import local_provider, process_minidump
from triage.components import ComponentRules, classify, default_rules, load_rules

from conftest import require_corpus


def frame(module: str | None, function: str | None = None, file: str | None = None,
          trust: str = "cfi", inlines: list[dict] | None = None) -> dict[str, Any]:
    return {"trust": trust, "module": module, "function": function, "file": file, "inlines": inlines}


def inline(function: str, file: str | None = None) -> dict[str, Any]:
    return {"function": function, "file": file, "line": 1}


def report(*frames: dict[str, Any]) -> dict[str, Any]:
    """A report whose crashing thread has these frames; the first is the context frame."""
    frames = [dict(f, frame=i, trust="context" if i == 0 and f["trust"] == "cfi" else f["trust"])
              for i, f in enumerate(frames)]
    return {"crashing_thread": {"frames": frames}, "system_info": {"os": "Windows NT"}}


def rules_from(tmp_path: Path, text: str) -> ComponentRules:
    path = tmp_path / "components.toml"
    path.write_text(text)
    return load_rules(path)


# -- the stack ------------------------------------------------------------------------------


@pytest.mark.parametrize("module, component", [
    ("nar_ffi.dll", "nar_ffi"), ("libnar_ffi.so", "nar_ffi"), ("libnar_ffi.dylib", "nar_ffi"),
    ("llama.dll", "llama_cpp"), ("ggml-cuda.dll", "llama_cpp"), ("libggml-vulkan.so", "llama_cpp"),
    ("libllama.so", "llama_cpp"), ("libggml-metal.dylib", "llama_cpp"),
    ("libzklogin_client.so", "zklogin"),
    ("nvoglv64.dll", "driver"), ("nvwgf2umx.dll", "driver"), ("atio6axx.dll", "driver"),
    ("amdxx64.dll", "driver"), ("igd10iumd64.dll", "driver"), ("NVOGLV64.DLL", "driver"),
    ("libnvidia-glcore.so.535.54.03", "driver"), ("libGLX_nvidia.so.0", "driver"),
    ("iris_dri.so", "driver"), ("radeonsi_dri.so", "driver"),
    ("driver", "game"),  # the corpus's divide-by-zero test program is called "driver"
    ("game.exe", "game"),
])
def test_module_globs_across_platforms(module: str, component: str) -> None:
    assert classify(report(frame(module))).component == component


@pytest.mark.parametrize("function, component", [
    ("nar::story::advance", "nar_ffi"),
    ("<nar::story::Story as core::fmt::Display>::fmt", "nar_ffi"),
    ("nar_story_advance", "nar_ffi"),
    ("llama_decode", "llama_cpp"), ("ggml_compute_forward_mul_mat", "llama_cpp"),
    ("gguf_init_from_file", "llama_cpp"), ("llama_context::decode(llama_batch&)", "llama_cpp"),
    ("ZkLoginFlow::verify_proof", "zklogin"), ("auth::start_zklogin_session", "zklogin"),
    ("Narrator::speak", "game"), ("std::vector<nar::Line>::at", "game"),
])
def test_function_globs_in_the_game_module(function: str, component: str) -> None:
    assert classify(report(frame("game.exe", function))).component == component


@pytest.mark.parametrize("file, component", [
    ("C:\\build\\nar\\src\\story.rs", "nar_ffi"),
    ("/home/ci/.cargo/registry/src/index.crates.io-6f17d22bba15001f/nar-core-0.3.0/src/db.rs", "nar_ffi"),
    ("/home/ci/llama.cpp/src/llama-context.cpp", "llama_cpp"),
    ("/src/auth/zklogin/prover.cpp", "zklogin"),
    ("/src/game/world.cpp", "game"),
])
def test_source_path_globs(file: str, component: str) -> None:
    assert classify(report(frame("game.exe", "f", file))).component == component


def test_inlined_calls_count_innermost_first() -> None:
    # ggml_add inlined into nar_tick: the innermost call is llama.cpp's
    result = classify(report(frame("game.exe", "Game::tick", inlines=[inline("ggml_add"), inline("nar_tick")])))
    assert result.component == "llama_cpp"
    assert any("frame 0 (inlined call 0)" in n and "ggml_add" in n for n in result.notes)
    nested = classify(report(frame("game.exe", "Game::tick", inlines=[inline("nar::story::advance")])))
    assert nested.component == "nar_ffi"


def test_llama_rule_wins_inside_nar_module() -> None:
    # NAR linking llama.cpp statically: the function is better evidence than the module
    assert classify(report(frame("nar_ffi.dll", "ggml_graph_compute"))).component == "llama_cpp"


@pytest.mark.parametrize("trust", ["scan", "cfi_scan", "none", None])
def test_scanned_frames_never_decide(trust: str | None) -> None:
    result = classify(report(frame("game.exe"), frame("nar_ffi.dll", trust=trust)))
    assert result.component == "game"
    # below a scanned frame even a CFI frame is a guess
    result = classify(report(frame("ntdll.dll"), frame("game.exe", trust=trust), frame("nar_ffi.dll")))
    assert result.component == "system"
    assert any("stopped at frame 1" in n for n in result.notes)


@pytest.mark.parametrize("top", [
    [frame("libc.so.6", "raise"), frame("libc.so.6", "abort")],
    [frame("libpthread-2.19.so"), frame("libc-2.23.so", "abort")],
    [frame("ntdll.dll"), frame("KERNELBASE.dll", "RaiseException"), frame("ucrtbase.dll", "abort")],
    [frame("libsystem_kernel.dylib", "__pthread_kill"), frame("libsystem_c.dylib", "abort")],
    # a static CRT and Rust's panic machinery linked into the game's own module
    [frame("game.exe", "abort"), frame("game.exe", "std::panicking::rust_panic_with_hook"),
     frame("game.exe", "core::panicking::panic_bounds_check")],
])
def test_system_frames_are_skipped_for_the_owner_below(top: list[dict]) -> None:
    result = classify(report(*top, frame("game.exe", "nar::story::advance"), frame("game.exe", "main")))
    assert result.component == "nar_ffi"
    assert any("skipped" in n for n in result.notes)


def test_skipped_frames_do_not_count_in_depth(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, '[[rule]]\ncomponent = "nar_ffi"\nfunctions = ["nar::*"]\nframes = 1\n'
                                 '[[rule]]\ncomponent = "system"\nfallback = true\nmodules = ["libc.so*"]\n')
    stack = report(*[frame("libc.so.6")] * 5, frame("x", "nar::a"))
    assert classify(stack, rules=rules).component == "nar_ffi"
    assert classify(report(frame("x", "g"), frame("x", "nar::a")), rules=rules).component == "game"


def test_system_only_when_every_trusted_frame_is_system() -> None:
    assert classify(report(frame("ntdll.dll"), frame("kernel32.dll"))).component == "system"
    assert classify(report(frame("libc.so.6"), frame("game", trust="scan"))).component == "system"
    assert classify(report(frame("libc.so.6", "abort"), frame("game"))).component == "game"


def test_default_game() -> None:
    assert classify(report(frame("game.exe", "World::update"))).component == "game"
    assert classify({"crashing_thread": None}).component == "game"
    assert classify({"crashing_thread": {"frames": []}}).component == "game"
    assert classify({}).component == "game"


def test_depth_limits_the_search() -> None:
    deep = [frame("game.exe", f"f{i}") for i in range(10)]
    assert classify(report(*deep, frame("nar_ffi.dll"))).component == "game"
    assert classify(report(*deep[:9], frame("nar_ffi.dll"))).component == "nar_ffi"


def test_game_rule_makes_game_frames_claim(tmp_path: Path) -> None:
    # by default a game callback crashing under a NAR call goes to NAR
    stack = report(frame("mygame.exe", "OnStoryEvent"), frame("nar_ffi.dll", "nar::callbacks::emit"))
    assert classify(stack).component == "nar_ffi"
    text = Path(default_rules().source).read_text()
    rules = rules_from(tmp_path, text + '\n[[rule]]\ncomponent = "game"\nmodules = ["mygame.exe"]\n')
    assert classify(stack, rules=rules).component == "game"


def test_notes_name_the_rule_and_frame() -> None:
    result = classify(report(frame("libc.so.6", "abort"), frame("libnar_ffi.so", "nar::x")))
    assert result.reason_text is None
    assert any("rule 4 (nar_ffi) claims frame 1 [cfi] libnar_ffi.so!nar::x" in n for n in result.notes)


# -- log attachments ------------------------------------------------------------------------

GGML_LOG = ("llama_model_load: loaded meta data\n"
            "/home/ci/llama.cpp/ggml/src/ggml.c:1234: GGML_ASSERT(ctx->mem_buffer != NULL) failed\n"
            "Aborted (core dumped)\n")
PANIC_NEW = ("[INFO] story tick\nthread 'main' panicked at src/nar/story.rs:88:14:\n"
             "index out of bounds: the len is 3 but the index is 7\n"
             "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n")
PANIC_OLD = ("thread 'nar-worker' panicked at 'index out of bounds: the len is 3 but the index is 7', "
             "src/nar/story.rs:88:14\n")
PANIC_REASON = "panicked at src/nar/story.rs:88:14: index out of bounds: the len is 3 but the index is 7"
UNKNOWN_PANIC = "thread '<unnamed>' panicked at src/lib.rs:10:5:\nexplicit panic\n"
GAME = report(frame("game.exe", "World::update"))


def test_ggml_assert_decides_when_the_stack_does_not() -> None:
    result = classify(GAME, [GGML_LOG])
    assert result.component == "llama_cpp"
    assert result.reason_text == "GGML_ASSERT(ctx->mem_buffer != NULL) failed"
    assert any("ggml.c:1234" in n for n in result.notes)
    system_only = classify(report(frame("libc.so.6", "abort")), [GGML_LOG])
    assert system_only.component == "llama_cpp"


def test_old_ggml_assert_format_is_normalized() -> None:
    log = "GGML_ASSERT: D:\\a\\llama.cpp\\ggml.c:5678: view_src == NULL || data_size == 0\n"
    result = classify(GAME, [log])
    assert (result.component, result.reason_text) == ("llama_cpp", "GGML_ASSERT(view_src == NULL || data_size == 0) failed")


def test_a_deciding_stack_wins_over_the_log_but_the_reason_is_kept() -> None:
    result = classify(report(frame("nvoglv64.dll")), [GGML_LOG])
    assert result.component == "driver"
    assert result.reason_text == "GGML_ASSERT(ctx->mem_buffer != NULL) failed"
    assert any("driver is kept" in n for n in result.notes)


@pytest.mark.parametrize("log", [PANIC_NEW, PANIC_OLD, PANIC_NEW.replace("'main'", "'main' (12345)"),
                                 PANIC_NEW.replace("\n", "\r\n")],
                         ids=["rust-1.73", "rust-old", "rust-1.91-thread-id", "crlf"])
def test_rust_panic_in_nar_code(log: str) -> None:
    result = classify(GAME, [log])
    assert (result.component, result.reason_text) == ("nar_ffi", PANIC_REASON)


def test_a_sentry_event_message_is_read_like_a_log_line_before_the_logs() -> None:
    """A message-only event has no frames: its text may still name the component."""
    no_frames = {"crashing_thread": {"frames": []}}
    result = classify({**no_frames, "event_text": PANIC_NEW}, [GGML_LOG])
    assert (result.component, result.reason_text) == ("nar_ffi", PANIC_REASON)
    assert any(n.startswith("event message: Rust panic at src/nar/story.rs") for n in result.notes), result.notes
    ggml = classify({**no_frames, "event_text": "ggml.c:1234: GGML_ASSERT(n_ctx > 0) failed"})
    assert (ggml.component, ggml.reason_text) == ("llama_cpp", "GGML_ASSERT(n_ctx > 0) failed")
    assert classify({**no_frames, "event_text": "level failed to load"}).component == "game"
    assert classify({**no_frames, "event_text": None}, [GGML_LOG]).component == "llama_cpp"  # odd value: logs only


def test_other_panics_keep_the_stack_result() -> None:
    assert (classify(GAME, [UNKNOWN_PANIC]).component, classify(GAME, [UNKNOWN_PANIC]).reason_text) == (
        "game", "panicked at src/lib.rs:10:5: explicit panic")
    assert classify(report(frame("llama.dll")), [UNKNOWN_PANIC]).component == "llama_cpp"


def test_old_panic_with_a_multiline_message_keeps_its_first_line() -> None:
    log = ("thread 'main' panicked at 'called `Result::unwrap()` on an `Err` value: Error {\n"
           "    kind: NotFound,\n}', /cargo/registry/src/index.crates.io-6f17/nar-core-0.3.0/src/db.rs:12:9\n")
    result = classify(GAME, [log])
    assert result.component == "nar_ffi"
    assert result.reason_text.endswith("db.rs:12:9: called `Result::unwrap()` on an `Err` value: Error {")


def test_several_panics_the_first_wins() -> None:
    # the panic reaching the FFI boundary adds a second, useless one (Rust >= 1.71)
    log = PANIC_NEW + ("thread 'main' panicked at library/core/src/panicking.rs:221:5:\n"
                       "panic in a function that cannot unwind\n")
    assert classify(GAME, [log]).reason_text == PANIC_REASON
    assert classify(GAME, [UNKNOWN_PANIC + PANIC_NEW]).reason_text.startswith("panicked at src/lib.rs")
    # several logs: the first one with a hint
    assert classify(GAME, ["nothing here\n", GGML_LOG, PANIC_NEW]).component == "llama_cpp"


def test_big_log_only_the_tail_is_read() -> None:
    filler = "x" * 99 + "\n"
    assert classify(GAME, [filler * 30_000 + PANIC_NEW]).component == "nar_ffi"  # 3 MB before
    assert classify(GAME, [PANIC_NEW + filler * 20_000]).reason_text is None  # 2 MB after
    assert classify(GAME, [(filler * 20_000 + GGML_LOG).encode()]).component == "llama_cpp"  # bytes


def test_hostile_logs_are_bounded_work() -> None:
    logs = ["GGML_ASSERT" * 200_000, "panicked at " * 100_000, "a:1: " * 300_000 + "GGML_ASSERT(x"]
    start = time.monotonic()
    assert classify(GAME, logs).reason_text is None
    assert time.monotonic() - start < 5


def test_reason_text_is_trimmed() -> None:
    log = "thread 'main' panicked at src/nar/a.rs:1:1:\n" + "boom " * 300 + "\n"
    reason = classify(GAME, [log]).reason_text
    assert len(reason) == 500 and reason.startswith("panicked at src/nar/a.rs:1:1: boom boom")
    assert classify(GAME, ["  GGML_ASSERT(a   &&\tb) failed  \n"]).reason_text == "GGML_ASSERT(a && b) failed"


def test_markers_without_a_location_are_no_hint() -> None:
    logs = ["the test panicked at startup\n", "grep GGML_ASSERT src/\n"]
    assert classify(GAME, logs).reason_text is None


# -- the rules file -------------------------------------------------------------------------


def test_packaged_rules_load() -> None:
    rules = load_rules()
    assert rules.frames == 10 and rules.default == "game"
    assert [r.component for r in rules.owners] == ["driver", "llama_cpp", "zklogin", "nar_ffi"]
    assert default_rules() is default_rules()


@pytest.mark.parametrize("text, problem", [
    ("[[rule]\ncomponent = 'x'", "not valid TOML"),
    ("[[rule]]\ncomponent = 'nar'\nmodule = ['a']\n", "rule 1 (nar): unknown key(s) ['module']"),
    ("[[rule]]\nmodules = ['a']\n", "rule 1: missing 'component'"),
    ("[[rule]]\ncomponent = 'Nar FFI'\nmodules = ['a']\n", "rule 1 (Nar FFI) component: must be a lower-case name"),
    ("[[rule]]\ncomponent = 'nar'\nmodules = 'a.dll'\n", "rule 1 (nar) modules: must be a list of non-empty strings"),
    ("[[rule]]\ncomponent = 'nar'\nfunctions = ['']\n", "rule 1 (nar) functions: must be a list"),
    ("[[rule]]\ncomponent = 'nar'\n", "rule 1 (nar): needs at least one of modules, functions, files"),
    ("[[rule]]\ncomponent = 'nar'\nmodules = ['a']\nframes = 0\n", "rule 1 (nar) frames: must be a whole number"),
    ("[[rule]]\ncomponent = 'nar'\nmodules = ['a']\nframes = true\n", "rule 1 (nar) frames: must be a whole number"),
    ("[[rule]]\ncomponent = 'system'\nmodules = ['a']\nfallback = true\nframes = 3\n", "'frames' has no meaning"),
    ("[[rule]]\ncomponent = 'system'\nmodules = ['a']\nfallback = 'yes'\n", "fallback: must be true or false"),
    ("[settings]\nframes = 10\n", "no [[rule]] tables"),
    ("[settings]\ndepth = 3\n[[rule]]\ncomponent = 'a'\nmodules = ['a']\n", "[settings]: unknown key(s) ['depth']"),
    ("[rules]\n", "unknown top-level key(s) ['rules']"),
])
def test_bad_toml_raises_a_clear_value_error(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        rules_from(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "components.toml") + ": ")
    assert problem in str(info.value)


# -- real corpus stacks ---------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def corpus_report(case: str, cache: Path) -> dict[str, Any]:
    folder = require_corpus() / case
    dump = next(folder.glob("*.dmp"))
    return process_minidump(dump.read_bytes(), local_provider([folder / "symbols"], cache / case))


@pytest.fixture(scope="module")
def sym_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("symcache")


@pytest.mark.parametrize("case, component", [
    ("linux-x64-rust-linux-mini", "game"),  # a Rust test program: its own crate, not NAR
    ("mac-x64-rust-inlines", "game"),
    ("win-x64-rust-invalid-parameter", "game"),
    ("linux-x64-generated-crashpad-abort-O2", "game"),  # libc abort called from crashme.c
    ("linux-x64-breakpad-overflow", "game"),  # __chk_fail ... gsignal in libc, then overflow()
    ("mac-x64-rust-simple-crashpad", "game"),  # libsystem_kernel, libsystem_c, then crashy
    ("linux-x64-breakpad-divide-by-zero", "game"),  # a module called "driver" is no GPU driver
    ("win-x64-sentry-native", "system"),  # memset in VCRUNTIME140D.dll; the caller is scanned
    ("win-x64-breakpad-cet-xsave", "game"),  # no crash recorded: no crashing thread
])
def test_corpus_cases(case: str, component: str, sym_cache: Path) -> None:
    result = classify(corpus_report(case, sym_cache))
    assert result.component == component, result.notes


def test_corpus_libc_abort_skipped_for_a_rule_below(tmp_path: Path, sym_cache: Path) -> None:
    rules = rules_from(tmp_path, Path(default_rules().source).read_text()
                       + '\n[[rule]]\ncomponent = "crashme"\nfunctions = ["process_item"]\n')
    result = classify(corpus_report("linux-x64-generated-crashpad-abort-O2", sym_cache), rules=rules)
    assert result.component == "crashme"
    assert any("skipped 3" in n and "libc.so.6!abort" in n for n in result.notes)
    assert any("claims frame 3 [cfi] crashme!process_item" in n for n in result.notes)


def test_corpus_rust_inlines_with_a_rule_and_a_panic_log(tmp_path: Path, sym_cache: Path) -> None:
    rules = rules_from(tmp_path, '[[rule]]\ncomponent = "nar_ffi"\nfunctions = ["sadness_generator::*"]\n'
                                 '[[rule]]\ncomponent = "client"\nfiles = ["*/crash-client/src/*"]\n')
    crash = corpus_report("mac-x64-rust-inlines", sym_cache)
    # frame 0's inlined call 0 is core::ptr::write_volatile (nobody's); frame 0 itself is claimed
    result = classify(crash, rules=rules)
    assert result.component == "nar_ffi"
    assert any("claims frame 0 [context] crash-client!sadness_generator::raise_segfault" in n for n in result.notes)
    # the default rules do not know this crate: a NAR panic in the log decides
    assert classify(crash, [PANIC_NEW]).component == "nar_ffi"
