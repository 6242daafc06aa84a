"""Which security reports a caller sees (docs/security-reports.md): the restricted tickets of
the projects where they hold the ``security`` grant, all of them for a global admin, none
otherwise. A leaf of server/ (storage/tickets.visible applies it to queries)."""

from __future__ import annotations

from server.access_rules import Principal
from storage.tickets import Restricted


def restricted_visible(who: Principal | None) -> Restricted:
    """True (every project's), False (none) or the projects whose restricted items who sees."""
    if who is None:
        return False
    if who.is_admin:
        return True
    return frozenset(g.project_id for g in who.grants if g.security)
