"""Dashboard sessions kept server-side (storage/web_sessions.py, issue 11 item 3): sign-out, a
new password and a deleted user end every copy of the session cookie, on both backends."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select
from starlette.testclient import TestClient
from test_auth import CACHE_SECONDS, crashd, csrf_of, login, make_user, run_cli  # noqa: F401 (fixtures)

from schemas.tables import WebSession, utcnow
from server.app import create_app
from server.dashboard.login import SESSION_COOKIE
from storage import web_sessions
from storage.db import session

from conftest import Crashd


def signed_in(c: Crashd, make_user, name: str = "alice") -> str:
    """Make an admin called name, sign in as it, and return the session cookie's value."""
    make_user(name, "admin", "s3cret-pass")
    assert login(c, name, "s3cret-pass").status_code == 303
    assert c.client.get("/api/groups").status_code == 200
    return c.client.cookies[SESSION_COOKIE]


def replay(c: Crashd, cookie: str, path: str = "/api/groups") -> int:
    """The status of GET path with the session cookie set to cookie (a copy kept aside)."""
    c.client.cookies.clear()
    c.client.cookies.set(SESSION_COOKIE, cookie)
    return c.client.get(path, follow_redirects=False).status_code


def session_id_of(c: Crashd) -> str:
    """The server-side session id the client's cookie carries (the cookie is readable, not changeable)."""
    payload = c.client.cookies[SESSION_COOKIE].rsplit(".", 2)[0]
    return json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))["sid"]


def test_a_copy_of_the_cookie_taken_before_sign_out_is_refused(crashd: Crashd, make_user) -> None:
    kept = signed_in(crashd, make_user)
    done = crashd.client.post("/logout", data={"csrf_token": csrf_of(crashd, "/")}, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/login")
    assert replay(crashd, kept) == 401  # at once, in this process: no cache to wait out
    assert replay(crashd, kept, "/") == 303  # a dashboard page sends it to /login
    assert crashd.client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_sign_out_reaches_another_server_process_within_the_cache_time(crashd: Crashd, make_user) -> None:
    """Two server processes on one database: each remembers sessions for itself."""
    kept = signed_in(crashd, make_user)
    other_state = dataclasses.replace(crashd.state, credentials=None, live_sessions=None)
    with TestClient(create_app(crashd.settings, other_state)) as other:
        other.cookies.set(SESSION_COOKIE, kept)
        assert other.get("/api/groups").status_code == 200  # remembered there now
        crashd.client.post("/logout", data={"csrf_token": csrf_of(crashd, "/")})
        time.sleep(CACHE_SECONDS + 0.1)
        assert other.get("/api/groups").status_code == 401


def test_signing_in_again_ends_the_previous_session(crashd: Crashd, make_user) -> None:
    first = signed_in(crashd, make_user)
    first_id = session_id_of(crashd)
    assert login(crashd, "alice", "s3cret-pass").status_code == 303
    assert session_id_of(crashd) != first_id
    assert web_sessions.live_user(crashd.state.ctx.engine, session_id=first_id) is None
    assert replay(crashd, first) == 401


@pytest.mark.parametrize("command", [("user", "password", "alice"), ("user", "delete", "alice")])
def test_new_password_or_deleted_user_revokes_every_session_server_side(
        crashd: Crashd, make_user, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: tuple[str, ...]) -> None:
    make_user("alice", "admin", "s3cret-pass")
    ids = []
    for _ in range(2):  # two browsers
        crashd.client.cookies.clear()
        login(crashd, "alice", "s3cret-pass")
        ids.append(session_id_of(crashd))
    kept = crashd.client.cookies[SESSION_COOKIE]
    engine = crashd.state.ctx.engine
    assert [web_sessions.live_user(engine, session_id=i) for i in ids] == ["alice", "alice"]
    assert run_cli(crashd, monkeypatch, capsys, *command, stdin="n3w-pass\n")[0] == 0
    assert [web_sessions.live_user(engine, session_id=i) for i in ids] == [None, None]
    time.sleep(CACHE_SECONDS + 0.1)
    assert replay(crashd, kept) == 401


def test_an_expired_session_is_refused_and_purged_at_the_next_sign_in(crashd: Crashd, make_user) -> None:
    kept = signed_in(crashd, make_user)
    sid = session_id_of(crashd)
    engine = crashd.state.ctx.engine
    with engine.begin() as conn:
        conn.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    time.sleep(CACHE_SECONDS + 0.1)
    assert replay(crashd, kept) == 401
    login(crashd, "alice", "s3cret-pass")
    with session(engine) as s:
        digests = set(s.exec(select(WebSession.id_sha256)))
    assert web_sessions.session_digest(sid) not in digests and len(digests) == 1
