"""``crashd triage report``, ``crashd patch-notes`` and ``crashd progress-log``: the daily
triage meeting's agenda, the retest list of a fix build, and the P0/P1 log (docs/triage.md).

workers/triage_report.py gathers each as a plain dict (``--format json`` prints it) and
renders it as Markdown; these commands parse the arguments and print.
The time of the last report is kept in ``<data_dir>/triage-last-report``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from schemas.settings import Settings
from schemas.tables import utcnow
from server.api.params import parse_since
from server.cli.context import command_context, project_id_of
from workers.triage_report import (
    LAST_REPORT_FILE,
    build_report,
    patch_notes,
    progress_log,
    read_mark,
    render_patch_notes,
    render_progress_log,
    render_report,
    write_mark,
)

# -- crashd triage report -------------------------------------------------------------------


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """crashd triage report [--since 24h] [--format markdown|json] [--project P] [--no-mark]."""
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return 2
    ctx = command_context(settings)
    try:
        project_id = project_id_of(ctx, args.project)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mark = settings.data_dir / LAST_REPORT_FILE
    now = utcnow()
    report = build_report(ctx, since=since or now - timedelta(hours=24), last_report=read_mark(mark),
                          project_id=project_id, now=now)
    print(json.dumps(report, indent=2) if args.format == "json" else render_report(report))
    if not args.no_mark:
        write_mark(mark, now)
    return 0


# -- crashd patch-notes ---------------------------------------------------------------------


def cmd_patch_notes(settings: Settings, args: argparse.Namespace) -> int:
    """crashd patch-notes --build B [--project P] [--format markdown|json]."""
    ctx = command_context(settings)
    try:
        notes = patch_notes(ctx, build=args.build, project_id=project_id_of(ctx, args.project))
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(notes, indent=2) if args.format == "json" else render_patch_notes(notes))
    return 0


# -- crashd progress-log --------------------------------------------------------------------


def cmd_progress_log(settings: Settings, args: argparse.Namespace) -> int:
    """crashd progress-log [--project P] [--format markdown|json] [--include-restricted]."""
    ctx = command_context(settings)
    try:
        log = progress_log(ctx, project_id=project_id_of(ctx, args.project), include_restricted=args.include_restricted)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(log, indent=2) if args.format == "json" else render_progress_log(log))
    return 0


def add_triage_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """crashd triage report, crashd patch-notes, crashd progress-log (docs/triage.md)."""
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--project", metavar="P", help="only this project (name or id)")
        p.add_argument("--format", choices=("markdown", "json"), default="markdown")

    triage = sub.add_parser("triage", help="triage outputs").add_subparsers(dest="action", required=True)
    report = triage.add_parser("report", help="new and top groups, open P0/P1, fixes awaiting verification")
    report.add_argument("--since", default="24h", metavar="DATE", help="crashes since DATE (ISO) or 24h / 7d ago")
    report.add_argument("--no-mark", action="store_true", help="do not record this as the last report")
    common(report)
    report.set_defaults(func=cmd_report)
    notes = sub.add_parser("patch-notes", help="groups fixed in a build and the testers who hit them")
    notes.add_argument("--build", required=True, help="the fix build, e.g. 0.9.9-staging-beta2")
    common(notes)
    notes.set_defaults(func=cmd_patch_notes)
    progress = sub.add_parser("progress-log", help="the P0/P1 log as Markdown")
    progress.add_argument("--include-restricted", action="store_true",
                          help="show security reports' text (default: their timeline only)")
    common(progress)
    progress.set_defaults(func=cmd_progress_log)
