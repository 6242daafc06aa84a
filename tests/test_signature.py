"""Signature generation (triage/signature): lists, normalization, special forms, real dumps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from triage.signature import VERSION, explain, generate, load_siglists, trace
from triage.signature.normalize import normalize_function
from triage.signature.siglists import SigListError, default_siglists

from conftest import REPO, require_corpus

# -- building synthetic reports -------------------------------------------------------------


def frame(spec: Any, trust: str = "cfi") -> dict[str, Any]:
    """A report frame: "name" (symbolicated, module game), ("module", offset) without symbols,
    (None, address) without a module, or a dict used as it is."""
    if isinstance(spec, dict):
        return {"trust": trust, **spec}
    if isinstance(spec, tuple):
        module, offset = spec
        return {"trust": trust, "module": module, "function": None, "offset": hex(offset if module is None else 0x10000 + offset),
                "module_offset": None if module is None else f"0x{offset:016x}", "inlines": None}
    return {"trust": trust, "module": "game", "function": spec, "module_offset": "0x10", "inlines": None}


def report(*specs: Any, reason: str = "SIGSEGV", os: str = "Linux", crashing: int | None = 0,
           trusts: tuple[str, ...] = (), threads: list | None = None) -> dict[str, Any]:
    """A minidump-stackwalk-shaped report whose crashing thread has these frames (the first
    with trust context, then cfi unless trusts says otherwise)."""
    frames = []
    for index, spec in enumerate(specs):
        trust = trusts[index] if index < len(trusts) else ("context" if index == 0 else "cfi")
        frames.append({"frame": index, **frame(spec, trust)})
    thread = {"thread_id": 1, "frames": frames}
    threads = threads if threads is not None else [thread]
    return {
        "system_info": {"os": os, "cpu_arch": "amd64"},
        "crash_info": {"type": reason, "address": "0x0", "crashing_thread": crashing},
        "crashing_thread": None if crashing is None else {"threads_index": crashing, **thread},
        "threads": threads,
    }


def sig(*specs: Any, annotations: dict[str, str] | None = None, **kwargs: Any) -> str:
    return generate(report(*specs, **kwargs), annotations).signature


# -- every list line, each justified by a stack ---------------------------------------------

GAME = "game::World::update(float)"
RUST_PANIC = ["std::panicking::begin_panic_handler::{closure#0}",
              "std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::begin_panic_handler::{closure#0}, !>",
              "rust_begin_unwind", "core::panicking::panic_fmt", "core::result::unwrap_failed::h0123456789abcdef"]
LIST_CASES = [
    # irrelevant: Rust panics
    (["core::panicking::panic_bounds_check", GAME], "game::World::update"),
    (["std::panicking::rust_panic_with_hook", GAME], "game::World::update"),
    (["rust_panic", "__rust_start_panic", "rust_begin_unwind", GAME], "game::World::update"),
    (["panic_abort::__rust_start_panic::abort", GAME], "game::World::update"),
    (["core::option::unwrap_failed", "core::option::expect_failed", GAME], "game::World::update"),
    # rustc 1.95, panic = "abort" (tests/data/realcrash nar-*): the runtime in __rustc::
    (["abort", "std::sys::pal::unix::abort_internal", "std::process::abort", "__rustc::__rust_abort",
      "__rustc::__rust_start_panic", "__rustc::rust_panic", "std::panicking::panic_with_hook",
      "std::panicking::panic_handler::{closure#0}", "__rustc::rust_begin_unwind", "core::panicking::panic_fmt",
      "core::panicking::panic_cannot_unwind", "core::panicking::panic_nounwind_nobacktrace", "nar_generate_line"],
     "nar_generate_line"),
    (["core::option::Option<&alloc::string::String>::unwrap", "core::option::Option<T>::expect",
      "core::result::Result<u32, core::num::error::ParseIntError>::expect", "core::result::Result<T,E>::unwrap_err",
      "nar::nar_load_persona"], "nar::nar_load_persona"),
    (["<usize as core::slice::index::SliceIndex<[T]>>::index",
      "<core::ops::range::RangeTo<usize> as core::slice::index::SliceIndex<[T]>>::index_mut",
      "core::slice::index::<impl core::ops::index::Index<I> for [T]>::index",
      "<alloc::vec::Vec<T,A> as core::ops::index::IndexMut<I>>::index_mut", "nar.nar_pick_voice"],
     "nar::nar_pick_voice"),
    (["core::panicking::panic_fmt", "core::cell::panic_already_borrowed", "core::cell::panic_already_mutably_borrowed",
      "nar.nar_lookup_speaker"], "nar::nar_lookup_speaker"),
    (["std::sys::pal::unix::abort_internal", "std::process::abort", "rust_panic"] + RUST_PANIC + [GAME],
     "game::World::update"),
    (["std::rt::lang_start_internal", "std::sys_common::backtrace::__rust_begin_short_backtrace::<fn(), ()>",
      "main"], "main"),
    (["core::ptr::write_volatile::<u8>", "sadness_generator::raise_segfault"], "sadness_generator::raise_segfault"),
    # irrelevant + oom: Rust allocation failure
    (["std::alloc::rust_oom", "__rg_oom", "__rust_alloc_error_handler", "alloc::alloc::handle_alloc_error",
      "alloc::raw_vec::handle_error", GAME], "OOM | unknown | game::World::update"),
    (["alloc::alloc::handle_alloc_error::rt_error", GAME], "OOM | unknown | game::World::update"),
    # irrelevant: C and C++ abort, assert, throw (abort is also a sentinel)
    (["__pthread_kill_implementation", "__pthread_kill_internal", "__GI_raise", "__GI_abort", GAME],
     "game::World::update"),
    (["__pthread_kill", "pthread_kill", GAME], "game::World::update"),  # no abort: a watchdog's signal
    (["raise", "gsignal", GAME], "game::World::update"),
    (["__assert_fail", GAME], "game::World::update"),
    (["abort", "__assert_fail_base", "__assert_fail", GAME], "game::World::update"),
    (["__assert_rtn", GAME], "game::World::update"),
    (["_wassert", GAME], "game::World::update"),
    (["abort", "__gnu_cxx::__verbose_terminate_handler()", "__cxxabiv1::__terminate(void (*)())",
      "std::terminate()", "__cxa_rethrow", "__cxa_throw", GAME], "game::World::update"),
    (["abort", "__gnu_cxx::__verbose_terminate_handler()", "__cxxabiv1::__terminate(void (*)())",
      "__cxa_call_terminate", "__gxx_personality_v0", "_Unwind_RaiseException_Phase2", "_Unwind_RaiseException",
      "__cxa_throw", GAME], "game::World::update"),  # thrown through a noexcept function
    (["RaiseException", "_CxxThrowException", GAME], "game::World::update"),
    (["__fastfail", GAME], "game::World::update"),
    # a stripped libstdc++ names __verbose_terminate_handler and __terminate after the exports
    # before them (realcrash uncaught-throw): the std::terminate sentinel skips both
    (["__pthread_kill_implementation", "raise", "abort", "__cxa_throw_bad_array_new_length",
      "std::rethrow_exception(std::__exception_ptr::exception_ptr)", "std::terminate()", "__cxa_throw", GAME],
     "game::World::update"),
    (["__libc_message", "__fortify_fail", "__chk_fail", "overflow(char const*)"], "__chk_fail | overflow"),
    (["gsignal", "abort", "__fsetlocking", "__stack_chk_fail", GAME], "__stack_chk_fail | game::World::update"),
    (["ggml_print_backtrace", "ggml_abort(char const*, int, char const*, ...)", "llama_decode_impl"],
     "llama_decode_impl"),
    (["__chkstk", GAME], "game::World::update"),
    (["___chkstk_ms", GAME], "game::World::update"),
    # irrelevant + oom: C++ std::bad_alloc, mozalloc
    (["abort", "std::terminate()", "__cxa_throw", "std::__throw_bad_alloc()", "operator new(unsigned long)", GAME],
     "OOM | unknown | operator new | game::World::update"),
    (["_CxxThrowException", "__scrt_throw_std_bad_alloc", "operator new(unsigned __int64)", GAME],
     "OOM | unknown | operator new | game::World::update"),
    (["mozalloc_abort", "mozalloc_handle_oom", "moz_xmalloc", GAME],
     "OOM | unknown | mozalloc_abort | moz_xmalloc | game::World::update"),
    # irrelevant: waiting
    (["KiFastSystemCallRet", "NtWaitForSingleObject", "WaitForSingleObjectEx", "WaitForSingleObject", GAME],
     "game::World::update"),
    (["KiFastSystemCall", "ZwWaitForMultipleObjects", "WaitForMultipleObjectsEx", GAME], "game::World::update"),
    (["__futex_abstimed_wait_common64", "pthread_cond_wait@@GLIBC_2.3.2", GAME], "game::World::update"),
    (["pthread_cond_timedwait", GAME], "game::World::update"),
    (["__futex_abstimed_wait_common", "___pthread_cond_wait",
      "void std::condition_variable::wait<nar::Dialogue::wait_for_model()::{lambda()#1}>(std::unique_lock<std::mutex>&, "
      "nar::Dialogue::wait_for_model()::{lambda()#1})", "nar::Dialogue::wait_for_model()"],
     "nar::Dialogue::wait_for_model"),
    (["__psynch_cvwait", "_pthread_cond_wait", GAME], "game::World::update"),
    # irrelevant: code without a module, OS and C runtime modules without symbols
    ([(None, 0x3DF944), GAME], "game::World::update"),
    ([("ntdll.dll", 0x9C5E4), ("KERNELBASE.dll", 0x4B280), ("KERNEL32.DLL", 0x17034), GAME], "game::World::update"),
    ([("VCRUNTIME140.dll", 0x1476), ("ucrtbase.dll", 0x2000), GAME], "game::World::update"),
    ([("libc.so.6", 0x8AEEC), ("libpthread-2.19.so", 0x1020B), ("libc-2.13.so", 0x32475), GAME],
     "game::World::update"),
    ([("libsystem_kernel.dylib", 0x733A), ("libsystem_c.dylib", 0x7F807), ("libsystem_pthread.dylib", 0x1), GAME],
     "game::World::update"),
    # prefix: allocators
    (["_int_malloc", "__libc_malloc", "malloc", GAME], "_int_malloc | __libc_malloc | malloc | game::World::update"),
    (["_int_free", "free", GAME], "_int_free | free | game::World::update"),
    (["realloc", "calloc", GAME], "realloc | calloc | game::World::update"),
    (["je_malloc", "_free_base", "_malloc_dbg", GAME], "je_malloc | _free_base | _malloc_dbg | game::World::update"),
    (["operator new[](unsigned long)", "operator delete(void*)", GAME],
     "operator new[] | operator delete | game::World::update"),
    (["xmalloc", GAME], "xmalloc | game::World::update"),
    (["RtlpAllocateHeapInternal", "RtlAllocateHeap", "HeapAlloc", GAME],
     "RtlpAllocateHeapInternal | RtlAllocateHeap | HeapAlloc | game::World::update"),
    (["RtlFreeHeap", "HeapFree", GAME], "RtlFreeHeap | HeapFree | game::World::update"),
    (["malloc", "std::__new_allocator<char>::allocate(unsigned long, void const*)",
      "std::vector<int, std::allocator<int>>::_M_realloc_insert<int const&>(int*, int const&)",
      "std::vector<int, std::allocator<int>>::push_back(int const&)", GAME],
     "malloc | std::__new_allocator<T>::allocate | std::vector<T>::_M_realloc_insert<T> | "
     "std::vector<T>::push_back | game::World::update"),
    (["alloc::vec::Vec<T,A>::push", "game::world::spawn"], "alloc::vec::Vec<T>::push | game::world::spawn"),
    (["abort", "ggml_abort", "ggml_calloc", "ggml_new_graph_custom"],
     "OOM | unknown | ggml_calloc | ggml_new_graph_custom"),
    (["ggml_abort", "ggml_malloc", "gguf_init_from_file"], "OOM | unknown | ggml_malloc | gguf_init_from_file"),
    # prefix: memory and string functions, detectors, null calls, critical sections
    (["__memmove_avx_unaligned_erms", GAME], "memmove | game::World::update"),
    (["__strlen_evex", GAME], "strlen | game::World::update"),
    (["memset", "strlen", GAME], "memset | strlen | game::World::update"),
    (["_purecall", GAME], "_purecall | game::World::update"),
    (["google_breakpad::ExceptionHandler::HandlePureVirtualCall()", "__cxa_pure_virtual", GAME],
     "__cxa_pure_virtual | game::World::update"),
    ([(None, 0), GAME], "@0x0 | game::World::update"),
    # prefix: generic math kernels (realcrash ggml-*)
    (["ggml_vec_dot_f32", "ggml_compute_forward_mul_mat", "llama_decode_layer(int)"],
     "ggml_vec_dot_f32 | ggml_compute_forward_mul_mat | llama_decode_layer"),
    (["ggml_vec_add_f32", "ggml_compute_forward", "llama_sample_token(int)"],
     "ggml_vec_add_f32 | ggml_compute_forward | llama_sample_token"),
    (["RtlpWaitOnCriticalSection", "RtlEnterCriticalSection", GAME],
     "RtlpWaitOnCriticalSection | RtlEnterCriticalSection | game::World::update"),
]


@pytest.mark.parametrize("specs, expected", LIST_CASES, ids=[c[1][:60] + f"-{i}" for i, c in enumerate(LIST_CASES)])
def test_list_entries(specs: list, expected: str) -> None:
    assert sig(*specs, os="Windows NT" if any(".dll" in str(s) for s in specs) else "Linux") == expected


def test_every_list_line_has_a_case() -> None:
    """Each shipped list line decides at least one frame of LIST_CASES (habit: justified)."""
    used: set[str] = set()
    for specs, _ in LIST_CASES:
        traced = trace(report(*specs, os="Windows NT"))
        used |= {f.detail for f in traced.frames} | {f.sentinel for f in traced.frames}
        used |= {word for note in traced.result.notes for word in note.split() if ".txt:" in word}
    lists = default_siglists()
    every = {e.where for entries in (lists.irrelevant, lists.prefix, lists.sentinels, lists.oom) for e in entries}
    assert every - used == set()


# -- normalization --------------------------------------------------------------------------

NAMES = [
    ("std::vector<int, std::allocator<int>>::push_back(int const&)", "std::vector<T>::push_back"),
    ("std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >::_M_create(unsigned long&, "
     "unsigned long)", "std::__cxx11::basic_string<T>::_M_create"),
    ("Foo::operator()(int) const", "Foo::operator()"),
    ("Foo::operator<(Foo const&)", "Foo::operator<"),
    ("bool operator<=(Foo const&, Foo const&)", "operator<="),
    ("Foo::operator->() const", "Foo::operator->"),
    ("Foo::operator[](unsigned long)", "Foo::operator[]"),
    ("Foo::operator bool() const", "Foo::operator bool"),
    ("void * __cdecl operator new(unsigned __int64)", "operator new"),
    ("operator delete[](void*)", "operator delete[]"),
    ("std::ostream& std::operator<< <std::char_traits<char> >(std::ostream&, char const*)", "std::operator<<<T>"),
    ("main::'lambda'(int)::operator()(int) const", "main::'lambda'::operator()"),
    ("Foo::<lambda_7f3a0b1c>::operator()() const", "Foo::<lambda>::operator()"),
    ("void __cdecl `anonymous namespace'::CrashFunction(void)", "(anonymous namespace)::CrashFunction"),
    ("`anonymous namespace'::CrashFunction", "(anonymous namespace)::CrashFunction"),
    ("public: virtual void __cdecl Game::Renderer::draw(int) __ptr64", "Game::Renderer::draw"),
    ("static void * Allocator<MozJemallocBase>::malloc(unsigned __int64)", "Allocator<T>::malloc"),
    ("(anonymous namespace)::MinidumpWriter::WriteProcFile(MDLocationDescriptor*, int, char const*) "
     "[clone .constprop.119]", "(anonymous namespace)::MinidumpWriter::WriteProcFile"),
    ("process_item(item*) [clone .cold]", "process_item"),
    ("process_item.cold", "process_item"),
    ("crc32.isra.0", "crc32"),
    ("fill.constprop.0.isra.0", "fill"),
    ("core::result::unwrap_failed::h0f3c2a9e4b5d6c7a", "core::result::unwrap_failed"),
    ("game::Level::load::h0123456789abcdef", "game::Level::load"),
    ("std::rt::lang_start::<()>::{closure#0}", "std::rt::lang_start<T>::{{closure}}"),
    ("std::rt::lang_start::{{closure}}", "std::rt::lang_start::{{closure}}"),
    ("<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
     "<alloc::boxed::Box<T> as core::ops::function::FnOnce<T>>::call_once"),
    ("core::ops::function::impls::<impl core::ops::function::FnOnce<A> for &F>::call_once",
     "core::ops::function::impls::<impl core::ops::function::FnOnce<T> for &F>::call_once"),
    ("<.plt.got ELF section in crashme>", "<.plt.got ELF section in crashme>"),
    ("  game::World::update (float,\tint)  ", "game::World::update"),
    ("crash_here", "crash_here"),
    # glibc's per-CPU routines read as the routine; its fortified and internal names stay
    ("__memmove_avx512_unaligned_erms", "memmove"),
    ("__memcpy_ssse3", "memcpy"),
    ("__memset_avx2_unaligned_erms_rtm", "memset"),
    ("__memcmp_evex_movbe", "memcmp"),
    ("__strncmp_avx2_rtm", "strncmp"),
    ("__wmemset_sse2_unaligned", "wmemset"),
    ("__memcpy_chk", "__memcpy_chk"),
    # Breakpad dump_syms's dotted Rust paths
    ("nar.nar_generate_line", "nar::nar_generate_line"),
    ("std.sys.personality.gcc.rust_eh_personality", "std::sys::personality::gcc::rust_eh_personality"),
    ("_GLOBAL__sub_I_game.cpp", "_GLOBAL__sub_I_game.cpp"),
]


@pytest.mark.parametrize("name, expected", NAMES)
def test_normalize_function(name: str, expected: str) -> None:
    assert normalize_function(name) == expected


def test_frames_without_function_or_module() -> None:
    assert sig(("crashme.exe", 0xA6CD), os="Windows NT") == "crashme.exe@0xa6cd"
    assert sig(("CrashTest.exe", 0x7A9A3), os="Windows NT") == "crashtest.exe@0x7a9a3"  # Windows: lower case
    assert sig(("Electron Framework", 0xF34E4), os="Mac OS X") == "Electron Framework@0xf34e4"
    assert sig((None, 0x3DF944), os="Windows NT") == "@0x3df944"  # irrelevant, but all there is


def test_inlined_calls_are_frames_innermost_first() -> None:
    physical = {"function": "main", "module": "game", "module_offset": "0x1",
                "inlines": [{"function": "func()"}, {"function": "bar()"}, {"function": "foo()"}]}
    traced = trace(report(physical))
    assert [f.label for f in traced.frames] == ["func", "bar", "foo", "main"]
    assert traced.result.signature == "func"
    assert sig({**physical, "inlines": [{"function": "memcpy"}, {"function": "bar()"}]}) == "memcpy | bar"


# -- collapsing, scanning, sentinels, length ------------------------------------------------


def test_consecutive_frames_of_one_module_without_symbols_collapse() -> None:
    specs = [(None, 0), ("game.exe", 0x10), ("game.exe", 0x20), ("game.exe", 0x30), ("other.dll", 0x40)]
    traced = trace(report(*specs, os="Windows NT"))
    assert traced.result.signature == "@0x0 | game.exe@0x10"
    assert [f.status for f in traced.frames] == ["prefix", "kept", "collapsed", "collapsed", "not used"]
    assert traced.frames[3].detail == "frame 1"
    # symbolicated frames of the same module never collapse
    assert sig("memcpy", "memcpy", GAME) == "memcpy | memcpy | game::World::update"


def test_scanned_frames_below_a_kept_frame_are_not_used() -> None:
    traced = trace(report("crash_here", "level1", trusts=("context", "scan")))
    assert traced.result.signature == "crash_here"
    assert traced.frames[1].status == "scanned"


def test_prefix_chain_stops_at_a_scanned_frame() -> None:
    result = generate(report("memcpy", GAME, trusts=("context", "scan")))
    assert result.signature == "memcpy"
    assert any("stops at frame 1" in note for note in result.notes)


def test_scanned_frames_used_only_when_no_reliable_frame_is_relevant() -> None:
    specs = [("VCRUNTIME140D.dll", 0x20476), ("sentry_example.exe", 0x17FC), ("sentry_example.exe", 0x2054)]
    result = generate(report(*specs, os="Windows NT", trusts=("context", "scan", "scan")))
    assert result.signature == "sentry_example.exe@0x17fc"
    assert any("stack scanning" in note for note in result.notes)


def test_frames_below_a_scanned_frame_count_as_scanned() -> None:
    traced = trace(report("abort", "rust_panic", "game::a", "game::b", trusts=("context", "scan", "cfi", "cfi")))
    assert [f.scanned for f in traced.frames] == [False, True, True, True]
    assert traced.result.signature == "game::a"


def test_scanned_frames_are_never_sentinels() -> None:
    traced = trace(report(GAME, "abort", "other", trusts=("context", "scan", "scan")))
    assert traced.result.signature == "game::World::update"
    assert not traced.frames[1].sentinel


def test_sentinel_cuts_the_frames_above() -> None:
    # a stripped glibc names __pthread_kill_implementation after the export before it
    traced = trace(report("pthread_key_delete", "gsignal", "abort", "process_item", "main", reason="SIGABRT"))
    assert traced.result.signature == "process_item"
    assert [f.status for f in traced.frames][:2] == ["above sentinel", "above sentinel"]


def test_earlier_sentinel_lines_win_over_higher_frames() -> None:
    """std::terminate comes before abort in sentinels.txt: it wins although abort is higher."""
    traced = trace(report("abort", "__cxa_throw_bad_array_new_length", "std::terminate()", "__cxa_throw", GAME))
    assert traced.result.signature == "game::World::update"
    assert [f.status for f in traced.frames][:2] == ["above sentinel", "above sentinel"]
    assert traced.frames[2].sentinel.startswith("sentinels.txt:")


def test_all_irrelevant_falls_back_to_the_top_frame() -> None:
    result = generate(report(("ntdll.dll", 0x39D41), ("kernel32.dll", 0x13676), os="Windows NT"))
    assert result.signature == "ntdll.dll@0x39d41"
    assert any("every frame is irrelevant" in note for note in result.notes)
    scanned = generate(report(("ntdll.dll", 1), ("kernel32.dll", 2), os="Windows NT", trusts=("context", "scan")))
    assert scanned.signature == "ntdll.dll@0x1"
    assert not any("stack scanning" in note for note in scanned.notes)


def test_signature_is_cut_to_255_characters_at_a_frame_boundary() -> None:
    specs = [f"std::vector<int>::step_number_{i:02d}()" for i in range(20)] + [GAME]
    result = generate(report(*specs))
    kept = " | ".join(f"std::vector<T>::step_number_{i:02d}" for i in range(7))
    assert result.signature == kept + " | ..."  # 234 characters: one frame more would make 267
    assert any("truncated" in note for note in result.notes)
    long_name = "game::" + "x" * 300
    assert generate(report(long_name)).signature == ("game::" + "x" * 300)[:252] + "..."


# -- special forms --------------------------------------------------------------------------


@pytest.mark.parametrize("annotations, expected", [
    ({"oom_allocation_size": "1024"}, "OOM | small | game::World::update"),
    ({"OOMAllocationSize": "262144"}, "OOM | small | game::World::update"),
    ({"oom_allocation_size": "262145"}, "OOM | large | game::World::update"),
    ({"oom_allocation_size": "0x10000000"}, "OOM | large | game::World::update"),
    ({"oom_allocation_size": str(2**31)}, "OOM | huge | game::World::update"),
    ({"oom_allocation_size": "lots"}, "OOM | unknown | game::World::update"),
])
def test_oom_size_classes(annotations: dict[str, str], expected: str) -> None:
    assert sig("malloc", GAME, annotations=annotations).replace("malloc | ", "") == expected


def test_oom_from_crash_reason_and_from_dump_annotations() -> None:
    assert sig(GAME, reason="STATUS_NO_MEMORY", os="Windows NT") == "OOM | unknown | game::World::update"
    with_dump_annotation = {**report(GAME), "annotations": {"oom_allocation_size": "64"}}
    assert generate(with_dump_annotation).signature == "OOM | small | game::World::update"
    assert generate(with_dump_annotation, {"oom_allocation_size": str(2**30)}).signature.startswith("OOM | huge")


def test_stack_overflow_from_exception_code() -> None:
    assert sig(("crashme.exe", 0xA637), *[("crashme.exe", 0xA6A6)] * 5, reason="EXCEPTION_STACK_OVERFLOW",
               os="Windows NT") == "stackoverflow | crashme.exe@0xa637"
    assert sig("__chkstk", GAME, reason="EXCEPTION_STACK_OVERFLOW") == "stackoverflow | game::World::update"


@pytest.mark.parametrize("specs, reason, expected", [
    (["game::Grid::fill(int, int)"] * 150, "SIGSEGV / SEGV_MAPERR", "stackoverflow | game::Grid::fill"),
    (["game::Tree::visit", "game::Node::accept"] * 60, "EXC_BAD_ACCESS / KERN_PROTECTION_FAILURE",
     "stackoverflow | game::Tree::visit"),
    (["game::Grid::fill(int, int)"] * 60, "SIGSEGV", "game::Grid::fill"),  # not deep enough
    (["abort"] + ["game::Grid::fill(int, int)"] * 150, "SIGABRT", "game::Grid::fill"),  # not a fault
])
def test_stack_overflow_from_deep_recursion(specs: list[str], reason: str, expected: str) -> None:
    assert sig(*specs, reason=reason) == expected


@pytest.mark.parametrize("address, sp, reason, expected", [
    # tests/data/realcrash's walk_quest_tree overflow: Crashpad saved the signal stack, one frame
    ("0x7ffd89e68f58", "0x7ffd89e68f60", "SIGSEGV / SEGV_MAPERR", "stackoverflow | game::walk_quest_tree"),
    ("0x7f447f21dff3", "0x7f447f21df20", "SIGSEGV / SEGV_ACCERR", "stackoverflow | game::walk_quest_tree"),
    ("0x7ffd89e58f60", "0x7ffd89e68f60", "SIGSEGV / SEGV_MAPERR", "stackoverflow | game::walk_quest_tree"),  # 64 KiB
    ("0x7ffd89e58f58", "0x7ffd89e68f60", "SIGSEGV / SEGV_MAPERR", "game::walk_quest_tree"),  # further below
    ("0x20", "0x7ffd89e68f60", "SIGSEGV / SEGV_MAPERR", "game::walk_quest_tree"),  # a null dereference
    ("0x10", "0x7000", "SIGSEGV / SEGV_MAPERR", "game::walk_quest_tree"),  # ... with a tiny stack pointer
    ("0x7ffd89e68f58", "0x7ffd89e68f60", "SIGABRT", "game::walk_quest_tree"),  # not a fault
    ("0x7ffd89e69060", "0x7ffd89e68f60", "SIGSEGV / SEGV_ACCERR", "game::walk_quest_tree"),  # executing the stack
])
def test_stack_overflow_from_a_fault_at_the_stack_pointer(address: str, sp: str, reason: str, expected: str) -> None:
    overflowed = report("game::walk_quest_tree(Quest const*)", "main", reason=reason)
    overflowed["crash_info"]["address"] = address
    ip = address if address == "0x7ffd89e69060" else "0x401000"
    overflowed["crashing_thread"]["frames"][0]["registers"] = {"rip": ip, "rsp": sp}
    assert generate(overflowed).signature == expected


def test_hang_uses_the_main_thread() -> None:
    main = {"thread_id": 1, "frames": [frame("NtWaitForSingleObject", "context"), frame("WaitForSingleObjectEx"),
                                       frame("game::Loader::wait()")]}
    watchdog = {"thread_id": 2, "frames": [frame("game::Watchdog::run()", "context")]}
    doc = report("game::Watchdog::run()", threads=[main, watchdog], crashing=1)
    assert generate(doc, {"hang": "1"}).signature == "hang | game::Loader::wait"
    assert generate(doc, {"HangReason": "main thread stuck 10s"}).signature == "hang | game::Loader::wait"
    assert generate(doc, {"hang": "0"}).signature == "game::Watchdog::run"
    linux = report("__futex_abstimed_wait_common", "pthread_cond_wait", "game::Jobs::join()", crashing=None)
    assert generate(linux, {"hang_reason": "frame took 30 s"}).signature == "hang | game::Jobs::join"


def hang_threads() -> dict[str, Any]:
    """A watchdog's hang dump (tests/data/hangs/hangwatch.cpp): the main thread sleeping in its
    loop, the NAR worker stuck on a condition variable, the watchdog that wrote the dump."""
    main = {"thread_id": 17581, "thread_name": "hangwatch",
            "frames": [frame("__clock_nanosleep", "context"), frame("game::run_frame()")]}
    nar = {"thread_id": 17582, "thread_name": "NAR worker",
           "frames": [frame("__futex_abstimed_wait_common", "context"), frame("___pthread_cond_wait"),
                      frame("std::condition_variable::wait(std::unique_lock<std::mutex>&)"),
                      frame("nar::Dialogue::wait_for_model()"), frame("nar::worker(nar::Dialogue*)")]}
    pool = {"thread_id": 17584, "thread_name": "asset streamer ",  # 15 characters: cut by Linux
            "frames": [frame("game::Assets::stream()", "context")]}
    watchdog = {"thread_id": 17583, "thread_name": "watchdog", "frames": [frame("dump_without_crash", "context")]}
    doc = report("dump_without_crash", threads=[main, nar, watchdog, pool], crashing=2)
    doc["crash_info"]["type"] = "DUMP_REQUESTED"
    return doc


@pytest.mark.parametrize("hang_thread, expected", [
    ("NAR worker", "hang | nar::Dialogue::wait_for_model"),
    ("nar WORKER", "hang | nar::Dialogue::wait_for_model"),  # case ignored when no exact match
    ("17582", "hang | nar::Dialogue::wait_for_model"),  # the thread id, decimal
    ("0x44ae", "hang | nar::Dialogue::wait_for_model"),  # ... or hex
    ("asset streamer worker", "hang | game::Assets::stream"),  # Linux kept 15 characters of it
    ("watchdog", "hang | dump_without_crash"),
    ("render", "hang | __clock_nanosleep"),  # no such thread: thread 0
    ("", "hang | __clock_nanosleep"),
])
def test_hang_uses_the_thread_hang_thread_names(hang_thread: str, expected: str) -> None:
    result = generate(hang_threads(), {"hang": "1", "hang_thread": hang_thread})
    assert result.signature == expected
    assert result.notes[0].startswith("hang: ")
    if hang_thread == "render":
        assert result.notes[0] == "hang: no thread matches hang_thread='render': using thread 0 (the main thread)"


def test_hang_thread_from_the_dump_and_its_trace() -> None:
    """The dump's own annotations name the thread (Crashpad's --annotation); explain prints
    that thread's frames."""
    doc = hang_threads()
    doc["annotations"] = {"hang": "1", "hang_thread": "NAR worker"}
    traced = trace(doc)
    assert traced.result.signature == "hang | nar::Dialogue::wait_for_model"
    assert traced.thread_index == 1
    assert "frames of thread 1" in explain(doc)
    assert generate(doc, {"hang": "0"}).signature == "dump_without_crash"  # not a hang: the crashing thread


def test_empty_signatures_say_why() -> None:
    no_thread = generate(report(GAME, crashing=None))
    assert no_thread.signature == "EMPTY: no crashing thread identified"
    assert no_thread.notes
    assert generate(report()).signature == "EMPTY: no frame data available"
    assert generate({}).signature == "EMPTY: no crashing thread identified"
    assert generate(report(threads=[]), {"hang": "1"}).signature == "hang | EMPTY: no frame data available"
    assert generate(report(crashing=None), {"oom_allocation_size": "9"}).signature == \
        "OOM | small | EMPTY: no crashing thread identified"


# -- result, lists, explain -----------------------------------------------------------------


def test_result_carries_the_version() -> None:
    result = generate(report(GAME))
    assert result.version == VERSION == "crashd-sig-2"
    assert result.notes == []


def test_custom_lists(tmp_path: Path) -> None:
    (tmp_path / "irrelevant.txt").write_text("# mine\ngame::log::.*\n")
    (tmp_path / "prefix.txt").write_text("game::assert_failed\n")
    lists = load_siglists(tmp_path)
    assert lists.sentinels == () and lists.oom == ()
    doc = report("game::log::write", "game::assert_failed", "abort", GAME)
    assert generate(doc, lists=lists).signature == "game::assert_failed | abort"
    assert generate(doc).signature == "game::World::update"


def test_bad_list_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "prefix.txt").write_text("# header\nok\nbroken(\n")
    with pytest.raises(SigListError, match=r"prefix\.txt:3"):
        load_siglists(tmp_path)


def test_every_shipped_list_has_a_header() -> None:
    for path in (Path(__file__).parent.parent / "triage/signature/siglists").glob("*.txt"):
        header = path.read_text().split("\n\n")[0]
        assert "fullmatch" in header and "How to edit" in header, path.name


def test_explain_shows_each_frame() -> None:
    text = explain(report("gsignal", "abort", "__chk_fail", "overflow(char const*)", "main", ("libc.so.6", 1),
                          ("libc.so.6", 2), "x", trusts=("context", "cfi", "cfi", "cfi", "cfi", "cfi", "cfi", "scan")))
    assert text.splitlines()[0] == "signature: __chk_fail | overflow"
    for status in ("above sentinel", "sentinel (sentinels.txt:", "irrelevant  [irrelevant.txt:", "prefix  [prefix.txt:",
                   "kept", "not used", "collapsed  [frame 5]", "scanned"):
        assert status in text, status


# -- the real corpus ------------------------------------------------------------------------

CORPUS_SIGNATURES = {
    "ios-x64-breakpad-crashpad-annotation": "ios_crash_xcuitests@0x6bc34",
    "linux-x64-breakpad-divide-by-zero": "driver@0x1f27",
    "linux-x64-breakpad-inline": "func",
    "linux-x64-breakpad-null-read-av": "crash",
    "linux-x64-breakpad-overflow": "__chk_fail | overflow",
    "linux-x64-breakpad-raise-sigabrt": "driver@0x1f05",
    "linux-x64-electron": "electron@0x30785f0",
    "linux-x64-generated-crashpad-abort-O2": "process_item",
    "linux-x64-generated-crashpad-segv-O0": "crash_here",
    "linux-x64-rust-linux-mini": "main",
    "linux-x64-symbolic-crash-linux": "(anonymous namespace)::crash",
    "linux-x64-symbolic-mini": "main",
    "mac-x64-electron": "Electron Framework@0xf34e4",
    "mac-x64-rust-inlines": "sadness_generator::raise_segfault",
    "mac-x64-rust-simple-crashpad": "crashy@0x3f8a",
    "mac-x64-symbolic-crash-macos": "(anonymous namespace)::crash",
    "mac-x64-symbolic-mini": "main",
    "malformed-rust-invalid-range": "EMPTY: no crashing thread identified",
    "malformed-rust-invalid-record-count": "EMPTY: no crashing thread identified",
    "win-x64-breakpad-cet-xsave": "EMPTY: no crashing thread identified",
    "win-x64-breakpad-fastfail": "tiny.exe@0x1af42",
    "win-x64-breakpad-write-av-non-canonical": "crash.exe@0x1331",
    "win-x64-electron": "electron.exe@0xe8da4",
    "win-x64-rust-invalid-parameter": "crashtest.exe@0x7a9a3",
    "win-x64-sentry-native": "sentry_example.exe@0x17fc",
    "win-x86-breakpad-32bit-crash-addr": "(anonymous namespace)::CrashFunction",
    "win-x86-breakpad-cet-xsave": "EMPTY: no crashing thread identified",
    "win-x86-breakpad-exec-av-on-stack": "@0x3df944",
    "win-x86-breakpad-minidump2": "(anonymous namespace)::CrashFunction",
    "win-x86-breakpad-null-read-av": "crashme.exe@0xa6cd",
    "win-x86-breakpad-stack-exhaustion": "stackoverflow | crashme.exe@0xa637",
    "win-x86-breakpad-thread-name-list": "allocer32.exe@0x15fd",
    "win-x86-symbolic-mini": "main",
}


@pytest.mark.parametrize("case, expected", sorted(CORPUS_SIGNATURES.items()))
def test_corpus_signatures(case: str, expected: str, tmp_path: Path) -> None:
    from symbolicator.process import local_provider, process_minidump

    folder = require_corpus() / case
    dump = next(folder.glob("*.dmp"))
    doc = process_minidump(dump.read_bytes(), local_provider([folder / "symbols"], tmp_path))
    result = generate(json.loads(json.dumps(doc)))  # exactly what the JSON report holds
    assert result.signature == expected, explain(doc)
    assert result.version == VERSION


def test_corpus_has_no_case_without_an_expected_signature() -> None:
    cases = {p.parent.name for p in require_corpus().glob("*/*.dmp")}
    assert cases == set(CORPUS_SIGNATURES)


def test_cli_signature(tmp_path: Path) -> None:
    """`crashd signature DUMP --symbols DIR [--json]` on a real dump."""
    case = require_corpus() / "linux-x64-generated-crashpad-abort-O2"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "server.cli", "signature", str(next(case.glob("*.dmp"))),
                               "--symbols", str(case / "symbols"), *extra], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env={**base, "CRASHD_DATA_DIR": str(tmp_path)})

    human, as_json = run(), run("--json")
    assert human.returncode == 0 and as_json.returncode == 0, human.stderr + as_json.stderr
    assert human.stdout.startswith(f"signature: process_item\nversion:   {VERSION}\n")
    assert "above sentinel" in human.stdout
    result = json.loads(as_json.stdout)
    assert (result["signature"], result["version"]) == ("process_item", VERSION)
    assert [note.split(" (")[0] for note in result["notes"]] == ["sentinel 'abort'"]
