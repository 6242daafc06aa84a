"""Stack walking speed: crashd's warm worker against rust-minidump and Breakpad, per corpus dump.

Run from the repository root (after bench/install-tools.sh)::

    .venv/bin/python bench/stackwalk.py                  # all targets, every corpus dump
    .venv/bin/python bench/stackwalk.py --targets rust,breakpad --repeat 3

Targets, on the same dumps and the same ``<case>/symbols`` folders:

- ``crashd`` (warm worker): one process, one symbol provider over every case's symbols folder
  kept across dumps, as a worker keeps its provider; caches in a fresh temporary folder. A
  first pass over all dumps builds the caches (reported as "cold"), then ``--repeat-warm``
  passes are timed. Each call reads the dump file, walks and symbolicates every thread and
  serializes the JSON report (rust's --json does the same work). The API is called in
  ``make_crashd_walker``, the one place to change if it moves. If it cannot be imported, the
  bench times ``crashd stackwalk <dump> --symbols <dir> --json`` as a process instead (cold).
- ``rust``: ``minidump-stackwalk --json <dump> <symbols>`` (rust-minidump 0.25.0),
- ``breakpad``: ``minidump_stackwalk -m <dump> <symbols>`` (npm minidump@0.26.0), both one
  process per dump as Socorro runs them, ``--repeat`` times; stdout is read, not parsed.

Numbers are medians in milliseconds; ``crashd/rust`` is crashd's warm median (or the CLI
fallback's) over rust's.
A "*" marks a run that exited non-zero (the malformed dumps make both tools exit 1). No dump's
symbols are borrowed from another case's folder (no module of one case has its symbol file
only in another case), so the shared provider sees the same symbols the tools do.

Then the symbol cache (symbolicator/symbols/cache/) on the corpus's largest .sym: time to
build the caches into an empty folder, to open the built caches, and symbolize / cfi_rules
lookups per second at random offsets inside the file's FUNC and STACK CFI INIT ranges.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from accuracy import REPO, Case, corpus_dir, load_cases, machine_summary

from tools import ToolMissing, breakpad_stackwalk, rust_stackwalk

TARGETS = ("crashd", "rust", "breakpad")
LOOKUP_SECONDS = 2.0
Walk = Callable[[Case], None]


# ---- crashd's Python API: the one place that knows it (what `crashd stackwalk` calls) ----
def make_crashd_walker(symbol_dirs: list[Path], cache_dir: Path) -> Walk:
    """A warm worker: one provider for all dumps; each call reads, walks, serializes a dump."""
    from symbolicator.process import local_provider, process_minidump

    provider = local_provider(symbol_dirs, cache_dir)

    def walk(case: Case) -> None:
        json.dumps(process_minidump(case.dump.read_bytes(), provider), separators=(",", ":"))
    return walk


def build_symcache(sym: Path, cache_root: Path) -> Any:
    """Convert one .sym into crashd's caches (SymCache + index); returns its CacheInfo."""
    from symbolicator.symbols.cache import build_caches

    return build_caches(sym, cache_root)


def open_symcache(sym: Path, cache_root: Path, debug_file: str, debug_id: str) -> Any:
    """The built caches of one module, with symbolize(offset) and cfi_rules(offset)."""
    from symbolicator.symbols.cache import open_caches

    return open_caches(sym, cache_root, debug_file, debug_id)


# ---- end of crashd's API ----


@dataclass
class Timings:
    """Seconds per dump id for one target, runs that exited non-zero, and errors."""

    label: str
    runs: dict[str, list[float]] = field(default_factory=dict)
    nonzero: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)

    def median_ms(self, case_id: str) -> float | None:
        runs = self.runs.get(case_id)
        return 1000 * statistics.median(runs) if runs else None


def run_process(command: list[str]) -> tuple[float, int]:
    """Wall time of one process run (stdout read to the end) and its exit status."""
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, done.returncode


def time_tool(label: str, command: Callable[[Case], list[str]], cases: list[Case], repeat: int) -> Timings:
    """Run a walker once per dump as a process, ``repeat`` rounds over all dumps."""
    timings = Timings(label)
    for _ in range(repeat):
        for case in cases:
            seconds, status = run_process(command(case))
            timings.runs.setdefault(case.id, []).append(seconds)
            if status != 0:
                timings.nonzero.add(case.id)
    return timings


def time_calls(timings: Timings, walk: Walk, cases: list[Case], rounds: int) -> None:
    """Call walk on every dump, ``rounds`` times; an exception stops that dump's timing."""
    for _ in range(rounds):
        for case in cases:
            if case.id in timings.errors:
                continue
            start = time.perf_counter()
            try:
                walk(case)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other dumps
                timings.errors[case.id] = f"{type(exc).__name__}: {exc}"[:100]
                continue
            timings.runs.setdefault(case.id, []).append(time.perf_counter() - start)


def time_crashd(cases: list[Case], repeat_warm: int, crashd_cli: Path, cache_dir: Path) -> list[Timings]:
    """[warm, cold] timings through the Python API, or [cli] when the API is not importable."""
    symbol_dirs = sorted({case.symbols for case in cases if case.symbols.is_dir()})
    try:
        walk = make_crashd_walker(symbol_dirs, cache_dir)
    except Exception as exc:  # noqa: BLE001 - any import-time failure: fall back to the CLI
        print(f"crashd API unavailable ({type(exc).__name__}: {exc}); timing the CLI", file=sys.stderr)
        command = lambda case: [str(crashd_cli), "stackwalk", str(case.dump),  # noqa: E731
                                "--symbols", str(case.symbols), "--json"]
        return [time_tool("crashd CLI (process, cold)", command, cases, repeat_warm)]
    cold, warm = Timings("crashd cold"), Timings("crashd warm")
    time_calls(cold, walk, cases, 1)
    warm.errors.update(cold.errors)
    time_calls(warm, walk, cases, repeat_warm)
    return [warm, cold]


def process_floor_ms(command: list[str], repeat: int) -> float:
    """Median time of a process that starts and exits at once (the per-dump start-up cost)."""
    return 1000 * statistics.median(run_process(command)[0] for _ in range(max(repeat, 3)))


def fmt(timings: Timings, case_id: str) -> str:
    """A median in ms, '*' when a run exited non-zero, or the error."""
    if case_id in timings.errors:
        return f"error: {timings.errors[case_id]}".replace("|", "\\|")
    value = timings.median_ms(case_id)
    if value is None:
        return "-"
    return (f"{value:.2f}" if value < 10 else f"{value:.1f}") + ("*" if case_id in timings.nonzero else "")


def render(cases: list[Case], columns: list[Timings], warm: Timings | None, rust: Timings | None) -> str:
    """Per-dump medians, crashd/rust, and the totals over dumps every target timed."""
    ratio_col = warm is not None and rust is not None
    head = ["dump"] + [t.label + " ms" for t in columns] + (["crashd/rust"] if ratio_col else [])
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for case in cases:
        row = [case.id] + [fmt(t, case.id) for t in columns]
        if ratio_col:
            ours, theirs = warm.median_ms(case.id), rust.median_ms(case.id)
            row.append(f"{ours / theirs:.2f}" if ours is not None and theirs else "-")
        lines.append("| " + " | ".join(row) + " |")
    complete = [c.id for c in cases if all(t.median_ms(c.id) is not None for t in columns)]
    sums = [sum(t.median_ms(i) or 0.0 for i in complete) for t in columns]
    total = ["**total**"] + [f"**{s:.1f}**" for s in sums]
    if ratio_col:
        total.append(f"**{sums[columns.index(warm)] / sums[columns.index(rust)]:.2f}**")
    lines.append("| " + " | ".join(total) + " |")
    lines.append(f"\nTotals are sums of per-dump medians over the {len(complete)} of {len(cases)} "
                 "dumps that every target timed.")
    return "\n".join(lines)


def parse_sym_ranges(path: Path) -> tuple[str, str, list[int], list[int]]:
    """(code file name, debug id, FUNC offsets, STACK CFI offsets) of a Breakpad .sym; offsets
    are random points inside each FUNC / CFI INIT range (at most one per record)."""
    rng = random.Random(1234)
    funcs, cfi, name, debug_id = [], [], path.stem, ""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.split(None, 6)
            if parts[:1] == ["MODULE"] and len(parts) >= 5:
                debug_id, name = parts[3], line.split(None, 4)[4].strip()
            elif parts[:1] == ["FUNC"]:
                fields = parts[2:4] if parts[1] == "m" else parts[1:3]
                start, size = int(fields[0], 16), int(fields[1], 16)
                funcs.append(start + rng.randrange(max(size, 1)))
            elif parts[:3] == ["STACK", "CFI", "INIT"]:
                start, size = int(parts[3], 16), int(parts[4], 16)
                cfi.append(start + rng.randrange(max(size, 1)))
    return name, debug_id, funcs, cfi


def lookups_per_second(lookup: Callable[[int], object], offsets: list[int]) -> float:
    """Calls of lookup(offset) per second, cycling through shuffled offsets for LOOKUP_SECONDS."""
    order = offsets[:]
    random.Random(99).shuffle(order)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < LOOKUP_SECONDS:
        for offset in order[:1000]:
            lookup(offset)
        calls += min(len(order), 1000)
        order = order[1000:] + order[:1000]
    return calls / (time.perf_counter() - start)


def measure_symcache(sym: Path, builds: int = 3) -> str:
    """SymCache build time (median of ``builds`` into empty folders), open time of the built
    caches, and symbolize / cfi_rules lookups per second on one .sym."""
    debug_file, debug_id = sym.parent.parent.name, sym.parent.name  # <debug_file>/<ID>/<x>.sym
    _, _, funcs, cfi = parse_sym_ranges(sym)
    build_times, open_times = [], []
    with tempfile.TemporaryDirectory(prefix="crashd-symcache-") as scratch:
        for attempt in range(builds):
            root = Path(scratch) / str(attempt)
            start = time.perf_counter()
            info = build_symcache(sym, root)
            build_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            module = open_symcache(sym, root, debug_file, debug_id)
            open_times.append(time.perf_counter() - start)
        rate_sym = lookups_per_second(module.symbolize, funcs) if funcs else 0.0
        rate_cfi = lookups_per_second(module.cfi_rules, cfi) if cfi else 0.0
    cache_kb = (info.symcache_bytes + info.index_bytes) / 1e3
    return (f"{sym.name} ({sym.stat().st_size / 1e6:.1f} MB, {len(funcs)} FUNC, {len(cfi)} STACK CFI "
            f"INIT): build {1000 * statistics.median(build_times):.0f} ms (median of {builds}; "
            f"caches {cache_kb:.0f} KB), open {1000 * statistics.median(open_times):.1f} ms; "
            f"symbolize {rate_sym:,.0f}/s"
            + (f", cfi_rules {rate_cfi:,.0f}/s" if cfi else ", no STACK CFI to look up"))


def largest_sym(cases: list[Case]) -> Path | None:
    """The biggest .sym file under any case's symbols folder."""
    syms = [p for case in cases for p in case.symbols.glob("*/*/*.sym")]
    return max(syms, key=lambda p: (p.stat().st_size, str(p)), default=None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma list of crashd,rust,breakpad")
    parser.add_argument("--repeat", type=int, default=5, help="process runs per dump (rust, breakpad)")
    parser.add_argument("--repeat-warm", type=int, default=10, help="timed warm calls per dump (crashd)")
    parser.add_argument("--corpus", type=Path, default=None, help="default: $CRASHD_CORPUS or ../shared/corpus")
    parser.add_argument("--case", default=None, help="only cases whose id contains this")
    parser.add_argument("--crashd", type=Path, default=REPO / ".venv" / "bin" / "crashd")
    parser.add_argument("--no-symcache", action="store_true", help="skip the symbol cache measurement")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Time every target on every dump, print the tables; exit 2 when nothing could run."""
    args = parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    cases = load_cases(args.corpus or corpus_dir(), args.case)
    columns: list[Timings] = []
    warm = rust = None
    floors = []
    with tempfile.TemporaryDirectory(prefix="crashd-bench-cache-") as cache_dir:
        if "crashd" in targets:
            columns += time_crashd(cases, args.repeat_warm, args.crashd, Path(cache_dir))
            warm = columns[0]  # "crashd warm", or the CLI fallback's column
        for label, find, argv_of in (
            ("rust", rust_stackwalk, lambda b, c: [b, "--json", str(c.dump), str(c.symbols)]),
            ("breakpad", breakpad_stackwalk, lambda b, c: [b, "-m", str(c.dump), str(c.symbols)]),
        ):
            if label not in targets:
                continue
            try:
                binary = str(find())
            except ToolMissing as exc:
                print(exc, file=sys.stderr)
                continue
            columns.append(time_tool(label, lambda c, b=binary, f=argv_of: f(b, c), cases, args.repeat))
            rust = columns[-1] if label == "rust" else rust
            floor_cmd = [binary, "--version"] if label == "rust" else [binary]
            floors.append(f"{label} {process_floor_ms(floor_cmd, args.repeat):.1f} ms")
    if not columns:
        return 2
    print(f"Machine: {machine_summary()}\n")
    print(render(cases, columns, warm, rust))
    if floors:
        print("\nProcess start-up floor (binary started with no dump): " + ", ".join(floors))
    if "crashd" in targets and not args.no_symcache and (sym := largest_sym(cases)):
        try:
            print("\nSymbol cache: " + measure_symcache(sym))
        except Exception as exc:  # noqa: BLE001 - cache.py is young: report, do not fail the bench
            print(f"\nSymbol cache: not measured ({type(exc).__name__}: {exc})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
