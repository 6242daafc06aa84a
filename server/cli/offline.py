"""``crashd stackwalk`` and ``crashd signature``: process dumps offline with the worker's code,
no server and no database.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schemas.settings import Settings
from symbolicator.process import local_provider, process_minidump
from symbolicator.report_text import format_report
from triage.signature import explain, generate


def cmd_stackwalk(settings: Settings, args: argparse.Namespace) -> int:
    """Process dumps offline with the worker's code: one JSON document per line with --json."""
    provider = local_provider([Path(d) for d in args.symbols], settings.symbol_cache_dir)
    status = 0
    for path in args.dumps:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            status = 1
            continue
        report = process_minidump(data, provider)
        if args.json:
            print(json.dumps(report, separators=(",", ":")))
        else:
            print(format_report(report, all_threads=args.all_threads))
    return status


def cmd_signature(settings: Settings, args: argparse.Namespace) -> int:
    """Process one dump offline and print its signature with the notes and each frame's fate
    (``--json``: the Result as JSON)."""
    try:
        data = Path(args.dump).read_bytes()
    except OSError as exc:
        print(f"error: {args.dump}: {exc}", file=sys.stderr)
        return 1
    provider = local_provider([Path(d) for d in args.symbols], settings.symbol_cache_dir)
    report = process_minidump(data, provider)
    if args.json:
        result = generate(report)
        print(json.dumps({"signature": result.signature, "notes": result.notes, "version": result.version}))
    else:
        print(explain(report))
    return 0
