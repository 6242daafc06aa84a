"""``crashd prune``: delete crashes and sessions older than a cutoff (workers/retention.py, docs/deploy.md).

    crashd prune --older-than 90d [--project P] [--dry-run] [--json]

``--older-than`` takes what ``--since`` takes elsewhere: ``36h``, ``90d``, ``12w`` ago, or an ISO
date (crashes received before it).
Without ``--older-than`` it uses ``CRASHD_RETENTION_DAYS``, and refuses when that is unset too:
a command that deletes data needs its cutoff said somewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from schemas.settings import Settings
from schemas.tables import utcnow

def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Delete (or with --dry-run count) the crashes received before now - AGE."""
    from server.groups_api import parse_since
    from storage import queries
    from storage.db import migrate
    from workers import jobs
    from workers.retention import prune

    try:
        if args.older_than:
            before = parse_since(args.older_than)
        elif settings.retention_days:
            before = utcnow() - timedelta(days=settings.retention_days)
        else:
            raise ValueError("say how old: --older-than 90d, or set CRASHD_RETENTION_DAYS")
    except ValueError as exc:
        print(f"error: --older-than: {exc}", file=sys.stderr)
        return 2
    ctx = jobs.build_context(settings)
    migrate(ctx.engine)
    project_id = None
    if args.project:
        project = queries.find_project(ctx.engine, ref=args.project)
        if project is None:
            print(f"error: no project {args.project!r}", file=sys.stderr)
            return 2
        project_id = project.id
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
