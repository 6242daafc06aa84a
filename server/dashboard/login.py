"""Signing in and out of the dashboard: GET/POST /login, POST /logout (docs/auth.md).

Users are made with ``crashd user create``; the session lives in a signed cookie
(SessionMiddleware, installed by server/app.py) that names the user and carries a CSRF token
and the id of a server-side session: signing out revokes it (server/auth.py).
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server import auth
from server.caches import Known, password_fingerprint
from server.dashboard import pages
from server.state import ServerState, state_of
from storage import users

log = logging.getLogger(__name__)

SESSION_COOKIE = "crashd_session"
SESSION_MAX_AGE_SECONDS = 7 * 24 * 3600  # a week after signing in, sign in again
BAD_CREDENTIALS = "Wrong user name or password."
BAD_CSRF = "The form had expired. Please try again."
TOO_MANY = "Too many failed sign-ins: try again in {minutes} min."
MAX_FIELD_CHARS = 1024  # longer names or passwords are refused before Argon2 spends time on them


def safe_next(target: str | None) -> str:
    """target when it is a path on this server, else ``/``: ``next=https://evil.example`` and
    ``next=//evil.example`` (a scheme-relative URL, i.e. another host) must not redirect away.
    Backslashes are refused too: browsers read ``/\\evil.example`` as ``//evil.example``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(ch) < 0x20 for ch in target):  # no header splitting through a newline
        return "/"
    return target


def _form_page(request: Request, *, next_path: str, error: str | None, status_code: int,
               username: str = "") -> Response:
    """The sign-in form (login.html)."""
    context = {"next": next_path, "error": error, "username": username}
    return pages.render(request, "login.html", context, status_code=status_code)


async def login_page(request: Request) -> Response:
    """GET /login?next=/path: the sign-in form."""
    return _form_page(request, next_path=safe_next(request.query_params.get("next")), error=None, status_code=200)


def _authenticate(state: ServerState, name: str, password: str) -> Known | None:
    """The user when name and password match, else None; as slow for unknown names as for
    known ones (a dummy hash is verified), so timing does not tell which names exist."""
    user = users.get_user(state.ctx.engine, name=name) if name else None
    # verify first, always: `user is None or ...` would skip the dummy hash for unknown names
    if not auth.verify_password(user.password_hash if user else None, password) or user is None:
        return None
    users.record_login(state.ctx.engine, name=user.name)
    return Known(user.name, user.role, password_fingerprint(user.password_hash))


async def login_submit(request: Request) -> Response:
    """POST /login (username, password, csrf_token, next): 303 to next on success; the form
    again with 401 on a wrong name or password, 403 without the session's CSRF token."""
    state = state_of(request)
    form = await request.form()
    next_path = safe_next(str(form.get("next") or ""))
    name, password = str(form.get("username") or "").strip(), str(form.get("password") or "")
    if not auth.check_csrf(request, str(form.get(auth.CSRF_FIELD) or "")):
        return _form_page(request, next_path=next_path, error=BAD_CSRF, status_code=403, username=name)
    # the peer, or the client a CRASHD_TRUSTED_PROXIES proxy names (uvicorn, set by `crashd serve`)
    address = request.client.host if request.client else "?"
    wait = await run_in_threadpool(state.sign_ins.blocked, name, address)
    if wait is not None:
        log.warning("sign-in of %r from %s throttled for %d s", name[:100], address, wait)
        response = _form_page(request, next_path=next_path, error=TOO_MANY.format(minutes=-(-wait // 60)),
                              status_code=429, username=name)
        response.headers["Retry-After"] = str(wait)
        return response
    user = None
    if len(name) <= MAX_FIELD_CHARS and len(password) <= MAX_FIELD_CHARS:
        user = await run_in_threadpool(_authenticate, state, name, password)
    if user is None:
        log.info("sign-in refused for %r from %s", name[:100], address)
        await run_in_threadpool(state.sign_ins.failed, name, address)
        return _form_page(request, next_path=next_path, error=BAD_CREDENTIALS, status_code=401, username=name)
    await run_in_threadpool(auth.start_session, request, state, user, lifetime_seconds=SESSION_MAX_AGE_SECONDS)
    log.info("%s signed in (%s)", user.name, user.role)
    return RedirectResponse(next_path, status_code=303)


async def logout(request: Request) -> Response:
    """POST /logout (csrf_token): ends the session; 303 to /login. 403 when the CSRF token is
    wrong and a user is signed in (a cross-site form must not sign people out)."""
    state = state_of(request)
    form = await request.form()
    if request.session.get("user") and not auth.check_csrf(request, str(form.get(auth.CSRF_FIELD) or "")):
        return _form_page(request, next_path="/", error=BAD_CSRF, status_code=403)
    await run_in_threadpool(auth.end_session, request, state)
    return RedirectResponse("/login", status_code=303)


ROUTES = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
