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
from storage import queries
from triage.thresholds import RulesError, load_rules
from workers.jobs import WorkerContext
from workers.triage_report import (LAST_REPORT_FILE, build_report, patch_notes, progress_log, read_mark,
                                   render_patch_notes, render_progress_log, render_report, write_mark)


def rules_ok(settings: Settings) -> bool:
    """Check the rules file before serve/worker start; print the reason when it is bad."""
    try:
        load_rules(settings.rules_file)
    except RulesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def command_context(settings: Settings) -> WorkerContext:
    """A CLI command's worker context, on a migrated database."""
    from storage.db import migrate
    from workers import jobs

    ctx = jobs.build_context(settings)
    migrate(ctx.engine)
    return ctx


def project_id_of(ctx: WorkerContext, ref: str | None) -> int | None:
    """The id of --project (name or id); raises LookupError when unknown."""
    if not ref:
        return None
    project = queries.find_project(ctx.engine, ref=ref)
    if project is None:
        raise LookupError(f"no project {ref!r}")
    return project.id


# -- crashd triage report -------------------------------------------------------------------


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """crashd triage report [--since 24h] [--format markdown|json] [--project P] [--no-mark]."""
    from server.groups_api import parse_since

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
    """crashd progress-log [--project P] [--format markdown|json]."""
    ctx = command_context(settings)
    try:
        log = progress_log(ctx, project_id=project_id_of(ctx, args.project))
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(log, indent=2) if args.format == "json" else render_progress_log(log))
    return 0
