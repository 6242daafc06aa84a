"""Regrouping: crashes change groups, and the group's ticket follows its bug.

Three ways crashes leave a group (docs/grouping.md, "Regrouping"):

- **Reprocessing** (late symbols, a new signature version, new siglists) gives a crash a new
  signature: ``place_crash`` counts it in its new group (storage/groups.place) and, in the
  same transaction, moves the old group's ticket once more of the old group's crashes have
  moved to the new group than are left in the old one (all of them, after late symbols).
- **Merge** by a person: ``merge_groups`` moves every crash of a group into another and
  remembers the merge as rules (group_redirects: signature -> group), so crashes of those
  signatures, new or reprocessed, are counted there from now on. The ticket follows.
- **Unmerge**: ``unmerge_signatures`` forgets those rules and moves the crashes of those
  signatures back to the groups of their own signatures.

A ticket follows as storage/tickets.carry says: re-pointed (event ``regrouped``) or merged
into the older ticket (the other one ``duplicate``). Everything happens under the project's
move lock (storage/groups.lock_moves), so many workers and people at once still end with
exactly one live ticket per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection, Engine, Row

from schemas.settings import Settings
from schemas.tables import utcnow
from storage import tickets
from storage.db import dialect_insert
from storage.groups import (
    CRASHES,
    GROUPS,
    MOVES,
    REDIRECTS,
    Grouping,
    lock_moves,
    more_severe_kind,
    place,
    recount,
    retrying,
)
from storage.queries import as_utc
from storage.search_index import regrouped
from triage.kinds import FEEDBACK
from triage.tickets.transitions import Change


class RegroupError(ValueError):
    """A merge or unmerge that cannot be done as asked; the message says why."""


class GroupNotFound(LookupError):
    """No such group (in this project)."""


@dataclass(frozen=True)
class Placed:
    """Where place_crash counted a crash, and what it changed on tickets."""

    group_id: int
    moved_from: int | None = None
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Regrouped:
    """What a merge or an unmerge did: how many crashes moved, into which groups, and the
    ticket changes (to notify)."""

    crashes_moved: int
    groups: dict[str, int]  # signature -> the group its crashes are in now
    changes: list[Change] = field(default_factory=list)


def place_crash(engine: Engine, *, settings: Settings, grouping: Grouping) -> Placed:
    """Count the crash in its group (storage/groups.place); when it moved, let the old
    group's ticket follow (``follow_moves``). Retries deadlocks and SQLite's busy errors."""
    def work(conn: Connection) -> Placed:
        placement = place(conn, grouping)
        if placement.moved_from is None:
            return Placed(placement.group_id)
        changes = follow_moves(conn, settings, from_group=placement.moved_from, to_group=placement.group_id)
        return Placed(placement.group_id, placement.moved_from, changes)
    return retrying(f"group assignment of {grouping.crash_id}", work, engine)


def follow_moves(conn: Connection, settings: Settings, *, from_group: int, to_group: int) -> list[Change]:
    """Move from_group's ticket to to_group when more of from_group's crashes moved there than
    are left in from_group. Late symbols move a group's crashes one by one: the ticket moves
    at the first crash past half, before the new group could reach a threshold on its own.
    A group split between two new groups hands its ticket to the bigger part."""
    moved = conn.execute(select(MOVES.c.crash_count).where(
        MOVES.c.from_group_id == from_group, MOVES.c.to_group_id == to_group)).scalar_one_or_none() or 0
    left = conn.execute(select(GROUPS.c.crash_count).where(GROUPS.c.id == from_group)).scalar_one()
    if moved <= left:
        return []
    return tickets.carry(conn, settings, from_group=from_group, to_group=to_group, reason="reprocessing",
                         actor="system:reprocessing")


def merge_groups(engine: Engine, *, settings: Settings, group_id: int, into: int, actor: str,
                 project_id: int | None = None) -> Regrouped:
    """Merge group group_id into group into: its crashes move there, its signature (and the
    signatures merged into it before) are redirected there for good, its ticket follows.
    Raises GroupNotFound, or RegroupError (same group, other project, already merged)."""
    def work(conn: Connection) -> Regrouped:
        lock_moves(conn, _group(conn, group_id, project_id).project_id)
        source, target = _group(conn, group_id, project_id), _group(conn, into, project_id)
        if source.id == target.id:
            raise RegroupError("a group cannot be merged into itself")
        if source.project_id != target.project_id:
            raise RegroupError("groups of two projects cannot be merged")
        if FEEDBACK in (source.kind, target.kind):  # counted from reports, not crashes: recount cannot
            raise RegroupError("feedback groups cannot be merged (they group reports by category and line)")
        for group in (source, target):
            if group.merged_into is not None:
                raise RegroupError(f"group {group.id} was merged into group {group.merged_into} already")
        _redirect(conn, source.project_id, source.signature, target.id, actor)
        conn.execute(update(REDIRECTS).where(REDIRECTS.c.group_id == source.id).values(group_id=target.id))
        conn.execute(update(GROUPS).where(GROUPS.c.merged_into == source.id).values(merged_into=target.id))
        conn.execute(update(GROUPS).where(GROUPS.c.id == source.id).values(merged_into=target.id))
        regrouped(conn, group_id=target.id, crash_ids=select(CRASHES.c.crash_id).where(CRASHES.c.group_id == source.id))
        moved = conn.execute(update(CRASHES).where(CRASHES.c.group_id == source.id).values(group_id=target.id)).rowcount
        recount(conn, source.id)
        recount(conn, target.id)
        conn.execute(update(GROUPS).where(GROUPS.c.id == target.id).values(
            kind=more_severe_kind(GROUPS.c.kind, source.kind)))
        changes = tickets.carry(conn, settings, from_group=source.id, to_group=target.id, reason="merge", actor=actor)
        return Regrouped(moved, {source.signature: target.id}, changes)
    return retrying(f"merge of group {group_id} into {into}", work, engine)


def unmerge_signatures(engine: Engine, *, group_id: int, signatures: Sequence[str], actor: str,
                       project_id: int | None = None) -> Regrouped:
    """Undo merges into group group_id: the rules for these signatures go, and the crashes of
    each signature move back to the group of their own signature (created when there is none).
    Raises GroupNotFound, or RegroupError for the group's own signature or one not merged here."""
    def work(conn: Connection) -> Regrouped:
        group = _group(conn, group_id, project_id)
        lock_moves(conn, group.project_id)
        wanted = list(dict.fromkeys(signatures))
        if not wanted:
            raise RegroupError("name at least one signature (or crash) to unmerge")
        if group.signature in wanted:
            raise RegroupError(f"{group.signature!r} is the group's own signature: its crashes stay")
        merged = set(conn.execute(select(REDIRECTS.c.signature).where(
            REDIRECTS.c.group_id == group.id, REDIRECTS.c.signature.in_(wanted))).scalars())
        if missing := [s for s in wanted if s not in merged]:
            raise RegroupError(f"not merged into group {group.id}: {', '.join(repr(s) for s in missing)}")
        moved, homes = 0, {}
        for signature in wanted:
            conn.execute(delete(REDIRECTS).where(REDIRECTS.c.project_id == group.project_id,
                                                 REDIRECTS.c.signature == signature))
            home = _home(conn, group, signature)
            regrouped(conn, group_id=home, crash_ids=select(CRASHES.c.crash_id).where(
                CRASHES.c.group_id == group.id, CRASHES.c.signature == signature))
            moved += conn.execute(update(CRASHES).where(CRASHES.c.group_id == group.id,
                                                        CRASHES.c.signature == signature)
                                  .values(group_id=home)).rowcount
            recount(conn, home)
            homes[signature] = home
        recount(conn, group.id)
        return Regrouped(moved, homes)
    return retrying(f"unmerge from group {group_id}", work, engine)


def signatures_of_crashes(engine: Engine, *, group_id: int, crash_ids: Sequence[str]) -> list[str]:
    """The signatures of these crashes of the group (to unmerge by crash). Raises RegroupError
    for a crash that is not in the group."""
    with engine.connect() as conn:
        rows = conn.execute(select(CRASHES.c.crash_id, CRASHES.c.signature).where(
            CRASHES.c.crash_id.in_(list(crash_ids)), CRASHES.c.group_id == group_id)).all()
    found = {r.crash_id: r.signature for r in rows}
    if missing := [c for c in crash_ids if c not in found]:
        raise RegroupError(f"not in group {group_id}: {', '.join(missing[:10])}")
    return list(dict.fromkeys(found[c] for c in crash_ids))


def merged_signatures(conn: Connection, *, group_id: int) -> list[dict[str, Any]]:
    """The merges into the group: signature, who merged it, when, and how many of the group's
    crashes carry it now."""
    rows = conn.execute(select(REDIRECTS.c.signature, REDIRECTS.c.actor, REDIRECTS.c.created_at)
                        .where(REDIRECTS.c.group_id == group_id).order_by(REDIRECTS.c.created_at)).all()
    counts: dict[str, int] = {signature: count for signature, count in conn.execute(
        select(CRASHES.c.signature, func.count()).where(
            CRASHES.c.group_id == group_id, CRASHES.c.signature.in_([r.signature for r in rows]))
        .group_by(CRASHES.c.signature))}
    return [{"signature": r.signature, "actor": r.actor, "merged_at": as_utc(r.created_at),
             "crash_count": counts.get(r.signature, 0)} for r in rows]


def _group(conn: Connection, group_id: int, project_id: int | None) -> Row[Any]:
    stmt = select(GROUPS).where(GROUPS.c.id == group_id)
    if project_id is not None:
        stmt = stmt.where(GROUPS.c.project_id == project_id)
    row = conn.execute(stmt).first()
    if row is None:
        raise GroupNotFound(f"no group {group_id}")
    return row


def _redirect(conn: Connection, project_id: int, signature: str, group_id: int, actor: str) -> None:
    stmt = dialect_insert(conn)(REDIRECTS).values(project_id=project_id, signature=signature, group_id=group_id,
                                           actor=actor[:200], created_at=utcnow())
    conn.execute(stmt.on_conflict_do_update(index_elements=["project_id", "signature"], set_={
        "group_id": group_id, "actor": stmt.excluded.actor, "created_at": stmt.excluded.created_at}))


def _home(conn: Connection, merged_into: Row[Any], signature: str) -> int:
    """The group of signature (no longer merged anywhere), created empty when it has none."""
    home = conn.execute(select(GROUPS.c.id).where(GROUPS.c.project_id == merged_into.project_id,
                                                  GROUPS.c.signature == signature)).scalar_one_or_none()
    if home is None:
        return conn.execute(GROUPS.insert().values(
            project_id=merged_into.project_id, signature=signature, signature_version=merged_into.signature_version,
            component=merged_into.component, first_seen=merged_into.first_seen, last_seen=merged_into.last_seen,
            crash_count=0, tester_count=0).returning(GROUPS.c.id)).scalar_one()
    conn.execute(update(GROUPS).where(GROUPS.c.id == home).values(merged_into=None))
    return home
