"""Who may call a JSON endpoint, checked once by a wrapper (the shape of Starlette's
``@requires`` in ``starlette/authentication.py``):

    @requires("read")
    async def list_endpoint(request: Request) -> Response: ...

A refused caller gets an HTTPException, which server/app.http_error renders as
``{"detail": ...}``: ``401 "admin bearer token required"`` (with ``WWW-Authenticate: Bearer``)
without credentials; for "write" also ``403 "admin role required"`` for a viewer and ``403
"csrf token missing or wrong"`` for a cookie without X-CSRF-Token (server/auth.refusal).
A leaf of server/api: it imports nothing of its package.
"""

from __future__ import annotations

import functools
from typing import Awaitable, Callable, Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from server.auth import refusal
from server.state import state_of

Endpoint = Callable[[Request], Awaitable[Response]]
BEARER = {"WWW-Authenticate": "Bearer"}  # RFC 7235: a 401 names the scheme it wants


def requires(access: Literal["read", "write"]) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint so that it runs only for a caller who may read (any signed-in user or
    valid token) or write (admins). Raises HTTPException(401 or 403) otherwise."""
    def decorator(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            refused = refusal(request, state_of(request), write=access == "write")
            if refused is not None:
                status, detail = refused
                raise HTTPException(status, detail, headers=BEARER if status == 401 else None)
            return await endpoint(request)
        return checked
    return decorator
