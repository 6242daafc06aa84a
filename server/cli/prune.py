"""``crashd prune``: delete crashes and sessions older than a cutoff (workers/retention.py,
docs/deploy.md); ``crashd symbols prune``: delete uploaded debug files no crash has used since a
cutoff (workers/symbol_prune.py, docs/symbols.md).

    crashd prune --older-than 90d [--project P] [--dry-run] [--json]
    crashd prune --raw-dumps [--older-than 30d] [--project P] [--dry-run] [--json]
    crashd symbols prune --unused-for 90d [--dry-run] [--json]

``--older-than`` takes what ``--since`` takes elsewhere: ``36h``, ``90d``, ``12w`` ago, or an ISO
date (crashes received before it).
Without ``--older-than`` (``--unused-for``) it uses ``CRASHD_RETENTION_DAYS``
(``CRASHD_SYMBOL_RETENTION_DAYS``), and refuses when that is unset too: a command that deletes
data needs its cutoff said somewhere. ``--raw-dumps`` deletes only the raw minidumps of crashes
done with processing, keeping the crashes (default cutoff: ``CRASHD_RAW_DUMP_DAYS``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta

from schemas.settings import Settings
from schemas.tables import utcnow
from server.api.params import parse_since
from server.cli.context import command_context, project_id_of
from workers.context import WorkerContext
from workers.retention import prune, prune_raw_dumps
from workers.symbol_prune import prune_symbols


def cutoff(given: str | None, days: float | None, option: str, setting: str) -> datetime:
    """The cutoff from the option (``90d``, an ISO date, ...) or the setting's days. Raises
    ValueError with what to say."""
    if given:
        since = parse_since(given)
        assert since is not None  # given is not empty
        return since
    if days:
        return utcnow() - timedelta(days=days)
    raise ValueError(f"say how old: {option} 90d, or set {setting}")


def prune_target(settings: Settings, args: argparse.Namespace, days: float | None,
                 setting: str) -> tuple[WorkerContext, datetime, int | None] | None:
    """The context, cutoff (``--older-than``, else the setting's days) and project (``--project``)
    of a prune; None when one is wrong, after saying so on stderr."""
    try:
        before = cutoff(args.older_than, days, "--older-than", setting)
    except ValueError as exc:
        print(f"error: --older-than: {exc}", file=sys.stderr)
        return None
    ctx = command_context(settings)
    try:
        return ctx, before, project_id_of(ctx, args.project)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Delete (or with --dry-run count) the crashes received before now - AGE."""
    if args.raw_dumps:
        return cmd_prune_raw_dumps(settings, args)
    target = prune_target(settings, args, settings.retention_days, "CRASHD_RETENTION_DAYS")
    if target is None:
        return 2
    ctx, before, project_id = target
    result = prune(ctx, before=before, project_id=project_id, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"before": before.isoformat(), "dry_run": args.dry_run, **result.as_dict()}))
    elif args.dry_run:
        print(f"would delete {result.crashes} crashes and {result.sessions} sessions from before "
              f"{before:%Y-%m-%d %H:%M} UTC")
    else:
        left = f", {result.blobs_failed} left behind: see the log" if result.blobs_failed else ""
        print(f"deleted {result.crashes} crashes ({result.blobs} blobs{left}) and {result.sessions} sessions "
              f"from before {before:%Y-%m-%d %H:%M} UTC")
    return 1 if result.blobs_failed else 0


def cmd_prune_raw_dumps(settings: Settings, args: argparse.Namespace) -> int:
    """Delete (or with --dry-run count) the raw dumps of crashes received before now - AGE and
    done with processing; the crashes stay."""
    target = prune_target(settings, args, settings.raw_dump_days, "CRASHD_RAW_DUMP_DAYS")
    if target is None:
        return 2
    ctx, before, project_id = target
    days = round((utcnow() - before).total_seconds() / 86400, 2)  # what the crash pages say: "after N days"
    result = prune_raw_dumps(ctx, before=before, days=days, project_id=project_id, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"before": before.isoformat(), "dry_run": args.dry_run, "raw_dumps": result.crashes,
                          "blobs": result.blobs, "blobs_failed": result.blobs_failed}))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        left = f" ({result.blobs_failed} left behind: see the log)" if result.blobs_failed else ""
        print(f"{verb} the raw dumps of {result.crashes} crashes{left} from before {before:%Y-%m-%d %H:%M} UTC")
    return 1 if result.blobs_failed else 0


def add_prune_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    prune = sub.add_parser("prune", help="delete crashes (rows, dumps, attachments) and sessions older than a cutoff")
    prune.add_argument("--older-than", metavar="AGE", help="36h, 90d, 12w or an ISO date (default: CRASHD_RETENTION_DAYS)")
    prune.add_argument("--project", metavar="P", help="only this project (name or id)")
    prune.add_argument("--raw-dumps", action="store_true",
                       help="delete only the raw minidumps of processed crashes, keep the crashes "
                            "(default cutoff: CRASHD_RAW_DUMP_DAYS)")
    prune.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    prune.add_argument("--json", action="store_true", help="print the counts as JSON")
    prune.set_defaults(func=cmd_prune)


def cmd_symbols_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Delete (or with --dry-run count) the debug files no crash has used since now - AGE."""
    try:
        before = cutoff(args.unused_for, settings.symbol_retention_days, "--unused-for",
                        "CRASHD_SYMBOL_RETENTION_DAYS")
    except ValueError as exc:
        print(f"error: --unused-for: {exc}", file=sys.stderr)
        return 2
    result = prune_symbols(command_context(settings), before=before, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"before": before.isoformat(), "dry_run": args.dry_run, **result.as_dict()}))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {result.modules} modules ({result.bytes / 1e6:.1f} MB) unused since "
              f"{before:%Y-%m-%d %H:%M} UTC" + "".join(f"\nkept (error): {f}" for f in result.failed))
    return 1 if result.failed else 0


def add_symbols_prune_command(symbols: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    prune = symbols.add_parser("prune", help="delete uploaded debug files no crash has used for a while")
    prune.add_argument("--unused-for", metavar="AGE",
                       help="36h, 90d, 12w or an ISO date (default: CRASHD_SYMBOL_RETENTION_DAYS)")
    prune.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    prune.add_argument("--json", action="store_true", help="print the counts as JSON")
    prune.set_defaults(func=cmd_symbols_prune)
