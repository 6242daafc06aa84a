"""Releases in the database (table ``releases``, docs/releases.md): one row per (project,
version, environment), made by INSERT ... ON CONFLICT DO NOTHING so that of two concurrent
posts of one release exactly one creates it (and resolves its tickets); and the claim on its
patch notes (``patch_notes_sent_at``), taken by a conditional UPDATE or with the insert
itself, so they go out once. Keyword-only functions taking an Engine, like queries.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, or_, select, update
from sqlalchemy.engine import Connection, Engine

from schemas.tables import Release, Ticket, utcnow
from storage.db import dialect_insert
from storage.groups import retrying
from storage.queries import as_utc
from triage.releases import ReleaseIn

RELEASES: Table = Release.__table__  # type: ignore[attr-defined]
TICKETS: Table = Ticket.__table__  # type: ignore[attr-defined]


def release_json(row: Any) -> dict[str, Any]:
    """A releases row as the API answers it: the commits are counted, not repeated."""
    def iso(value: datetime | None) -> str | None:
        return as_utc(value).isoformat() if value is not None else None

    return {"id": row.id, "project_id": row.project_id, "version": row.version, "environment": row.environment,
            "deployed_at": iso(row.deployed_at), "url": row.url, "commit_count": len(row.commits or []),
            "created_at": iso(row.created_at), "patch_notes_sent_at": iso(row.patch_notes_sent_at)}


def record(engine: Engine, *, project_id: int, release: ReleaseIn, claim_notes: bool) -> tuple[dict[str, Any], bool]:
    """Store the release unless (project, version, environment) is there already; returns
    (the stored release as release_json, whether this call created it). claim_notes: the new
    row's patch notes are claimed by this call in the same transaction (patch_notes_sent_at
    set), so a concurrent duplicate post finds them taken."""
    def work(conn: Connection) -> tuple[dict[str, Any], bool]:
        now = utcnow()
        row = conn.execute(dialect_insert(conn)(RELEASES).values(
            project_id=project_id, version=release.version, environment=release.environment,
            deployed_at=release.deployed_at or now, url=release.url,
            commits=[c.as_json() for c in release.commits], created_at=now,
            patch_notes_sent_at=now if claim_notes else None,
        ).on_conflict_do_nothing(index_elements=["project_id", "version", "environment"])
            .returning(*RELEASES.c)).first()
        if row is not None:
            return release_json(row), True
        found = conn.execute(select(RELEASES).where(
            RELEASES.c.project_id == project_id, RELEASES.c.version == release.version,
            RELEASES.c.environment == release.environment)).one()
        return release_json(found), False
    return retrying(f"release {release.version}", work, engine)


def claim_notes(engine: Engine, *, release_id: int) -> datetime | None:
    """Take the release's patch notes for sending: the time of the claim, or None when they
    were sent (or are being sent) already."""
    def work(conn: Connection) -> datetime | None:
        now = utcnow()
        row = conn.execute(update(RELEASES).where(RELEASES.c.id == release_id,
                                                  RELEASES.c.patch_notes_sent_at.is_(None))
                           .values(patch_notes_sent_at=now).returning(RELEASES.c.patch_notes_sent_at)).first()
        return None if row is None else as_utc(row[0])
    return retrying(f"patch notes of release {release_id}", work, engine)


def notes_claimed_at(engine: Engine, *, release_id: int) -> datetime | None:
    """When the release's patch notes were claimed (sent), or None."""
    with engine.connect() as conn:
        return as_utc(conn.execute(select(RELEASES.c.patch_notes_sent_at)
                                   .where(RELEASES.c.id == release_id)).scalar_one_or_none())


def release_notes_claim(engine: Engine, *, release_id: int) -> None:
    """Give the claim back after a failed delivery: the next post of the release sends them."""
    def work(conn: Connection) -> None:
        conn.execute(update(RELEASES).where(RELEASES.c.id == release_id).values(patch_notes_sent_at=None))
    retrying(f"patch notes of release {release_id}", work, engine)


def referenced_tickets(engine: Engine, *, project_id: int, ids: list[int],
                       external_keys: list[str]) -> list[dict[str, Any]]:
    """The project's tickets among ids or whose tracker key is among external_keys (Jira's
    ``CRASH-7``, GitHub's issue number): id, state, fixed_in, restricted, merged_into,
    external_key, external_url. One query, whatever the number of references."""
    if not ids and not external_keys:
        return []
    stmt = select(TICKETS.c.id, TICKETS.c.state, TICKETS.c.fixed_in, TICKETS.c.restricted, TICKETS.c.merged_into,
                  TICKETS.c.external_key, TICKETS.c.external_url).where(
        TICKETS.c.project_id == project_id,
        or_(TICKETS.c.id.in_(ids), TICKETS.c.external_key.in_(external_keys)))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]
