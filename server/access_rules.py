"""Who may see and do what, per project (docs/auth.md, issue 15): pure functions of a
Principal, no request, no database.

- A global ``admin`` (users.role or api_tokens.role, or the admin token) may do everything in
  every project, restricted items included, and read the shared symbol store.
- A global ``viewer`` with no project grant reads every project (as before grants existed)
  but never a restricted item, and may change nothing.
- Anyone with a grant (storage/grants.py) is limited to the granted projects, whatever the
  global role says (``viewer``, or ``project`` for a per-project token): ``viewer`` reads,
  ``triager`` also acts on tickets, merges and unmerges groups and reprocesses crashes,
  ``admin`` also changes the project's settings and tokens; ``security`` sees the project's
  restricted items.

A leaf of server/: it imports nothing of its package (server/auth.py re-exports Principal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from storage.grants import GRANT_ROLES, Grant

Action = Literal["read", "triage", "admin", "security"]
# The project role each action needs (GRANT_ROLES runs from least to most).
NEEDS = {"read": "viewer", "triage": "triager", "admin": "admin"}


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``role`` is the global role, ``admin``, ``viewer``, ``project`` (a
    per-project token: its grants say everything) or ``uploader``; ``via`` is how they proved
    it (``admin-token``, ``api-token`` or ``session``). An uploader's project_id is the one
    project whose symbols it may upload; ``grants`` are the per-project roles."""

    name: str
    role: str
    via: str
    project_id: int | None = None
    grants: tuple[Grant, ...] = ()

    @property
    def is_admin(self) -> bool:
        """A global admin: every project, restricted items included."""
        return self.role == "admin"


def projects_visible(who: Principal | None) -> frozenset[int] | None:
    """The ids of the projects who may read; None for every project (a global admin, or a
    global viewer without grants). Nobody (None, an uploader) sees an empty set."""
    if who is None:
        return frozenset()
    if who.is_admin or (who.role == "viewer" and not who.grants):
        return None
    return frozenset(g.project_id for g in who.grants)


def grant_in(who: Principal | None, project_id: int | None) -> Grant | None:
    """who's grant in the project, or None."""
    if who is None or project_id is None:
        return None
    return next((g for g in who.grants if g.project_id == project_id), None)


def role_in(who: Principal | None, project_id: int | None) -> str | None:
    """who's role in the project: ``admin`` for a global admin, ``viewer`` for a global viewer
    without grants, else the granted role; None when who may not see the project (project_id
    None: the shared symbol store, which only global roles read)."""
    if who is None:
        return None
    if who.is_admin:
        return "admin"
    visible = projects_visible(who)
    if visible is None:
        return "viewer"
    grant = grant_in(who, project_id)
    return grant.role if grant is not None else None


def may(who: Principal | None, project_id: int | None, action: Action) -> bool:
    """Whether who may do action in the project: ``read`` (see its crashes, groups, tickets,
    feedback, symbols), ``triage`` (ticket actions, merge and unmerge, reprocess), ``admin``
    (its settings and tokens), ``security`` (see its restricted items: global admins and
    grants with ``security`` only)."""
    if action == "security":
        grant = grant_in(who, project_id)
        return who is not None and (who.is_admin or (grant is not None and grant.security))
    role = role_in(who, project_id)
    return role is not None and GRANT_ROLES.index(role) >= GRANT_ROLES.index(NEEDS[action])


def may_anywhere(who: Principal | None, action: Action) -> bool:
    """Whether who may do action in at least one project (the first check of a write: a
    viewer everywhere is refused before the object is looked up)."""
    if who is None:
        return False
    if who.is_admin:
        return True
    return any(may(who, g.project_id, action) for g in who.grants)


def restricted_visible(who: Principal | None) -> bool | frozenset[int]:
    """Which projects' restricted items (security reports) who sees, as storage/tickets.visible
    takes it: True (every project's: a global admin), False (none) or the projects where
    ``may(who, project, "security")``."""
    if who is None:
        return False
    if who.is_admin:
        return True
    return frozenset(g.project_id for g in who.grants if may(who, g.project_id, "security"))
