"""Stack accuracy: crashd's crashing-thread stack against the corpus references, frame by frame.

Run from the repository root::

    .venv/bin/python bench/accuracy.py                      # crashd stackwalk on every case
    .venv/bin/python bench/accuracy.py --write docs/accuracy.md
    .venv/bin/python bench/accuracy.py --subject rust-oracle # harness self-check (~all match)
    .venv/bin/python bench/accuracy.py --subject rust        # run rust-minidump live

The corpus is ``$CRASHD_CORPUS`` (default ``../shared/corpus``); how to compare is its README.
Each case's dump is walked with ``crashd stackwalk <dump> --symbols <case>/symbols --json``
(rust-minidump's ``--json`` schema) and the crashing thread (thread 0 when the dump records no
crash) is compared with the case's reference:

- committed oracle (``oracle_kind`` "committed ..."): expected.json ``frames``, except
  ``linux-x64-rust-linux-mini``, whose committed snapshot was made without symbols: there the
  reference is rust-minidump's run with symbols (oracle-raw/tool-rust-minidump-stackwalk.json);
- otherwise rust-minidump's run, cut to the leading frames where Breakpad and rust-minidump
  agree (``rust_agrees`` in expected.json ``frames``). Past the first disagreement the walkers
  are guessing (scanned frames), so nothing there is scored.

A frame matches when module, function, file base name, line and trust are all equal (None ==
None); offsets are never compared. Inlined calls count as frames of their own (trust
``inline``, innermost first, before their physical frame): the ``inlines`` of a --json frame
are expanded that way before comparing. The headline is the longest matching prefix: once a
frame differs the rest of the walk has diverged (or shifted by an inlined entry), so later
positional matches are shown but not relied on. Cases without reference frames (a malformed
dump, or no stack in expected.json) are not scored; a malformed dump passes when the subject
exits without a traceback (or panic, or signal).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tools import ToolMissing, rust_stackwalk

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
RUST_ORACLE = "oracle-raw/tool-rust-minidump-stackwalk.json"
# Committed snapshot produced without symbols: score against rust-minidump with symbols instead.
RUST_WITH_SYMBOLS_CASES = frozenset({"linux-x64-rust-linux-mini"})
TIMEOUT_SECONDS = 300
# module, function, file base name, line, trust
FrameKey = tuple[str | None, str | None, str | None, int | None, str | None]
FIELDS = ("module", "function", "file", "line", "trust")


@dataclass(frozen=True)
class Case:
    """One corpus folder: its dump, symbols directory and expected.json."""

    id: str
    folder: Path
    expected: dict[str, Any]

    @property
    def dump(self) -> Path:
        return self.folder / self.expected["dump"]

    @property
    def symbols(self) -> Path:
        return self.folder / "symbols"

    @property
    def malformed(self) -> bool:
        return str(self.expected.get("oracle_kind", "")).startswith("robustness")


@dataclass
class Outcome:
    """What a subject produced for one dump: its --json document (None if it made none)."""

    doc: dict[str, Any] | None
    crashed: bool = False  # a Python traceback, a Rust panic, a signal or a timeout
    error: str = ""


@dataclass
class Score:
    """One case's result. ``expected`` is None for cases that are not scored."""

    case: str
    reference: str
    expected: int | None
    prefix: int = 0
    positions: int = 0
    first_mismatch: str = ""


def corpus_dir() -> Path:
    """The corpus folder: ``$CRASHD_CORPUS`` or ../shared/corpus next to the repository."""
    return Path(os.environ.get("CRASHD_CORPUS") or DEFAULT_CORPUS)


def load_cases(corpus: Path, only: str | None = None) -> list[Case]:
    """Every case of the corpus (folders with an expected.json), sorted by id."""
    cases = []
    for path in sorted(corpus.glob("*/expected.json")):
        if only and only not in path.parent.name:
            continue
        cases.append(Case(path.parent.name, path.parent, json.loads(path.read_text())))
    return cases


def basename(path: str | None) -> str | None:
    """The file name without its directories, for '/' and '\\' paths alike."""
    return None if path is None else re.split(r"[\\/]", path)[-1]


def frame_key(frame: dict[str, Any], trust: str | None = None) -> FrameKey:
    """What is compared of a frame (a --json frame, an inline entry or an expected.json frame)."""
    return (frame.get("module"), frame.get("function"), basename(frame.get("file")),
            frame.get("line"), trust if trust is not None else frame.get("trust"))


def expand_frames(frames: list[dict[str, Any]]) -> list[FrameKey]:
    """--json frames as compared: each frame's ``inlines`` (innermost first, trust ``inline``,
    the physical frame's module), then the physical frame itself."""
    keys: list[FrameKey] = []
    for frame in frames:
        for inline in frame.get("inlines") or []:
            keys.append(frame_key({**inline, "module": frame.get("module")}, trust="inline"))
        keys.append(frame_key(frame))
    return keys


def stack_frames(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The crashing thread's --json frames, or thread 0's when the dump records no crash."""
    thread = doc.get("crashing_thread")
    if thread is None and doc.get("threads"):
        thread = doc["threads"][0]
    return list((thread or {}).get("frames") or [])


def load_rust_oracle(case: Case) -> dict[str, Any] | None:
    """rust-minidump's committed --json output for the case; None when it produced none."""
    text = (case.folder / RUST_ORACLE).read_text()
    return json.loads(text) if text.strip() else None


def agreed_prefix(case: Case) -> int:
    """How many leading expected.json frames Breakpad and rust-minidump agree on."""
    count = 0
    for frame in case.expected["frames"]:
        if frame.get("rust_agrees") is not True:
            break
        count += 1
    return count


def reference(case: Case) -> tuple[str, list[FrameKey]] | None:
    """The case's reference stack and where it comes from; None when the case is not scored.

    ``rust_agrees`` counts Breakpad's physical frames, so rust's stack is cut in physical
    frames and then expanded (no tool-generated case has inlined calls today).
    """
    if case.malformed or not case.expected["frames"]:
        return None
    committed = str(case.expected.get("oracle_kind", "")).startswith("committed")
    if committed and case.id not in RUST_WITH_SYMBOLS_CASES:
        return "committed", [frame_key(frame) for frame in case.expected["frames"]]
    doc = load_rust_oracle(case) or {}
    if case.id in RUST_WITH_SYMBOLS_CASES:
        return "rust+symbols", expand_frames(stack_frames(doc))
    keep = agreed_prefix(case)
    return f"rust[:{keep}]", expand_frames(stack_frames(doc)[:keep])


def describe_mismatch(index: int, want: FrameKey, got: FrameKey | None) -> str:
    """'#3 function 'main' != 'foo'' style text: the fields that differ at one position."""
    if got is None:
        return f"#{index} missing"
    diffs = [f"{name} {w!r}!={g!r}" for name, w, g in zip(FIELDS, want, got, strict=False) if w != g]
    return f"#{index} " + "; ".join(diffs)


def score(case_id: str, source: str, want: list[FrameKey], got: list[FrameKey]) -> Score:
    """Longest matching prefix, matching positions and the first mismatch of got vs want."""
    result = Score(case_id, source, len(want))
    for index, expected in enumerate(want):
        actual = got[index] if index < len(got) else None
        if actual == expected:
            result.positions += 1
            if result.prefix == index:
                result.prefix += 1
        elif not result.first_mismatch:
            result.first_mismatch = describe_mismatch(index, expected, actual)
    return result


def looks_crashed(returncode: int, stderr: str) -> bool:
    """An uncaught exception (a traceback and a non-zero exit), a Rust panic or death by a
    signal, rather than a clean error exit. A traceback that was only logged (crashd logs a
    thread whose walk failed and goes on) with exit 0 is not a crash."""
    uncaught = returncode != 0 and "Traceback (most recent call last)" in stderr
    return returncode < 0 or uncaught or "panicked at" in stderr


def parse_json_output(stdout: str) -> dict[str, Any] | None:
    """The first JSON document of stdout: one document per line, or one pretty-printed."""
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    try:
        return json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        return None


def run_process(command: list[str], timeout: float) -> Outcome:
    """Run a walker that prints a --json document; a timeout counts as a crash."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(None, crashed=True, error=f"timeout after {timeout:.0f}s")
    doc = parse_json_output(done.stdout)
    stderr = re.sub(r"\x1b\[[0-9;]*m", "", done.stderr).strip()  # rust-minidump colours its log
    last = stderr.splitlines()[-1:] if stderr else []
    error = "" if doc is not None else f"exit {done.returncode}: {' '.join(last)[:120]}"
    if "Traceback (most recent call last)" in stderr and done.returncode == 0:
        error = (error + "; " if error else "") + "a traceback was logged"
    return Outcome(doc, looks_crashed(done.returncode, done.stderr), error)


def crashd_subject(crashd: Path, timeout: float) -> Callable[[Case], Outcome]:
    """``crashd stackwalk <dump> --symbols <case>/symbols --json`` as a subject."""
    def walk(case: Case) -> Outcome:
        command = [str(crashd), "stackwalk", str(case.dump), "--symbols", str(case.symbols), "--json"]
        return run_process(command, timeout)
    return walk


def rust_subject(timeout: float) -> Callable[[Case], Outcome]:
    """rust-minidump ``minidump-stackwalk --json <dump> <symbols>`` run live."""
    binary = rust_stackwalk()
    return lambda case: run_process([str(binary), "--json", str(case.dump), str(case.symbols)], timeout)


def rust_oracle_subject(case: Case) -> Outcome:
    """The committed rust-minidump output, replayed (checks the harness, runs nothing)."""
    doc = load_rust_oracle(case)
    return Outcome(doc, error="" if doc else "no output committed")


def evaluate(case: Case, outcome: Outcome, replay: bool) -> Score:
    """Score one case; a malformed dump passes when the subject did not crash."""
    ref = reference(case)
    if ref is None:
        if not case.malformed:
            return Score(case.id, "-", None, first_mismatch="no reference frames: not scored")
        verdict = "n/a (replay)" if replay else ("CRASHED" if outcome.crashed else "pass")
        detail = f"malformed: {verdict}" + (f" ({outcome.error})" if outcome.error else "")
        return Score(case.id, "no traceback", None, first_mismatch=detail)
    source, want = ref
    if not want:
        return Score(case.id, source, 0, first_mismatch="empty reference: no leading frame has rust_agrees")
    got = expand_frames(stack_frames(outcome.doc)) if outcome.doc else []
    result = score(case.id, source, want, got)
    if outcome.doc is None:
        result.first_mismatch = f"no output ({outcome.error})"
    return result


def machine_summary() -> str:
    """nproc, CPU model, Python version and crashd's commit, for result files."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, crashd at commit {commit}")


def render(scores: list[Score], subject: str) -> str:
    """The per-case table and the totals, as Markdown."""
    lines = [f"Subject: {subject}. Headline: **prefix** = longest matching prefix; "
             "positions = matching positions (secondary).", "",
             "| case | reference | expected | prefix | positions | first mismatch |",
             "|---|---|---:|---:|---:|---|"]
    for s in scores:
        numbers = ("-", "-", "-") if s.expected is None else (s.expected, s.prefix, s.positions)
        mismatch = s.first_mismatch.replace("|", "\\|")
        lines.append(f"| {s.case} | {s.reference} | {numbers[0]} | {numbers[1]} | {numbers[2]} | {mismatch} |")
    lines += ["", totals(scores)]
    return "\n".join(lines)


def totals(scores: list[Score]) -> str:
    """'prefix 690/702 frames (98.3%) in 30 cases ...' over the scored cases."""
    scored = [s for s in scores if s.expected is not None]
    expected = sum(s.expected or 0 for s in scored)
    prefix, positions = sum(s.prefix for s in scored), sum(s.positions for s in scored)
    non_empty = [s for s in scored if s.expected]
    exact = sum(1 for s in non_empty if s.prefix == s.expected)
    malformed = [s for s in scores if s.reference == "no traceback"]
    checked = [s for s in malformed if "n/a" not in s.first_mismatch]
    passed = sum(1 for s in checked if s.first_mismatch.startswith("malformed: pass"))
    robust = f"{passed}/{len(checked)}" if checked else "not checked"
    pct = (lambda n: f"{100 * n / expected:.1f}%") if expected else (lambda n: "-")
    return (f"**Totals: prefix {prefix}/{expected} frames ({pct(prefix)}) in {len(scored)} cases; "
            f"positions {positions}/{expected} ({pct(positions)}); {exact}/{len(non_empty)} non-empty cases fully "
            f"matched; malformed dumps without a traceback: {robust}.**")


def write_report(path: Path, table: str, subject: str, corpus: Path) -> None:
    """docs/accuracy.md: date, machine, command, then the table."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# Stack accuracy (bench/accuracy.py)\n\n**Date:** {today}\n\n"
            f"**Machine:** {machine_summary()}\n\n**Corpus:** {corpus}\n\n"
            f"**Command:** `.venv/bin/python bench/accuracy.py --subject {subject} --write {path}`\n\n"
            f"How references are chosen and frames compared: the docstring of bench/accuracy.py.\n\n"
            f"{table}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subject", choices=("crashd", "rust", "rust-oracle"), default="crashd",
                        help="what to score: crashd stackwalk (default), rust-minidump run live, "
                             "or rust-minidump's committed outputs (harness self-check)")
    parser.add_argument("--crashd", type=Path, default=REPO / ".venv" / "bin" / "crashd")
    parser.add_argument("--corpus", type=Path, default=None, help="default: $CRASHD_CORPUS or ../shared/corpus")
    parser.add_argument("--case", default=None, help="only cases whose id contains this")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="seconds per dump")
    parser.add_argument("--write", type=Path, default=None, help="also write the table here (Markdown)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Score every case, print the table; exit 2 when the subject cannot be run at all."""
    args = parse_args(argv)
    corpus = args.corpus or corpus_dir()
    cases = load_cases(corpus, args.case)
    if not cases:
        print(f"no cases in {corpus}", file=sys.stderr)
        return 2
    try:
        if args.subject == "crashd":
            if not args.crashd.exists():
                raise ToolMissing(f"{args.crashd} not found (pip install -e . in .venv)")
            walk = crashd_subject(args.crashd, args.timeout)
        elif args.subject == "rust":
            walk = rust_subject(args.timeout)
        else:
            walk = rust_oracle_subject
    except ToolMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    scores = [evaluate(case, walk(case), replay=args.subject == "rust-oracle") for case in cases]
    table = render(scores, args.subject)
    print(table)
    if args.write:
        write_report(args.write, table, args.subject, corpus)
        print(f"\nwrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
