"""Who may call a JSON endpoint, checked once by a wrapper (the shape of Starlette's
``@requires`` in ``starlette/authentication.py``):

    @requires("read")
    async def list_endpoint(request: Request) -> Response: ...

A refused caller gets an HTTPException, which server/app.http_error renders as
``{"detail": ...}``: ``401 "admin bearer token required"`` (with ``WWW-Authenticate: Bearer``)
without credentials; for "write" also ``403 "admin role required"`` for a viewer and ``403
"csrf token missing or wrong"`` for a cookie without X-CSRF-Token (server/auth.refusal).
``@requires("triage")`` (ticket actions, merge, unmerge) lets in whoever is a triager or
admin in some project; the handler then looks the object up and calls ``check(request,
project_id, "triage", what)``. Every handler that answers one object calls ``check(...,
"read", what)``: an object of a project the caller may not read is ``404 "<what> not
found"``, exactly as if it did not exist (docs/auth.md); one it may read but not change is
``403 "triager role required"``.
A leaf of server/api: it imports nothing of its package.
"""

from __future__ import annotations

import functools
from typing import Awaitable, Callable, Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from server.access_rules import Action, may
from server.auth import caller, refusal
from server.state import state_of

Endpoint = Callable[[Request], Awaitable[Response]]
BEARER = {"WWW-Authenticate": "Bearer"}  # RFC 7235: a 401 names the scheme it wants


def requires(access: Literal["read", "triage", "write"]) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint so that it runs only for a caller who may read (any signed-in user or
    valid token), triage (a triager or admin of some project) or write (global admins). Raises
    HTTPException(401 or 403) otherwise."""
    def decorator(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            refused = refusal(request, state_of(request), write="triage" if access == "triage" else access == "write")
            if refused is not None:
                status, detail = refused
                raise HTTPException(status, detail, headers=BEARER if status == 401 else None)
            return await endpoint(request)
        return checked
    return decorator


def check(request: Request, project_id: int | None, action: Action, what: str) -> None:
    """Let the caller go on with an object of project_id. Raises HTTPException(404, "<what>
    not found") when it may not read the project (the object's existence is not confirmed),
    HTTPException(403, "triager role required") when it may read but not do action."""
    who = caller(request, state_of(request))
    if not may(who, project_id, "read"):
        raise HTTPException(404, f"{what} not found")
    if not may(who, project_id, action):
        raise HTTPException(403, "triager role required" if action == "triage" else f"{action} role required")


def actor(request: Request) -> str:
    """The caller as a ticket's history names them: ``user:<name>`` (``user:admin`` for a
    caller the request does not name)."""
    who = caller(request, state_of(request))
    return f"user:{who.name}" if who is not None else "user:admin"
