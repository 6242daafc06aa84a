"""What the server remembers for a few seconds instead of asking the database on every
request: projects by ingest key (every upload), users and API tokens (every API call and
page) and live dashboard sessions. One ExpiringCache serves all three.

A leaf of server/: it imports nothing of its own package, so server/state.py and
server/auth.py can both use it without an import circle.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from sqlalchemy.engine import Engine

from schemas.tables import Project
from storage import grants, queries, users, web_sessions

K = TypeVar("K")
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """key -> value, each entry forgotten ttl_seconds after it was put (or at an explicit
    time). Bounded: when max_entries are held the whole cache is dropped, which costs a
    database round trip per key, never memory. Thread-safe for the server's thread pool."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[V, float]] = {}

    def lookup(self, key: K) -> tuple[bool, V | None]:
        """(True, value) while key's entry is live, else (False, None)."""
        hit = self._entries.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return True, hit[0]
        return False, None

    def put(self, key: K, value: V, until: float | None = None) -> None:
        """Remember value for key until the monotonic time until (default: ttl_seconds from now)."""
        expires = time.monotonic() + self.ttl_seconds if until is None else until
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (value, expires)

    def get_or_load(self, key: K, load: Callable[[], V], *, keep: Callable[[V], bool] = lambda _: True) -> V:
        """The live value of key, else load() (remembered when keep(value))."""
        found, value = self.lookup(key)
        if found:
            return value  # type: ignore[return-value]  # a live entry holds a V
        loaded = load()
        if keep(loaded):
            self.put(key, loaded)
        return loaded


class ProjectKeys:
    """Projects by ingest key, remembered for a few seconds: every upload needs one, and a
    database round trip per upload showed up in bench/ingest.py profiles."""

    TTL_SECONDS = 10.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: ExpiringCache[str, Project | None] = ExpiringCache(self.TTL_SECONDS)

    def cached(self, ingest_key: str | None) -> Project | None:
        """The remembered project of ingest_key, without asking the database (None: not
        remembered)."""
        found, project = self._cache.lookup(ingest_key) if ingest_key else (False, None)
        return project if found else None

    def get(self, ingest_key: str) -> Project | None:
        """The project of ingest_key (None when unknown; unknown keys are not cached)."""
        return self._cache.get_or_load(ingest_key, lambda: queries.project_by_key(self.engine, ingest_key=ingest_key),
                                       keep=lambda project: project is not None)


def password_fingerprint(password_hash: str) -> str:
    """A short digest of a password hash, kept in the session cookie: a new password (or a
    user deleted and created again, which gets a new salt) no longer matches it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Known:
    """A user or API token as the database last said: name, role and, for a user, the
    fingerprint of the password hash (empty for tokens); for an uploader token, its project;
    its per-project grants (storage/grants.py)."""

    name: str
    role: str
    fingerprint: str = ""
    project_id: int | None = None
    grants: tuple[grants.Grant, ...] = ()


class Credentials:
    """Users by name and API tokens by digest, remembered for ``ttl_seconds``: principal() runs
    on every API request and page, from async handlers, so it must not query every time. A
    deleted user or revoked token stops working after at most ttl_seconds."""

    def __init__(self, engine: Engine, ttl_seconds: float) -> None:
        self.engine = engine
        self._cache: ExpiringCache[str, Known | None] = ExpiringCache(ttl_seconds)

    def user(self, name: str) -> Known | None:
        """The user called name (None when unknown; misses are cached too, since a deleted
        user's browser keeps sending its cookie)."""
        return self._cache.get_or_load("user:" + name, lambda: self._load_user(name))

    def token(self, token: str) -> Known | None:
        """The API token whose secret is token (None when unknown; misses are not cached, so
        guessing cannot fill the cache and a new token works at once)."""
        return self._cache.get_or_load("token:" + users.token_digest(token), lambda: self._load_token(token),
                                       keep=lambda known: known is not None)

    def _load_user(self, name: str) -> Known | None:
        user = users.get_user(self.engine, name=name)
        if user is None:
            return None
        return Known(user.name, user.role, password_fingerprint(user.password_hash),
                     grants=grants.user_grants(self.engine, user_name=user.name))

    def _load_token(self, token: str) -> Known | None:
        row = users.token_by_secret(self.engine, token=token)
        if row is None or row.id is None:
            return None
        return Known(row.name, row.role, project_id=row.project_id,
                     grants=grants.token_grants(self.engine, token_id=row.id))


class LiveSessions:
    """Which session ids are live (storage/web_sessions.py), remembered for ``ttl_seconds``
    like Credentials: session_user() runs on every page. A session ended in this process is
    refused at once; one ended elsewhere (another server process, ``crashd user password``)
    after at most ttl_seconds. The cookie is signed, so only ids this server made arrive here:
    guessing cannot fill the memory."""

    def __init__(self, engine: Engine, ttl_seconds: float) -> None:
        self.engine = engine
        self._cache: ExpiringCache[str, str | None] = ExpiringCache(ttl_seconds)

    def start(self, user_name: str, lifetime_seconds: float) -> str:
        """A new session id for user_name, live for lifetime_seconds."""
        return web_sessions.create(self.engine, user_name=user_name, lifetime_seconds=lifetime_seconds)

    def user(self, session_id: str) -> str | None:
        """The user name of a live session, or None (unknown, revoked or expired)."""
        return self._cache.get_or_load(web_sessions.session_digest(session_id),
                                       lambda: web_sessions.live_user(self.engine, session_id=session_id))

    def end(self, session_id: str) -> None:
        """Revoke the session, here at once and in the database for every other process."""
        self._cache.put(web_sessions.session_digest(session_id), None, until=float("inf"))  # never live again
        web_sessions.revoke(self.engine, session_id=session_id)
