"""Dashboard sign-ins kept server-side, so that they can be ended (docs/auth.md, "Sessions").
Keyword-only functions taking an Engine, like storage/users.py.

The session cookie carries a random session id (256 bits); only its SHA-256 is stored, like
API tokens: a database dump does not hand out live sessions. A session is live while it is
neither revoked nor past ``expires_at``. (storage/sessions.py is about game sessions.)
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import ColumnElement, delete, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from schemas.tables import WebSession, utcnow
from storage.db import session


def session_digest(session_id: str) -> str:
    """The stored form of a session id: its SHA-256 in hex."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def create(engine: Engine, *, user_name: str, lifetime_seconds: float) -> str:
    """Start a session for user_name that ends after lifetime_seconds; returns the session id
    (shown to nobody but the cookie). Sessions that ended before now are deleted first."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with session(engine) as s:
        s.execute(delete(WebSession).where(col(WebSession.expires_at) < now))
        s.add(WebSession(id_sha256=session_digest(session_id), user_name=user_name, created_at=now,
                         expires_at=now + timedelta(seconds=lifetime_seconds)))
        s.commit()
    return session_id


def live_user(engine: Engine, *, session_id: str) -> str | None:
    """The user name of the session session_id, or None when it is unknown, revoked or expired."""
    with session(engine) as s:
        return s.exec(select(WebSession.user_name).where(
            WebSession.id_sha256 == session_digest(session_id), col(WebSession.revoked_at).is_(None),
            col(WebSession.expires_at) > utcnow())).first()


def revoke(engine: Engine, *, session_id: str) -> bool:
    """End the session session_id (sign-out); False when it was not live."""
    return _revoke(engine, col(WebSession.id_sha256) == session_digest(session_id)) > 0


def revoke_user(engine: Engine, *, user_name: str) -> int:
    """End every live session of user_name (new password, user deleted); how many ended."""
    return _revoke(engine, col(WebSession.user_name) == user_name)


def _revoke(engine: Engine, which: ColumnElement[bool]) -> int:
    with session(engine) as s:
        ended = s.execute(update(WebSession).where(which, col(WebSession.revoked_at).is_(None))
                          .values(revoked_at=utcnow())).rowcount  # type: ignore[attr-defined]
        s.commit()
    return int(ended)
