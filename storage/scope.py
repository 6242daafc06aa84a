"""Which projects a query may return rows of (docs/auth.md, per-project roles): one project's
id, a set of ids (the caller's projects: server/access_rules.projects_visible), or None for
every project; and the project of an object, for the 404 of one the caller may not read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from storage.groups import GROUPS
from storage.queries import is_row_id

ProjectScope = int | frozenset[int] | None


def scoped(column: Any, scope: ProjectScope) -> list[Any]:
    """The WHERE clauses keeping column (a ``project_id`` column) within scope: none for None,
    ``column = id`` for one project, ``column IN (...)`` for a set (an empty set keeps no row)."""
    if scope is None:
        return []
    if isinstance(scope, int):
        return [column == scope]
    return [column.in_(sorted(scope))]


def group_project(engine: Engine, *, group_id: int) -> int | None:
    """The project of a crash group; None when there is no such group."""
    if not is_row_id(group_id):
        return None
    with engine.connect() as conn:
        return conn.execute(select(GROUPS.c.project_id).where(GROUPS.c.id == group_id)).scalar_one_or_none()
