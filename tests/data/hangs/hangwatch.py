"""Build hangwatch.cpp, run it under the real Crashpad handler, and make its Breakpad symbols.

    .venv/bin/python tests/data/hangs/hangwatch.py --work DIR [--limit 1.0]

builds ``DIR/hangwatch``, runs it (its NAR worker hangs; the watchdog has the handler write a
dump without crashing into ``DIR/crashpad-db/pending/``: uploads need the database's
settings.dat, which tests/test_hangs.py writes), writes the symbols of the program, libc and libstdc++ under ``DIR/symbols``
(Breakpad layout), and prints where the dump is. tests/test_hangs.py uses the same functions:
``build(work) -> Path``, ``run(binary, handler_args, log, limit) -> int``, ``symbols(binary,
symbols_dir)``. Symbols come from tests/data/realcrash/make.py's ``dump_syms`` (imported, not
copied).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "hangwatch.cpp"
sys.path.insert(0, str(HERE.parent / "realcrash"))
import make  # noqa: E402 - tests/data/realcrash/make.py: HANDLER, dump_syms, system_library

HANDLER = make.HANDLER
# -O0 with frame pointers, -g: nar::Dialogue::wait_for_model and the predicate wait<...> stay
# frames of their own, as in a debug build of a game.
FLAGS = ["-O0", "-g", "-fno-omit-frame-pointer", "-std=c++17", "-pthread"]
# The hung thread sits in libc (futex wait) under libstdc++: their CFI unwinds out of them.
SYSTEM_LIBRARIES = ("libc.so.6", "libstdc++.so.6")
RUN_TIMEOUT = 60.0  # seconds: the limit, the dump and the upload (about 1.1 s with a 1 s limit)


def build(work: Path) -> Path:
    """g++ hangwatch.cpp into work/hangwatch; returns the binary. Raises RuntimeError with
    the compiler's output when it fails."""
    gxx = shutil.which("g++")
    if gxx is None:
        raise RuntimeError("g++ not found on PATH (apt-get install g++)")
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "hangwatch"
    # Relative source path: the debug info names hangwatch.cpp, not the build machine's path.
    done = subprocess.run([gxx, *FLAGS, "-o", str(binary), SOURCE.name], cwd=HERE, capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"g++ could not build {SOURCE}:\n{done.stderr}")
    return binary


def loopback_env() -> dict[str, str]:
    """The environment without proxies (libcurl in the handler honours them) and no_proxy=*."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["no_proxy"] = env["NO_PROXY"] = "*"
    return env


def run(binary: Path, handler_args: list[str], log: Path, limit: float = 1.0) -> int:
    """Run ``binary HANDLER limit *handler_args`` in a session of its own, output to log.
    Returns its exit code (0: it did not crash). Raises TimeoutError (after killing the whole
    session) when it is still running after RUN_TIMEOUT."""
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), str(HANDLER), str(limit), *handler_args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=loopback_env(), start_new_session=True)
        try:
            return proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet: the group is ours
            proc.wait(timeout=10)
    raise TimeoutError(f"hangwatch still running after {RUN_TIMEOUT:.0f}s:\n{log.read_text(errors='replace')}")


def symbols(binary: Path, symbols_dir: Path) -> list[Path]:
    """Breakpad symbols of binary, libc and libstdc++ in symbols_dir; returns the .sym paths."""
    return [make.dump_syms(b, symbols_dir)
            for b in [binary, *(make.system_library(n) for n in SYSTEM_LIBRARIES)]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="build folder: binary, database, symbols")
    parser.add_argument("--limit", type=float, default=1.0, help="seconds without a heartbeat (default 1)")
    args = parser.parse_args(argv)
    binary = build(args.work)
    database = args.work / "crashpad-db"
    database.mkdir(exist_ok=True)
    handler_args = [f"--database={database}", "--annotation=prod=hangwatch", "--annotation=ver=1.0.0"]
    code = run(binary, handler_args, args.work / "hangwatch.log", args.limit)
    symbols(binary, args.work / "symbols")
    print((args.work / "hangwatch.log").read_text(errors="replace"), end="")
    print(f"exit {code}; dumps: {sorted(str(p) for p in database.rglob('*.dmp'))}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
