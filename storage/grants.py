"""Per-project roles (table ``project_grants``, docs/auth.md): a user's or an API token's role
in one project, ``viewer``, ``triager`` or ``admin``, and whether it may see the project's
restricted security items. Keyword-only functions taking an Engine, like queries.py.

A leaf of storage/ for users.py and server/caches.py: it imports only storage/db.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from schemas.tables import ProjectGrant
from storage.db import session

# Least to most: each role can do what the ones before it can (server/access_rules.py).
GRANT_ROLES = ("viewer", "triager", "admin")


@dataclass(frozen=True)
class Grant:
    """A role in one project: ``role`` is one of GRANT_ROLES; ``security``: may see the
    project's restricted items."""

    project_id: int
    role: str
    security: bool = False


def _grant(row: ProjectGrant) -> Grant:
    return Grant(row.project_id, row.role, row.security)


def _check_role(role: str) -> None:
    """Raises ValueError unless role is one of GRANT_ROLES."""
    if role not in GRANT_ROLES:
        raise ValueError(f"a project role is one of {', '.join(GRANT_ROLES)}, not {role!r}")


def set_user_grant(engine: Engine, *, user_name: str, project_id: int, role: str, security: bool = False) -> Grant:
    """Give the user role in the project (replacing a grant it had there). Raises ValueError
    for an unknown role."""
    _check_role(role)
    with session(engine) as s:
        row = s.exec(select(ProjectGrant).where(ProjectGrant.user_name == user_name,
                                                ProjectGrant.project_id == project_id)).first()
        row = row or ProjectGrant(user_name=user_name, project_id=project_id, role=role)
        row.role, row.security = role, security
        s.add(row)
        s.commit()
        s.refresh(row)
        return _grant(row)


def add_token_grant(engine: Engine, *, token_id: int, project_id: int, role: str, security: bool = False) -> Grant:
    """Give the API token role in the project. Raises ValueError for an unknown role."""
    _check_role(role)
    with session(engine) as s:
        row = ProjectGrant(token_id=token_id, project_id=project_id, role=role, security=security)
        s.add(row)
        s.commit()
        s.refresh(row)
        return _grant(row)


def revoke_user_grant(engine: Engine, *, user_name: str, project_id: int) -> bool:
    """Take the user's role in the project away; False when it had none."""
    with session(engine) as s:
        done = s.execute(delete(ProjectGrant).where(col(ProjectGrant.user_name) == user_name,
                                                    col(ProjectGrant.project_id) == project_id))
        s.commit()
        return bool(done.rowcount)  # type: ignore[attr-defined]


def user_grants(engine: Engine, *, user_name: str) -> tuple[Grant, ...]:
    """The user's grants, by project id."""
    with session(engine) as s:
        rows = s.exec(select(ProjectGrant).where(ProjectGrant.user_name == user_name)
                      .order_by(col(ProjectGrant.project_id)))
        return tuple(_grant(r) for r in rows)


def token_grants(engine: Engine, *, token_id: int) -> tuple[Grant, ...]:
    """The API token's grants, by project id."""
    with session(engine) as s:
        rows = s.exec(select(ProjectGrant).where(ProjectGrant.token_id == token_id)
                      .order_by(col(ProjectGrant.project_id)))
        return tuple(_grant(r) for r in rows)


def all_grants(engine: Engine) -> tuple[dict[str, tuple[Grant, ...]], dict[int, tuple[Grant, ...]]]:
    """Every grant: (by user name, by token id), for ``crashd user list`` and ``token list``."""
    by_user: dict[str, list[Grant]] = {}
    by_token: dict[int, list[Grant]] = {}
    with session(engine) as s:
        for row in s.exec(select(ProjectGrant).order_by(col(ProjectGrant.project_id))):
            if row.user_name is not None:
                by_user.setdefault(row.user_name, []).append(_grant(row))
            elif row.token_id is not None:
                by_token.setdefault(row.token_id, []).append(_grant(row))
    return ({k: tuple(v) for k, v in by_user.items()}, {k: tuple(v) for k, v in by_token.items()})


def forget(engine: Engine, *, user_names: Iterable[str] = (), token_ids: Iterable[int] = ()) -> None:
    """Delete every grant of these users and tokens (before the user or token goes: a user
    created again under the same name starts with no grant)."""
    names, ids = list(user_names), list(token_ids)
    with session(engine) as s:
        if names:
            s.execute(delete(ProjectGrant).where(col(ProjectGrant.user_name).in_(names)))
        if ids:
            s.execute(delete(ProjectGrant).where(col(ProjectGrant.token_id).in_(ids)))
        s.commit()
