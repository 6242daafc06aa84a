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
