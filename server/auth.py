"""Who is calling: ingest keys for crash clients; for the API and the dashboard the admin
bearer token, API tokens (``crashd token create``) and signed-in users (session cookie).

Passwords are hashed with Argon2id; the session cookie is signed by Starlette's
SessionMiddleware (installed in server/app.py) and carries a CSRF token and the id of a
server-side session (storage/web_sessions.py) that sign-out revokes (docs/auth.md).
"""

from __future__ import annotations

import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request

from server.access_rules import Principal as Principal  # re-exported: handlers use auth.Principal
from server.access_rules import may_anywhere
from server.caches import Credentials, Known, LiveSessions
from server.state import ServerState
from storage import users

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


# --- passwords -----------------------------------------------------------------------------

# argon2-cffi's defaults are RFC 9106's second recommended profile: Argon2id, t=3, 64 MiB,
# p=4 (about 0.1 s per hash here). Stored hashes carry their parameters, so raising them later
# still verifies old hashes.
PASSWORDS = PasswordHasher()
_DUMMY_HASH: list[str] = []  # made on first use: a hash to verify against for unknown users


def hash_password(password: str) -> str:
    """The Argon2id hash of password in PHC string form (``$argon2id$v=19$m=...``)."""
    return PASSWORDS.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when password matches password_hash. With None (an unknown user) a dummy hash is
    verified anyway, so the answer takes as long as for a real user and does not reveal names."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(PASSWORDS.hash(secrets.token_urlsafe(16)))
    try:
        return PASSWORDS.verify(password_hash or _DUMMY_HASH[0], password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# --- CSRF -----------------------------------------------------------------------------------

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _session(request: Request) -> dict | None:
    """The request's session dict, or None when SessionMiddleware is not installed."""
    return request.session if "session" in request.scope else None


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (every form carries it as ``csrf_token``;
    JSON calls with the session cookie send it as ``X-CSRF-Token``). Empty without sessions."""
    store = _session(request)
    if store is None:
        return ""
    if not store.get("csrf"):
        store["csrf"] = secrets.token_urlsafe(32)
    return store["csrf"]


def check_csrf(request: Request, submitted: str | None) -> bool:
    """True when submitted is the session's CSRF token (constant-time compare)."""
    store = _session(request)
    expected = store.get("csrf") if store is not None else None
    if not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


def credentials(state: ServerState) -> Credentials:
    """The state's Credentials cache (made here when a ServerState was built without one)."""
    if state.credentials is None:
        state.credentials = Credentials(state.ctx.engine, state.settings.auth_cache_seconds)
    return state.credentials


def live_sessions(state: ServerState) -> LiveSessions:
    """The state's LiveSessions (made here on first use)."""
    if state.live_sessions is None:
        state.live_sessions = LiveSessions(state.ctx.engine, state.settings.auth_cache_seconds)
    return state.live_sessions


# --- sessions --------------------------------------------------------------------------------


def start_session(request: Request, state: ServerState, user: Known, *, lifetime_seconds: float) -> None:
    """Sign user in: a new server-side session (storage/web_sessions.py) whose random id goes
    in the cookie, with the name, the password fingerprint and a new CSRF token. Old contents
    are dropped (and their session ended), so a token planted before sign-in is useless: no
    session fixation."""
    store = request.session
    if store.get("sid"):
        live_sessions(state).end(str(store["sid"]))
    store.clear()
    session_id = live_sessions(state).start(user.name, lifetime_seconds)
    store.update({"sid": session_id, "user": user.name, "fp": user.fingerprint,
                  "csrf": secrets.token_urlsafe(32)})


def end_session(request: Request, state: ServerState) -> None:
    """Sign out: the session is revoked server-side (a copy of the cookie kept from before
    no longer works anywhere), emptied, and its cookie deleted."""
    if request.session.get("sid"):
        live_sessions(state).end(str(request.session["sid"]))
    request.session.clear()


def session_user(request: Request, state: ServerState) -> Known | None:
    """The signed-in user of the session cookie, or None. A cookie without a live server-side
    session (signed out, expired, from before sessions were kept, its user deleted or given a
    new password) or naming an old password is forgotten."""
    store = _session(request)
    name = store.get("user") if store is not None else None
    if store is None or not name:
        return None
    sid = str(store.get("sid") or "")
    known = credentials(state).user(name) if sid and live_sessions(state).user(sid) == name else None
    if known is None or not hmac.compare_digest(known.fingerprint, str(store.get("fp", ""))):
        for field in ("sid", "user", "fp"):
            store.pop(field, None)
        return None
    return known


# --- who may read and who may change (issue 6) -------------------------------------------
# Contract used by every JSON endpoint and dashboard page; callers only use these names.


def principal(request: Request, state: ServerState) -> Principal | None:
    """The caller of request, or None when it proves nothing.

    A bearer token decides alone (the admin token, else an API token; a wrong one is None even
    beside a valid cookie); without one, the session cookie's user. An uploader or deployer
    token is None here too: it proves nothing to the API or the dashboard (symbol_uploader()
    and release_deployer() take them).
    """
    token = bearer_token(request)
    if token is not None:
        who = token_principal(state, token)
        return who if who is not None and who.role not in users.ONE_PROJECT_ROLES else None
    user = session_user(request, state)
    return Principal(user.name, user.role, "session", grants=user.grants) if user else None


CALLER = "crashd.principal"  # where caller() keeps the principal in the request's scope


def caller(request: Request, state: ServerState) -> Principal | None:
    """principal(), worked out once per request (the access wrappers, then the handler and the
    project filters, all ask)."""
    if CALLER not in request.scope:
        request.scope[CALLER] = principal(request, state)
    return request.scope[CALLER]


def token_principal(state: ServerState, token: str) -> Principal | None:
    """Who token is: the admin token (constant-time compare), else an API token; None when neither."""
    if hmac.compare_digest(token.encode(), state.admin_token.encode()):
        return Principal("admin", "admin", "admin-token")
    known = credentials(state).token(token)
    return Principal(known.name, known.role, "api-token", known.project_id, known.grants) if known else None


def symbol_uploader(request: Request, state: ServerState) -> Principal | None:
    """Who may upload symbols: an admin (the admin token, an admin API token, or a session with
    the CSRF header) or an uploader token. Tokens come as ``Authorization: Bearer`` or, for
    clients that can only set the URL (Breakpad's symupload), as ``?key=``. None otherwise:
    no credentials, a viewer, or an ingest key (which must never write symbols)."""
    token = bearer_token(request) or request.query_params.get("key")
    if token is None:
        return principal(request, state) if can_write(request, state) else None
    who = token_principal(state, token)
    return who if who is not None and who.role in ("admin", users.UPLOADER) else None


def release_deployer(request: Request, state: ServerState) -> Principal | None:
    """Who may post releases (docs/releases.md): a global admin (the admin token, an admin API
    token, or a session with the CSRF header) or a deployer token (bearer only; its project is
    checked by the handler). None otherwise: no credentials, any other role, an ingest key."""
    token = bearer_token(request)
    if token is None:
        return principal(request, state) if can_write(request, state) else None
    who = token_principal(state, token)
    return who if who is not None and who.role in ("admin", users.DEPLOYER) else None


def can_read(request: Request, state: ServerState) -> bool:
    """True for any signed-in user or valid token (viewers included; uploader tokens not)."""
    return principal(request, state) is not None


def can_write(request: Request, state: ServerState) -> bool:
    """True for global admins only (uploads through the API).

    A JSON call (``/api/...``) that changes something with the session cookie must also send
    the session's CSRF token as ``X-CSRF-Token``. Dashboard forms are checked by their
    handlers: ``check_csrf(request, form.get("csrf_token"))``.
    """
    return refusal(request, state, write=True) is None


def refusal(request: Request, state: ServerState, *, write: bool | str) -> tuple[int, str] | None:
    """Why a JSON endpoint refuses request: ``(401, "admin bearer token required")`` without
    credentials; for a write (``write=True``: global admins), ``(403, "admin role required")``
    for anyone else; for ``write="triage"`` (ticket actions, merge), the same 403 for a caller
    who is a triager or admin in no project (the handler then checks the object's project);
    ``(403, "csrf token missing or wrong")`` for a cookie-authenticated write without
    X-CSRF-Token; else None."""
    who = caller(request, state)
    if who is None:
        return 401, "admin bearer token required"
    if not write:
        return None
    if not (may_anywhere(who, "triage") if write == "triage" else who.is_admin):
        return 403, "admin role required"
    if who.via == "session" and request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
        if not check_csrf(request, request.headers.get(CSRF_HEADER)):
            return 403, "csrf token missing or wrong"
    return None
