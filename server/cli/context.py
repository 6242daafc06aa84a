"""What several ``crashd`` commands share: the rules-file check before serve/worker start, a
command's worker context on a migrated database, and ``--project`` as a project id.

A leaf: it imports no module of server/cli/.
"""

from __future__ import annotations

import sys

from schemas.settings import Settings
from storage import queries
from storage.db import migrate
from triage.scrub import ScrubRulesError
from triage.scrub import load_rules as load_scrub_rules
from triage.thresholds import RulesError, load_rules
from workers.context import WorkerContext, build_context


def rules_ok(settings: Settings) -> bool:
    """Check the threshold rules and the scrubbing rules (CRASHD_SCRUB_RULES) before
    serve/worker start; print the reason when one is bad."""
    try:
        load_rules(settings.rules_file)
        load_scrub_rules(settings.scrub_rules)
    except (RulesError, ScrubRulesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def command_context(settings: Settings) -> WorkerContext:
    """A CLI command's worker context, on a migrated database."""
    ctx = build_context(settings, pooled=False)  # one-shot: no pool left open when run in-process
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
