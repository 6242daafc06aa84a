"""Dashboard users and API tokens. Keyword-only functions taking an Engine, like queries.py.

Passwords arrive here already hashed (server/auth.py hashes them with Argon2id); API tokens are
made here, like ingest keys, and only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from schemas.tables import ApiToken, User, UserRole, utcnow
from storage import grants
from storage.db import session
from storage.queries import insert_named

ROLES = tuple(role.value for role in UserRole)
# An uploader token uploads symbols to one project and can do nothing else (docs/auth.md);
# users never have that role: a person who signs in reads crashes.
UPLOADER = "uploader"
# A deployer token posts releases (deploys) of one project and can do nothing else, like an
# uploader token (docs/releases.md): CI holds it, so it reads nothing.
DEPLOYER = "deployer"
ONE_PROJECT_ROLES = (UPLOADER, DEPLOYER)  # token roles bound to api_tokens.project_id, no grant
# A token made with ``--project`` for a project role (viewer, triager, admin) is stored with
# this role: no global role at all, its grants (storage/grants.py) say what it may do.
PROJECT_ONLY = "project"
TRIAGER = "triager"
TOKEN_ROLES = (*ROLES, TRIAGER, UPLOADER, DEPLOYER)
# A prefix lets secret scanners (GitHub's, gitleaks) recognise a leaked token.
TOKEN_PREFIX = "crashd_"
# User and token names end up in ticket histories as ``user:<name>`` (server/api/tickets.py's actor rule).
NAME = re.compile(r"^[A-Za-z0-9._@+-]{1,100}$")


def _check(name: str, role: str, roles: tuple[str, ...] = ROLES) -> None:
    """Raises ValueError unless name is 1-100 letters, digits or ``. _ @ + -`` and role is
    one of roles (a user's: ``admin`` or ``viewer``)."""
    if not NAME.match(name):
        raise ValueError(f"bad name {name!r}: use 1-100 letters, digits or . _ @ + -")
    if role not in roles:
        raise ValueError(f"role must be one of {', '.join(roles)}, not {role!r}")


# -- users ----------------------------------------------------------------------------------


def create_user(engine: Engine, *, name: str, role: str, password_hash: str) -> User:
    """Add a user. Raises ValueError for a bad name, an unknown role or a name already taken."""
    _check(name, role)
    return insert_named(engine, User(name=name, role=role, password_hash=password_hash), "user")


def get_user(engine: Engine, *, name: str) -> User | None:
    """The user called name, or None."""
    with session(engine) as s:
        return s.exec(select(User).where(User.name == name)).first()


def list_users(engine: Engine) -> list[User]:
    """Every user, by name."""
    with session(engine) as s:
        return list(s.exec(select(User).order_by(col(User.name))))


def _delete_named(engine: Engine, model: type[User] | type[ApiToken], name: str) -> bool:
    """Delete model's row called name; False when there was none."""
    with session(engine) as s:
        deleted = s.execute(delete(model).where(col(model.name) == name)).rowcount  # type: ignore[attr-defined]
        s.commit()
        return bool(deleted)


def delete_user(engine: Engine, *, name: str) -> bool:
    """Remove the user called name and its project grants; False when there was none. Its
    sessions stop working."""
    grants.forget(engine, user_names=[name])
    return _delete_named(engine, User, name)


def set_password(engine: Engine, *, name: str, password_hash: str) -> bool:
    """Replace the user's password hash (which ends its sessions); False when there is no such user."""
    with session(engine) as s:
        user = s.exec(select(User).where(User.name == name)).first()
        if user is None:
            return False
        user.password_hash = password_hash
        s.add(user)
        s.commit()
        return True


def record_login(engine: Engine, *, name: str) -> None:
    """Note the time of the user's latest sign-in."""
    with session(engine) as s:
        user = s.exec(select(User).where(User.name == name)).first()
        if user is not None:
            user.last_login_at = utcnow()
            s.add(user)
            s.commit()


# -- API tokens -----------------------------------------------------------------------------


def token_digest(token: str) -> str:
    """The stored form of an API token: hex SHA-256. The token holds 256 random bits, so a slow
    password hash would add nothing and cost a few ms per API request."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, *, name: str, role: str, project_id: int | None = None,
                 security: bool = False) -> tuple[ApiToken, str]:
    """Make a new API token; returns its row and the token itself (never stored, shown once).

    - ``uploader`` needs project_id: the one project it uploads symbols to;
    - ``deployer`` needs project_id: the one project it posts releases to;
    - ``admin`` or ``viewer`` without project_id: a global role (every project);
    - ``viewer``, ``triager`` or ``admin`` with project_id: a per-project token, stored with
      the role PROJECT_ONLY and a grant of role in that project (``security``: it sees the
      project's restricted items too).

    Raises ValueError for a bad name, an unknown role, a project missing (uploader, triager)
    or not taken (``security`` without one), or a name already taken.
    """
    _check(name, role, TOKEN_ROLES)
    if role in ONE_PROJECT_ROLES and (project_id is None or security):
        raise ValueError(f"an {role} token needs --project (and takes no --security)")
    if project_id is None and (role == TRIAGER or security):
        raise ValueError("a triager token, or one with --security, needs --project")
    per_project = project_id is not None and role not in ONE_PROJECT_ROLES
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=PROJECT_ONLY if per_project else role, token_sha256=token_digest(token),
                   project_id=None if per_project else project_id)
    row = insert_named(engine, row, "token")
    if per_project:
        assert row.id is not None and project_id is not None  # a stored row has its id
        grants.add_token_grant(engine, token_id=row.id, project_id=project_id, role=role, security=security)
    return row, token


def token_by_secret(engine: Engine, *, token: str) -> ApiToken | None:
    """The API token row whose secret is token, or None."""
    with session(engine) as s:
        return s.exec(select(ApiToken).where(ApiToken.token_sha256 == token_digest(token))).first()


def list_tokens(engine: Engine) -> list[ApiToken]:
    """Every API token (names, roles and dates; the secrets are not kept), by name."""
    with session(engine) as s:
        return list(s.exec(select(ApiToken).order_by(col(ApiToken.name))))


def revoke_token(engine: Engine, *, name: str) -> bool:
    """Delete the API token called name and its project grants; False when there was none."""
    with session(engine) as s:
        token_id = s.exec(select(ApiToken.id).where(ApiToken.name == name)).first()
    if token_id is not None:
        grants.forget(engine, token_ids=[token_id])
    return _delete_named(engine, ApiToken, name)
