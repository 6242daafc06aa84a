"""Sign-in (issue 6) on both backends: users made with the real CLI, the session cookie (signed,
HttpOnly, SameSite), CSRF on the forms and on cookie-authenticated JSON writes, logout, roles
(viewers read, admins change), API tokens, and sessions ending when their user goes."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from pydantic import ValidationError
from test_tickets import crash as add_crash

from schemas.settings import Settings
from server import cli
from server.app import session_middleware
from server.dashboard.login import SESSION_COOKIE, safe_next
from storage import users
from workers.triage_jobs import evaluate_group

from conftest import REPO, Crashd, _crashd, make_settings

CACHE_SECONDS = 0.3  # auth_cache_seconds here: long enough to be used, short enough to wait out
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def crashd(backend: str, services: tuple[str | None, str | None], tmp_path: Path) -> Iterator[Crashd]:
    """The conftest crashd (both backends), with user and token lookups remembered briefly."""
    pg, redis = services
    yield from _crashd(backend, make_settings(backend, tmp_path, pg, redis, auth_cache_seconds=CACHE_SECONDS))


def run_cli(c: Crashd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str,
            stdin: str = "") -> tuple[int, str, str]:
    """`crashd <argv>` in this process against c's database, with stdin; (status, out, err)."""
    monkeypatch.setenv("CRASHD_DATA_DIR", str(c.settings.data_dir))
    if c.settings.database_url:
        monkeypatch.setenv("CRASHD_DATABASE_URL", c.settings.database_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def make_user(crashd: Crashd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """make_user(name, role, password): `crashd user create NAME --role ROLE` with the password on stdin."""
    def make(name: str, role: str, password: str) -> None:
        status, out, err = run_cli(crashd, monkeypatch, capsys, "user", "create", name, "--role", role,
                                   stdin=password + "\n")
        assert status == 0, err
    return make


def csrf_of(c: Crashd, path: str = "/login") -> str:
    """The CSRF token in the form of the page at path (GET)."""
    page = c.client.get(path)
    assert page.status_code == 200, page.text
    return CSRF_INPUT.search(page.text).group(1)


def login(c: Crashd, name: str, password: str, next_path: str = "/") -> httpx.Response:
    """Fill in and post the sign-in form as a browser would."""
    form = {"username": name, "password": password, "csrf_token": csrf_of(c), "next": next_path}
    return c.client.post("/login", data=form, follow_redirects=False)


def session_cookie(response: httpx.Response) -> str:
    """The Set-Cookie header of the session cookie."""
    [cookie] = [h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "=")]
    return cookie


def a_ticket(c: Crashd) -> int:
    """A real P1 ticket: a group hit by three testers (the `spreading` rule)."""
    for tester in ("t1", "t2", "t3"):
        group_id = add_crash(c, tester, "1.0")
    [opened] = evaluate_group(c.state.ctx, group_id)
    return opened.ticket_id


# -- users and the CLI ------------------------------------------------------------------------


def test_user_create_through_the_real_command_hashes_with_argon2id(crashd: Crashd) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    env.update(CRASHD_DATA_DIR=str(crashd.settings.data_dir), CRASHD_DATABASE_URL=crashd.settings.database_url or "")
    def crashd_cli(*argv: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server.cli", *argv], input=stdin, cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)

    done = crashd_cli("user", "create", "alice", "--role", "admin", stdin="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    user = users.get_user(crashd.state.ctx.engine, name="alice")
    assert user is not None and user.role == "admin"
    assert user.password_hash.startswith("$argon2id$") and "correct horse" not in user.password_hash
    assert crashd_cli("user", "create", "alice", "--role", "viewer", stdin="x\n").returncode == 1
    empty = crashd_cli("user", "create", "bob", "--role", "viewer", stdin="\n")
    assert empty.returncode == 1 and "empty password" in empty.stderr
    assert users.get_user(crashd.state.ctx.engine, name="bob") is None
    assert crashd_cli("user", "create", "carol", "--role", "owner", stdin="pw\n").returncode == 2  # argparse choices
    assert crashd_cli("user", "create", "no spaces", "--role", "viewer", stdin="pw\n").returncode == 1
    listed = crashd_cli("user", "list", "--json", stdin="")
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["alice"]


def test_user_delete_and_password_report_unknown_names(crashd: Crashd, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(crashd, monkeypatch, capsys, "user", "delete", "nobody")[0] == 1
    assert run_cli(crashd, monkeypatch, capsys, "user", "password", "nobody", stdin="pw\n")[0] == 1
    assert run_cli(crashd, monkeypatch, capsys, "token", "revoke", "nothing")[0] == 1


# -- signing in and out ---------------------------------------------------------------------


def test_login_sets_a_signed_httponly_samesite_cookie_and_goes_to_next(crashd: Crashd, make_user) -> None:
    make_user("alice", "admin", "s3cret-pass")
    assert crashd.client.get("/api/groups").status_code == 401
    done = login(crashd, "alice", "s3cret-pass", next_path="/groups?project=game")
    assert (done.status_code, done.headers["location"]) == (303, "/groups?project=game")
    cookie = session_cookie(done).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # development
    assert crashd.client.get("/api/groups").status_code == 200
    assert users.get_user(crashd.state.ctx.engine, name="alice").last_login_at is not None


def test_wrong_password_and_unknown_user_look_the_same(crashd: Crashd, make_user) -> None:
    make_user("alice", "admin", "s3cret-pass")
    wrong = login(crashd, "alice", "not-it")
    unknown = login(crashd, "mallory", "not-it")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Wrong user name or password." in response.text
    assert wrong.text.replace("alice", "mallory") == unknown.text  # same page but for the echoed name
    assert crashd.client.get("/api/groups").status_code == 401


def test_login_without_the_csrf_token_is_refused(crashd: Crashd, make_user) -> None:
    make_user("alice", "admin", "s3cret-pass")
    csrf_of(crashd)  # the browser has a session with a token, but the post does not carry it
    for token in (None, "forged-token"):
        form = {"username": "alice", "password": "s3cret-pass", "next": "/"} | ({"csrf_token": token} if token else {})
        response = crashd.client.post("/login", data=form, follow_redirects=False)
        assert response.status_code == 403
    assert crashd.client.get("/api/groups").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)", "", "/ok\r\nSet-Cookie: x=1"])
def test_next_never_leaves_the_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_login_redirect_refuses_other_hosts(crashd: Crashd, make_user) -> None:
    make_user("alice", "viewer", "s3cret-pass")
    done = login(crashd, "alice", "s3cret-pass", next_path="//evil.example/steal")
    assert (done.status_code, done.headers["location"]) == (303, "/")
    assert 'value="/"' in crashd.client.get("/login?next=https://evil.example").text


def test_session_is_rotated_at_login(crashd: Crashd, make_user) -> None:
    make_user("alice", "admin", "s3cret-pass")
    before = csrf_of(crashd)
    login(crashd, "alice", "s3cret-pass")
    after = csrf_of(crashd)
    assert after != before  # a token planted before sign-in is worthless after it


def test_logout_needs_the_csrf_token_then_ends_the_session(crashd: Crashd, make_user) -> None:
    make_user("alice", "admin", "s3cret-pass")
    login(crashd, "alice", "s3cret-pass")
    assert crashd.client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False).status_code == 403
    assert crashd.client.get("/api/groups").status_code == 200  # still signed in
    done = crashd.client.post("/logout", data={"csrf_token": csrf_of(crashd)}, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/login")
    assert crashd.client.get("/api/groups").status_code == 401


def test_tampered_cookie_is_ignored(crashd: Crashd, make_user) -> None:
    make_user("alice", "viewer", "s3cret-pass")
    make_user("root", "admin", "other-pass")
    login(crashd, "alice", "s3cret-pass")
    value = crashd.client.cookies[SESSION_COOKIE]
    payload, timestamp, signature = value.rsplit(".", 2)
    data = json.loads(base64.b64decode(payload))
    assert data["user"] == "alice"
    forged = base64.b64encode(json.dumps(data | {"user": "root"}).encode()).decode()
    crashd.client.cookies.set(SESSION_COOKIE, f"{forged}.{timestamp}.{signature}")
    assert crashd.client.get("/api/groups").status_code == 401
    crashd.client.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert crashd.client.get("/api/groups").status_code == 401


# -- roles ----------------------------------------------------------------------------------


def test_viewer_reads_but_may_not_change(crashd: Crashd, make_user) -> None:
    ticket_id = a_ticket(crashd)
    make_user("vera", "viewer", "s3cret-pass")
    login(crashd, "vera", "s3cret-pass")
    assert crashd.client.get("/api/groups?project=game").status_code == 200
    assert crashd.client.get(f"/api/tickets/{ticket_id}").status_code == 200
    refused = crashd.client.post(f"/api/tickets/{ticket_id}/resolve", json={"fixed_in": "1.1"},
                                 headers={"X-CSRF-Token": csrf_of(crashd)})
    assert (refused.status_code, refused.json()) == (403, {"detail": "admin role required"})
    assert crashd.client.get(f"/api/tickets/{ticket_id}", headers=crashd.admin).json()["state"] == "open"


def test_admin_session_writes_json_only_with_the_csrf_header(crashd: Crashd, make_user) -> None:
    ticket_id = a_ticket(crashd)
    make_user("alice", "admin", "s3cret-pass")
    login(crashd, "alice", "s3cret-pass")
    bare = crashd.client.post(f"/api/tickets/{ticket_id}/resolve", json={"fixed_in": "1.1"})
    assert (bare.status_code, bare.json()) == (403, {"detail": "csrf token missing or wrong"})
    done = crashd.client.post(f"/api/tickets/{ticket_id}/resolve", json={"fixed_in": "1.1"},
                              headers={"X-CSRF-Token": csrf_of(crashd)})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "resolved"


def test_no_credentials_and_a_wrong_token_keep_the_401(crashd: Crashd) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = crashd.client.post("/api/tickets/1/resolve", headers=headers)
        assert (response.status_code, response.json()) == (401, {"detail": "admin bearer token required"})
    assert crashd.client.get("/api/groups", headers=crashd.admin).status_code == 200  # the admin token


# -- API tokens -----------------------------------------------------------------------------


def test_api_tokens_create_use_and_revoke(crashd: Crashd, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ticket_id = a_ticket(crashd)
    status, out, err = run_cli(crashd, monkeypatch, capsys, "token", "create", "grafana", "--role", "viewer")
    assert status == 0 and "shown once" in err
    viewer = {"Authorization": f"Bearer {out.strip()}"}
    status, out, _ = run_cli(crashd, monkeypatch, capsys, "token", "create", "ci-bot", "--role", "admin")
    admin = {"Authorization": f"Bearer {out.strip()}"}
    rows = users.list_tokens(crashd.state.ctx.engine)
    assert [r.name for r in rows] == ["ci-bot", "grafana"]
    assert all(out.strip() not in r.token_sha256 and len(r.token_sha256) == 64 for r in rows)  # only a hash

    assert crashd.client.get("/api/groups?project=game", headers=viewer).status_code == 200
    refused = crashd.client.post(f"/api/tickets/{ticket_id}/resolve", json={"fixed_in": "1.1"}, headers=viewer)
    assert (refused.status_code, refused.json()) == (403, {"detail": "admin role required"})
    done = crashd.client.post(f"/api/tickets/{ticket_id}/resolve", json={"fixed_in": "1.1", "by": "someone-else"},
                              headers=admin)
    assert done.status_code == 200, done.text  # no CSRF header: bearer tokens are not sent by browsers
    assert done.json()["history"][-1]["actor"] == "user:ci-bot"  # a named token is named in the history

    assert run_cli(crashd, monkeypatch, capsys, "token", "revoke", "grafana")[0] == 0
    time.sleep(CACHE_SECONDS + 0.1)
    assert crashd.client.get("/api/groups", headers=viewer).status_code == 401
    assert crashd.client.get("/api/groups", headers=admin).status_code == 200


def test_uploader_token_is_made_for_one_project_and_uploads_only(crashd: Crashd, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: `crashd token create NAME --role uploader --project P` prints a token once; it
    uploads symbols to P's store and proves nothing anywhere else."""
    status, out, err = run_cli(crashd, monkeypatch, capsys, "token", "create", "ci-symbols", "--role", "uploader",
                               "--project", crashd.project.name)
    assert status == 0 and "shown once" in err and f"for project {crashd.project.name!r}" in err
    token = out.strip()
    assert token.startswith(users.TOKEN_PREFIX) and token not in run_cli(crashd, monkeypatch, capsys, "token",
                                                                         "list")[1]
    listed = json.loads(run_cli(crashd, monkeypatch, capsys, "token", "list", "--json")[1])
    assert (listed["role"], listed["project_id"]) == ("uploader", crashd.project.id)
    for argv, why in [(("--role", "uploader"), "needs --project"), (("--role", "triager"), "needs --project"),
                      (("--role", "viewer", "--security"), "needs --project"),
                      (("--role", "uploader", "--project", "no-such-game"), "no project 'no-such-game'")]:
        status, _, err = run_cli(crashd, monkeypatch, capsys, "token", "create", "another", *argv)
        assert status == 1 and why in err, (argv, err)
    with pytest.raises(SystemExit):  # a person never gets the role
        run_cli(crashd, monkeypatch, capsys, "user", "create", "bob", "--role", "uploader", stdin="s3cret-pass\n")

    sym = b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 libtiny.so\nFUNC 1000 10 0 f\n"
    uploaded = crashd.client.post(f"/api/{crashd.project.id}/symbols/", content=sym,
                                  headers={"Authorization": f"Bearer {token}"})
    assert uploaded.status_code == 200, uploaded.text
    bearer = {"Authorization": f"Bearer {token}"}
    assert crashd.client.get("/api/groups", headers=bearer).status_code == 401
    assert crashd.client.get("/", headers=bearer, follow_redirects=False).status_code == 303  # to /login


# -- sessions end with their user -----------------------------------------------------------


def test_session_ends_when_the_user_is_deleted(crashd: Crashd, make_user, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    make_user("alice", "admin", "s3cret-pass")
    login(crashd, "alice", "s3cret-pass")
    assert crashd.client.get("/api/groups").status_code == 200
    assert run_cli(crashd, monkeypatch, capsys, "user", "delete", "alice")[0] == 0
    time.sleep(CACHE_SECONDS + 0.1)
    assert crashd.client.get("/api/groups").status_code == 401
    make_user("alice", "admin", "s3cret-pass")  # the same name and password again: a new salt
    time.sleep(CACHE_SECONDS + 0.1)
    assert crashd.client.get("/api/groups").status_code == 401


def test_session_ends_when_the_password_changes(crashd: Crashd, make_user, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    make_user("alice", "admin", "s3cret-pass")
    login(crashd, "alice", "s3cret-pass")
    status, _, _ = run_cli(crashd, monkeypatch, capsys, "user", "password", "alice", stdin="n3w-pass\n")
    assert status == 0
    time.sleep(CACHE_SECONDS + 0.1)
    assert crashd.client.get("/api/groups").status_code == 401
    assert login(crashd, "alice", "s3cret-pass").status_code == 401
    assert login(crashd, "alice", "n3w-pass").status_code == 303


# -- settings -------------------------------------------------------------------------------


def test_development_session_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).resolve_session_secret()
    assert len(first) >= 32 and Settings(data_dir=tmp_path).resolve_session_secret() == first
    assert (tmp_path / "session-secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", ["changeme", "too-short-secret"])
def test_production_refuses_a_placeholder_session_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="CRASHD_SESSION_SECRET"):
        Settings(environment="production", admin_token="a" * 32, session_secret=secret)


def test_production_needs_a_session_secret_and_sets_secure_cookies(tmp_path: Path) -> None:
    settings = Settings(environment="production", admin_token="a" * 32, data_dir=tmp_path)
    with pytest.raises(ValueError, match="CRASHD_SESSION_SECRET"):
        settings.resolve_session_secret()
    settings.session_secret = "s" * 40
    assert session_middleware(settings).kwargs["https_only"] is True
    assert session_middleware(Settings(data_dir=tmp_path, secure_cookies=True)).kwargs["https_only"] is True


def test_serve_refuses_production_without_a_session_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    env.update(CRASHD_DATA_DIR=str(tmp_path), CRASHD_ENVIRONMENT="production", CRASHD_ADMIN_TOKEN="a" * 32)
    done = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "CRASHD_SESSION_SECRET" in done.stderr and "Traceback" not in done.stderr


def test_failed_sign_ins_are_throttled_per_name_and_address(crashd: Crashd, make_user) -> None:
    """After 10 failures in the window, even the right password gets 429 until it ends; other
    names are unaffected. Counted in Redis with RQ, in memory without."""
    make_user("alice", "admin", "s3cret-pass")
    make_user("bob", "viewer", "b0b-pass")
    start = time.time() // 900 * 900 + 1
    crashd.state.sign_ins.clock = lambda: start
    assert [login(crashd, "alice", f"guess-{i}").status_code for i in range(10)] == [401] * 10
    refused = login(crashd, "alice", "s3cret-pass")
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert refused.headers["Retry-After"] == "899"
    assert login(crashd, "bob", "b0b-pass").status_code == 303
    crashd.state.sign_ins.clock = lambda: start + 900  # the next window
    assert login(crashd, "alice", "s3cret-pass").status_code == 303


def test_sign_in_throttle_counts_are_shared_through_redis(redis_url: str) -> None:
    from server.dashboard.signin_throttle import SignInThrottle

    prefix = f"crashd-test-{uuid.uuid4().hex[:8]}"
    one, two = (SignInThrottle(limit=2, redis_url=redis_url, prefix=prefix, clock=lambda: 1801.0) for _ in range(2))
    one.failed("Alice", "10.0.0.1")
    two.failed("alice", "10.0.0.1")  # names compare without case
    assert one.blocked("alice", "10.0.0.1") == 899 and two.blocked("ALICE", "10.0.0.1") == 899
    assert one.blocked("alice", "10.0.0.2") is None
