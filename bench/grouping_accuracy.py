"""Grouping accuracy: do crashd's groups match the bugs? Real dumps of labelled bugs, scored.

Run from the repository root: ``.venv/bin/python bench/grouping_accuracy.py [--work DIR]``
(``--help`` for the rest). Results and how to read them: docs/benchmarks.md.

1. The crashes. tests/data/realcrash's programs (a C++ game, a ggml-like C library, a Rust
   cdylib) are built with its make.py and crashed under the real Crashpad handler, once per
   variant of each labelled bug: the game's crash modes of make.CASES (their bug labels) and
   NEW_BUGS below, each run O0 and O2 (two builds, two debug ids), on the main thread and on a
   std::thread worker, called directly and through the debug console (two call paths below the
   bug), and for the Rust bugs with libnar.so built panic=unwind and panic=abort. Each upload
   carries its own tester (six in turn) and a build version per binary variant. Builds, dumps
   and symbols are kept in ``--work`` and reused while src/ and make.py are unchanged.
2. Symbols present: a fresh crashd (SQLite, in-process queue, as tests/conftest.py runs it)
   gets every .sym through ``POST /api/<project>/symbols/`` (an uploader token), then every
   dump through ``POST /api/<project>/minidump/``; the queue is drained and each crash's group
   read from the database.
3. Symbols late: another fresh crashd gets the dumps first (scored too: without symbols the
   groups are expected to be poor), then the symbols through the same endpoint, which enqueues
   the crashes that missed them; the queue is drained and the groups are scored again.
Scores (bench/cluster_scores.py): pairwise and B-cubed precision and recall of the groups
against the bug labels. Target: precision >= 0.99 and recall >= 0.95 with symbols present and
after the late-symbol reprocess.

Comparator, "before": the signature rules of commit 54e3085 (before issue 13's siglist changes).
Migrations after it do not exist in that tree, so crashes are processed by this checkout's
pipeline only; then each crash's stored report is signed again by that commit's
``triage.signature.generate`` (``git archive`` into the work dir, run in a subprocess with only
that tree first on sys.path) and grouped by that signature. The same re-signing with this
checkout's generator must give crashd's own signatures (printed as a check).
Exit status 0 always; the last line says TARGET MET or TARGET MISSED.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from accuracy import REPO, machine_summary
from cluster_scores import Scores, confusions, score

sys.path.insert(0, str(REPO / "tests" / "data" / "realcrash"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(1, str(REPO))
import make
from sqlmodel import Session, select

from schemas.tables import Crash

from conftest import Crashd, _crashd, make_settings
from uploads import minidump_upload

BEFORE_COMMIT = "54e3085"
PRECISION_TARGET, RECALL_TARGET = 0.99, 0.95
# Crash modes of src/game.cpp beyond make.CASES' (mode -> bug label); see its run().
NEW_BUGS = {
    "use-after-free": "inventory-freed",
    "divide-zero": "collision-grid-div-zero",
    "stack-overflow": "quest-cycle-overflow",
    "save-abort": "save-folder-abort",
    "audio-thread": "audio-buffer-null",
    "ggml-attention": "attention-kv-freed",
    "ggml-rope": "rope-cache-missing",
    "zklogin": "zklogin-jwt-no-payload",
    "nar-divide": "nar-quest-div-zero",
    "nar-borrow": "nar-speaker-borrowed",
}
BUILDS = {"O0": "3.2.0-debug", "O2": "3.2.0"}  # make.VARIANTS -> the build version uploaded
TESTERS = 6
SOURCES = ("game.cpp", "ggml_like.c", "ggml_like.h", "nar/src/lib.rs", "nar/Cargo.toml")
RESIGN = """import json, sys
sys.path.insert(0, sys.argv[1])
import triage.signature as signature
print(signature.__file__, file=sys.stderr)
print(json.dumps([signature.generate(i["report"], i["annotations"]).signature for i in map(json.loads, sys.stdin)]))
"""


@dataclass(frozen=True)
class Variant:
    """One dump of one bug: the game's mode, its build, the libnar.so loaded and the options."""

    bug: str
    mode: str
    build: str  # O0 or O2
    nar: str  # nar-unwind or nar-abort
    thread: bool  # the mode runs on a std::thread worker
    console: bool  # reached through the debug console (the second call path)

    @property
    def name(self) -> str:
        return "-".join((self.mode, self.build, self.nar, "thread" if self.thread else "main",
                         "console" if self.console else "direct"))

    @property
    def version(self) -> str:
        return BUILDS[self.build] + ("-panic-abort" if self.nar == "nar-abort" else "")


@dataclass(frozen=True)
class Graded:
    """One processed crash: its label, crashd's group and signature, its report for re-signing."""

    bug: str
    group_id: int | None
    signature: str
    report: dict[str, Any]
    annotations: dict[str, Any]


def bugs_by_mode() -> dict[str, str]:
    """Every crash mode of the game with its bug label (make.CASES' and NEW_BUGS)."""
    modes = {case.mode: case.bug for case in make.CASES}
    return {**modes, **NEW_BUGS}


def plan() -> list[Variant]:
    """Every variant of every bug, in a fixed order."""
    return [Variant(bug, mode, build, nar, thread, console)
            for mode, bug in bugs_by_mode().items() for build in BUILDS
            for nar in (("nar-unwind", "nar-abort") if mode.startswith("nar-") else ("nar-unwind",))
            for thread in (False, True) for console in (False, True)]


# -- building and crashing ------------------------------------------------------------------


def source_stamp() -> str:
    """A hash of the programs' sources and make.py: the cached builds and dumps match it."""
    digest = hashlib.sha256()
    for path in [make.SRC / name for name in SOURCES] + [make.HERE / "make.py"]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def prepare(work: Path, variants: list[Variant]) -> tuple[dict[Variant, Path], Path]:
    """Build, crash and dump symbols into work (reused while source_stamp holds): returns the
    dump of each variant and the symbols folder (Breakpad layout)."""
    stamp_file, stamp = work / "stamp", source_stamp()
    if not stamp_file.exists() or stamp_file.read_text() != stamp:
        shutil.rmtree(work / "build", ignore_errors=True)
        shutil.rmtree(work / "dumps", ignore_errors=True)
        shutil.rmtree(work / "symbols", ignore_errors=True)
    build, dumps, symbols = work / "build", work / "dumps", work / "symbols"
    if not (symbols / "stamp").exists():
        for variant in (*make.NAR_PROFILES, *make.VARIANTS):  # libnar.so first
            make.build(variant, build)
        binaries = [build / v / "libnar.so" for v in make.NAR_PROFILES]
        binaries += [build / v / f for v in make.VARIANTS for f in ("game", "libggml_like.so")]
        for binary in binaries + [make.system_library(n) for n in make.SYSTEM_LIBRARIES]:
            make.dump_syms(binary, symbols)
        (symbols / "stamp").write_text(stamp)
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(stamp)
    missing = [v for v in variants if not (dumps / f"{v.name}.dmp").exists()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda v: crash_variant(v, build, dumps), missing))
    print(f"dumps: {len(variants)} ({len(missing)} made now, the rest cached in {dumps})")
    return {v: dumps / f"{v.name}.dmp" for v in variants}, symbols


def crash_variant(variant: Variant, build: Path, dumps: Path) -> Path:
    """Crash the game as variant says; returns dumps/<name>.dmp."""
    args = [variant.mode, *(["thread"] if variant.thread else []), *(["console"] if variant.console else [])]
    dump = make.crash(build / variant.build / "game", args, dumps / "tmp",
                      library_path=(build / variant.nar, build / variant.build))
    return dump.rename(dumps / f"{variant.name}.dmp")


# -- crashd ---------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_crashd(data: Path) -> Iterator[Crashd]:
    """crashd on SQLite with the in-process queue in an empty data dir, as the tests run it."""
    shutil.rmtree(data, ignore_errors=True)
    app = _crashd("sqlite-inprocess", make_settings("sqlite-inprocess", data, None, None))
    try:
        yield next(app)
    finally:
        app.close()


def upload_symbols(crashd: Crashd, symbols: Path) -> int:
    """POST every .sym under symbols as symupload does; returns how many."""
    files = sorted(symbols.rglob("*.sym"))
    for sym in files:
        _module, os_name, cpu, debug_id, debug_file = sym.open("rb").readline().decode().split(" ", 4)
        response = crashd.client.post(
            f"/api/{crashd.project.id}/symbols/?key={crashd.upload_token}",
            files={"symbol_file": (sym.name, sym.read_bytes())},
            data={"debug_file": debug_file.strip(), "debug_identifier": debug_id, "code_file": debug_file.strip(),
                  "os": os_name, "cpu": cpu})
        if response.status_code != 200:
            raise RuntimeError(f"symbol upload {sym}: {response.status_code} {response.text}")
    return len(files)


def upload_dumps(crashd: Crashd, dumps: dict[Variant, Path]) -> dict[str, Variant]:
    """POST every dump to the minidump endpoint with its tester and build; returns crash id ->
    variant."""
    crash_ids = {}
    for index, (variant, path) in enumerate(dumps.items()):
        body, content_type = minidump_upload(path.read_bytes(), prod="realcrash-game", ver=variant.version,
                                             tester_id=f"tester-{index % TESTERS}", guid=str(uuid.uuid4()))
        response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                      content=body, headers={"Content-Type": content_type})
        if response.status_code != 200:
            raise RuntimeError(f"upload {path.name}: {response.status_code} {response.text}")
        crash_ids[response.text.strip()] = variant
    return crash_ids


def graded(crashd: Crashd, crash_ids: dict[str, Variant]) -> list[Graded]:
    """Each uploaded crash as processed: its group, signature and stored report. Raises
    RuntimeError when one is not processed."""
    engine, blobs = crashd.state.ctx.engine, crashd.state.ctx.blobs
    with Session(engine) as session:
        rows = {c.crash_id: c for c in session.exec(select(Crash).where(Crash.project_id == crashd.project.id))}
    out = []
    for crash_id, variant in crash_ids.items():
        crash = rows[crash_id]
        processed = crash.processed or {}
        if crash.status != "processed" or "report_key" not in processed:
            raise RuntimeError(f"{variant.name}: {crash.status} {crash.processing_error}")
        report = json.loads(blobs.read_bytes(processed["report_key"]))
        out.append(Graded(variant.bug, crash.group_id, crash.signature or "", report,
                          processed.get("annotations") or crash.annotations or {}))
    return out


# -- signing with another tree's rules ------------------------------------------------------


def before_tree(work: Path, commit: str) -> Path:
    """The triage/ package of commit, extracted once into work/before-<commit>/."""
    target = work / f"before-{commit}"
    if not (target / "triage" / "signature").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "triage"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def resign(code: Path, crashes: list[Graded]) -> list[str]:
    """The signature of each crash by code's triage.signature.generate (in a subprocess with
    code first on sys.path). Raises RuntimeError when it fails or loads another tree."""
    lines = "".join(json.dumps({"report": c.report, "annotations": c.annotations}) + "\n" for c in crashes)
    done = subprocess.run([sys.executable, "-c", RESIGN, str(code)], input=lines, capture_output=True, text=True,
                          cwd=code)
    if done.returncode != 0 or not done.stderr.startswith(str(code.resolve())):
        raise RuntimeError(f"re-signing with {code} failed:\n{done.stderr}")
    return list(json.loads(done.stdout))


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One scored grouping: which phase, which rules, the figures and the groups it made."""

    phase: str
    rules: str
    labels: list[str]
    groups: list[str]
    scores: Scores
    scored: bool  # counts toward the target


def scored_rows(phase: str, crashes: list[Graded], before: list[str], *, target: bool) -> list[Row]:
    """The before (old rules' signatures) and after (crashd's groups) rows of one phase. A group
    is named by its signature (one group per project and signature)."""
    labels = [c.bug for c in crashes]
    names = {c.group_id: c.signature for c in crashes}
    after = [f"{names[c.group_id]}" if c.group_id is not None else "(no group)" for c in crashes]
    return [Row(phase, f"before ({BEFORE_COMMIT})", labels, before, score(labels, before), False),
            Row(phase, "after (this checkout)", labels, after, score(labels, after), target)]


def print_table(rows: list[Row]) -> None:
    print("| phase | rules | crashes | bugs | groups | pair precision | pair recall | B3 precision | B3 recall |"
          " target |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        s = row.scores
        verdict = ("met" if s.meets(PRECISION_TARGET, RECALL_TARGET) else "missed") if row.scored else "-"
        print(f"| {row.phase} | {row.rules} | {s.items} | {s.bugs} | {s.groups} | {s.pair_precision:.4f} |"
              f" {s.pair_recall:.4f} | {s.bcubed_precision:.4f} | {s.bcubed_recall:.4f} | {verdict} |")


def print_confusions(row: Row, *, limit: int | None = None) -> None:
    """The bugs split across groups and the groups merging bugs; at most limit of each."""
    found = confusions(row.labels, row.groups)
    print(f"\n{row.phase}, {row.rules}: {len(found.splits)} bugs split, {len(found.merges)} groups merging bugs")
    for title, table in (("split", found.splits), ("merged", found.merges)):
        for key, parts in sorted(table.items(), key=lambda kv: str(kv[0]))[:limit]:
            listed = "; ".join(f"{name!s} x{count}" for name, count in parts)
            print(f"  {title} {key!s}: {listed}")
        if limit is not None and len(table) > limit:
            print(f"  ... and {len(table) - limit} more {title}")


# -- the run --------------------------------------------------------------------------------


def run_phases(work: Path, dumps: dict[Variant, Path], symbols: Path, before: Path) -> list[Row]:
    """Symbols present, then symbols late (missing and after the reprocess); the scored rows."""
    rows: list[Row] = []
    start = time.perf_counter()
    with fresh_crashd(work / "crashd-present") as crashd:
        sent = upload_symbols(crashd, symbols)
        crash_ids = upload_dumps(crashd, dumps)
        crashd.drain()
        present = graded(crashd, crash_ids)
    print(f"symbols present: {sent} .sym files, then {len(crash_ids)} dumps ({time.perf_counter() - start:.1f} s)")
    check = resign(REPO, present)
    agree = sum(a == c.signature for a, c in zip(check, present, strict=True))
    print(f"re-signing check: this checkout's generator in a subprocess gives crashd's signature for"
          f" {agree}/{len(present)} crashes")
    rows += scored_rows("symbols present", present, resign(before, present), target=True)
    start = time.perf_counter()
    with fresh_crashd(work / "crashd-late") as crashd:
        crash_ids = upload_dumps(crashd, dumps)
        crashd.drain()
        missing = graded(crashd, crash_ids)
        upload_symbols(crashd, symbols)
        crashd.drain()
        late = graded(crashd, crash_ids)
    print(f"symbols late: {len(crash_ids)} dumps, then the symbols, reprocessed ({time.perf_counter() - start:.1f} s)")
    rows += scored_rows("no symbols yet", missing, resign(before, missing), target=False)
    rows += scored_rows("after late symbols", late, resign(before, late), target=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "crashd-grouping-accuracy",
                        help="builds, dumps, symbols and crashd data dirs; reused by the next run (default: %(default)s)")
    parser.add_argument("--before", default=BEFORE_COMMIT, help="commit whose signature rules are 'before'")
    args = parser.parse_args(argv)
    print(f"machine: {machine_summary()}")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    variants = plan()
    print(f"bugs: {len({v.bug for v in variants})}, variants: {len(variants)}"
          f" (min {min(sum(v.bug == b for v in variants) for b in {v.bug for v in variants})} a bug)")
    dumps, symbols = prepare(args.work, variants)
    rows = run_phases(args.work, dumps, symbols, before_tree(args.work, args.before))
    print()
    print_table(rows)
    for row in rows:
        print_confusions(row, limit=5 if row.phase == "no symbols yet" else None)
    met = all(row.scores.meets(PRECISION_TARGET, RECALL_TARGET) for row in rows if row.scored)
    print(f"\ntarget: precision >= {PRECISION_TARGET}, recall >= {RECALL_TARGET} (pairwise and B-cubed), with"
          f" symbols present and after late symbols")
    print("TARGET MET" if met else "TARGET MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
