"""What several ``crashd`` commands share: the rules-file check before serve/worker start, the
check that the database exists, a command's worker context on a migrated database, and
``--project`` as a project id.

A leaf: it imports no module of server/cli/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from schemas.settings import Settings
from storage import queries
from storage.db import make_engine, migrate
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


class NoDatabase(Exception):
    """The database a command would read does not exist; ``crashd`` prints it and exits 2."""


def database_location(settings: Settings) -> str:
    """Where the database is, for messages: the SQLite file, or the URL without its password."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return make_url(settings.database_url or str(url)).render_as_string(hide_password=True)


def require_database(settings: Settings) -> None:
    """Raise NoDatabase unless crashd's database exists: the SQLite file, or on PostgreSQL a
    database with crashd's tables (alembic_version). Never creates anything: a command run in
    the wrong folder must not report on a fresh empty database. Only ``crashd serve``,
    ``crashd worker`` and ``crashd migrate`` create it."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        found = url.database in (None, "", ":memory:") or Path(url.database).is_file()
    else:
        engine = make_engine(settings, pooled=False)
        try:
            with engine.connect() as conn:
                found = inspect(conn).has_table("alembic_version")
        finally:
            engine.dispose()
    if not found:
        raise NoDatabase(f"no crashd database at {database_location(settings)}; "
                         "set CRASHD_DATA_DIR or CRASHD_DATABASE_URL")


def command_engine(settings: Settings) -> Engine:
    """A one-shot command's engine on the existing database, migrated to the newest schema."""
    require_database(settings)
    engine = make_engine(settings, pooled=False)
    migrate(engine)
    return engine


def command_context(settings: Settings, *, pooled: bool = False) -> WorkerContext:
    """A CLI command's worker context, on the existing database, migrated (pooled=False:
    one-shot, no pool left open when run in-process)."""
    require_database(settings)
    ctx = build_context(settings, pooled=pooled)
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
