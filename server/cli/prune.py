"""``crashd prune``: delete crashes and sessions older than a cutoff (workers/retention.py,
docs/deploy.md); ``crashd symbols prune``: delete uploaded debug files no crash has used since a
cutoff (workers/symbol_prune.py, docs/symbols.md).

    crashd prune --older-than 90d [--project P] [--dry-run] [--json]
    crashd symbols prune --unused-for 90d [--dry-run] [--json]

``--older-than`` takes what ``--since`` takes elsewhere: ``36h``, ``90d``, ``12w`` ago, or an ISO
date (crashes received before it).
Without ``--older-than`` (``--unused-for``) it uses ``CRASHD_RETENTION_DAYS``
(``CRASHD_SYMBOL_RETENTION_DAYS``), and refuses when that is unset too: a command that deletes
data needs its cutoff said somewhere.
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
from workers.retention import prune
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


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Delete (or with --dry-run count) the crashes received before now - AGE."""
    try:
        before = cutoff(args.older_than, settings.retention_days, "--older-than", "CRASHD_RETENTION_DAYS")
    except ValueError as exc:
        print(f"error: --older-than: {exc}", file=sys.stderr)
        return 2
    ctx = command_context(settings)
    try:
        project_id = project_id_of(ctx, args.project)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


def add_prune_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    prune = sub.add_parser("prune", help="delete crashes (rows, dumps, attachments) and sessions older than a cutoff")
    prune.add_argument("--older-than", metavar="AGE", help="36h, 90d, 12w or an ISO date (default: CRASHD_RETENTION_DAYS)")
    prune.add_argument("--project", metavar="P", help="only this project (name or id)")
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
