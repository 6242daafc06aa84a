"""Who is calling: ingest keys for crash clients, a bearer token for the admin API."""

from __future__ import annotations

import hmac

from starlette.requests import Request

INGEST_KEY_PARAMS = ("sentry_key", "key")


def ingest_key(request: Request) -> str | None:
    """The ingest key from ``?sentry_key=``, ``?key=`` or ``X-Sentry-Auth: Sentry sentry_key=``.

    Breakpad's symupload and Crashpad can only set the URL, so the query string comes first;
    sentry-native sends the header (``Sentry sentry_version=7, sentry_key=abc, ...``).
    """
    for param in INGEST_KEY_PARAMS:
        value = request.query_params.get(param)
        if value:
            return value
    for header in ("x-sentry-auth", "authorization"):
        value = request.headers.get(header, "")
        if value.lower().startswith("sentry "):
            for item in value[len("sentry ") :].split(","):
                key, _, val = item.strip().partition("=")
                if key.strip() == "sentry_key" and val.strip():
                    return val.strip()
    return None


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_admin(request: Request, admin_token: str) -> bool:
    """True when the request carries the admin bearer token (constant-time compare)."""
    token = bearer_token(request)
    return token is not None and hmac.compare_digest(token.encode(), admin_token.encode())


# --- who may read and who may change (issue 6) -------------------------------------------
# Contract used by every JSON endpoint and dashboard page. The sign-in work (users, API
# tokens, session cookie) extends `principal`; callers only use these three names.

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import ServerState


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``role`` is ``admin`` or ``viewer``; ``via`` is how they proved it
    (``admin-token``, ``api-token`` or ``session``)."""

    name: str
    role: str
    via: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def principal(request: Request, state: "ServerState") -> Principal | None:
    """The caller of request, or None when it proves nothing."""
    if is_admin(request, state.admin_token):
        return Principal("admin", "admin", "admin-token")
    return None


def can_read(request: Request, state: "ServerState") -> bool:
    """True for any signed-in user or valid token (viewers included)."""
    return principal(request, state) is not None


def can_write(request: Request, state: "ServerState") -> bool:
    """True for admins only (ticket actions, reprocess, uploads through the API)."""
    who = principal(request, state)
    return who is not None and who.is_admin
