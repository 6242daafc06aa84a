"""Amplification: what one hostile dump costs, with the limits per dump and without them.

Run from the repository root::

    .venv/bin/python bench/amplification.py                 # with the limits, then without
    .venv/bin/python bench/amplification.py --only limited  # skip the slow unbounded run

The dump (issue 11 item 12) lists one thread 200,000 times, 48 bytes a thread, every copy
pointing at one amd64 context and one stack holding 8 return addresses into the one module
(so each walk finds 9 frames by scanning); 9.6 MB, tests/minidump_writer.py's
``thread_copies_dump``.

Each run is its own process (so its peak memory is its own): ``process_minidump`` on the
dump with an empty symbols folder, the report serialized as the worker stores it; then the
crash page's HTML for that report (server/dashboard/crash.py ``report_view`` and
crash.html, page 1, rendered without a server). ``limited`` uses symbolicator/limits.py's
defaults, ``unbounded`` ``Limits.unbounded()`` (every list read whole: the processing
before the limits; the page is today's paged one). Printed: seconds, report bytes, page
bytes, peak RSS, threads in the report, and the ratios. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

COPIES = 200_000
RUNS = ("limited", "unbounded")


def crash_page(report: dict[str, Any], dump_size: int) -> str:
    """The crash page's HTML for report, page 1, as server/dashboard/crash.py renders it."""
    from starlette.requests import Request

    from server.dashboard.crash import report_view
    from server.dashboard.pages import templates

    request = Request({"type": "http", "method": "GET", "path": "/crashes/bench", "query_string": b"",
                       "headers": [], "server": ("bench", 80), "scheme": "http", "root_path": ""})
    doc = {"crash_id": "bench", "project": "bench", "group_id": None, "status": "processed", "component": None,
           "signature": None, "attachments": [], "annotations": {}, "minidump": {"size": dump_size, "sha256": "-"},
           "received_at": None, "processed_at": None}
    return templates.get_template("crash.html").render(
        request=request, user=None, csrf_token="-", doc=doc, processed={"notes": report["notes"]}, logs={},
        pending=False, **report_view(report, {}))


def run(kind: str) -> dict[str, Any]:
    """One measurement, in this process."""
    from symbolicator.limits import DEFAULT_LIMITS, Limits
    from symbolicator.process import local_provider, process_minidump

    from minidump_writer import thread_copies_dump

    dump = thread_copies_dump(COPIES)
    limits = DEFAULT_LIMITS if kind == "limited" else Limits.unbounded()
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "symbols").mkdir()
        provider = local_provider([Path(scratch) / "symbols"], Path(scratch) / "cache")
        start = time.perf_counter()
        body = json.dumps(process_minidump(dump, provider, limits=limits), separators=(",", ":"))
        seconds = time.perf_counter() - start
    report = json.loads(body)
    crash_page({"notes": [], "threads": [], "modules": []}, 0)  # imports and compiles the templates
    start = time.perf_counter()
    page = crash_page(report, len(dump))
    page_seconds = time.perf_counter() - start
    return {"kind": kind, "dump_bytes": len(dump), "seconds": seconds, "report_bytes": len(body),
            "page_bytes": len(page.encode()), "page_seconds": page_seconds, "threads": len(report["threads"]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=RUNS, help="one run only")
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child)))
        return 0
    results = {}
    for kind in [args.only] if args.only else RUNS:
        out = subprocess.run([sys.executable, __file__, "--child", kind], capture_output=True, text=True, check=True)
        results[kind] = result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{kind:9}  dump {result['dump_bytes'] / 1e6:.1f} MB  process {result['seconds']:.2f} s  "
              f"report {result['report_bytes'] / 1e6:.2f} MB  page {result['page_bytes'] / 1e6:.2f} MB "
              f"({result['page_seconds']:.2f} s)  peak RSS {result['peak_rss_mb']} MB  threads {result['threads']}")
    if len(results) == 2:
        limited, unbounded = results["limited"], results["unbounded"]
        print("unbounded/limited: " + ", ".join(
            f"{key} {unbounded[key] / max(limited[key], 1e-9):.0f}x"
            for key in ("seconds", "report_bytes", "peak_rss_mb")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
