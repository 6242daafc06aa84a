"""Per-project roles (issue 15, docs/auth.md): a viewer of project A never sees project B.

Two projects with a crash (and its attachment), groups, a ticket, a feedback report (and its
screenshot) and a symbol file each. The walk takes every GET route of /api/openapi.json with a
path parameter and every dashboard page with one: a viewer of A (signed in, and with a token)
gets 404 for B's objects (and 200 for A's), lists never hold B's rows, and ``?project=B`` is
404. A triager of A acts on A's tickets and groups and gets 404 for B's; a viewer of A gets 403.
"""

from __future__ import annotations

import argparse
import io
import re
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from schemas.tables import Attachment, Crash, Project, utcnow
from server.cli.users import cmd_user_create, cmd_user_grant
from server.dashboard.routes import ROUTES as PAGES
from storage import queries, users
from storage.db import session
from storage.groups import Grouping, assign_group
from workers.triage_jobs import evaluate_group

from conftest import Crashd
from dashboard_world import PASSWORD, csrf_of
from uploads import multipart

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
PARAM = re.compile(r"{(\w+)(?::\w+)?}")
# Routes for symbol uploaders (tokens of role uploader or admin), which no reader may call in
# any project: a reader of A gets the same refusal for A's objects as for B's.
UPLOADER_ONLY = {"/api/{project}/symbols/v1/symbols/{debug_file}/{debug_id}"}
# A value for a required query parameter that is not a build ("1.0" is): /api/facets' field.
REQUIRED = {"field": "build"}


@dataclass
class Seeded:
    """One project's objects; ``marks`` are strings only its rows contain."""

    project: Project
    crash_id: str
    group_id: int
    other_group_id: int
    ticket_id: int
    feedback_id: str
    debug_file: str
    debug_id: str
    marks: tuple[str, ...]

    def params(self, path: str) -> dict[str, str]:
        """The path parameters of one of this project's objects for path."""
        name = "screenshot" if path.startswith("/api/feedback/") else "game.log"
        values = {"crash_id": self.crash_id, "group_id": str(self.group_id), "ticket_id": str(self.ticket_id),
                  "feedback_id": self.feedback_id, "debug_file": self.debug_file,
                  "debug_id": f"{self.debug_id}:checkStatus" if path in UPLOADER_ONLY else self.debug_id,
                  "project": str(self.project.id), "name": name}
        return {key: values[key] for key in PARAM.findall(path)}


def a_crash(c: Crashd, project: Project, signature: str, tester: str, attachment: bytes | None = None) -> tuple[str, int]:
    """A processed crash of the project counted in its group, with a log attachment when given."""
    row = Crash(crash_id=str(uuid.uuid4()), project_id=project.id, status="processed", submitted_via="minidump",
                build="1.0", tester_id=tester, minidump_key=f"dumps/{uuid.uuid4()}", minidump_size=4,
                minidump_sha256="0" * 64, annotations_key="a", received_at=utcnow(), signature=signature)
    c.state.ctx.blobs.put_bytes(row.minidump_key, b"MDMP")
    with session(c.state.ctx.engine) as s:
        s.add(row)
        s.flush()  # the crash row before its attachment's (a foreign key)
        if attachment is not None:
            key = f"attachments/{row.crash_id}/game.log"
            c.state.ctx.blobs.put_bytes(key, attachment)
            s.add(Attachment(crash_id=row.crash_id, name="game.log", filename="game.log", content_type="text/plain",
                             size=len(attachment), sha256="0" * 64, blob_key=key))
        s.commit()
    assert project.id is not None
    group_id = assign_group(c.state.ctx.engine, grouping=Grouping(
        row.crash_id, project.id, signature, "1", "game", "SIGSEGV", "Linux", row.received_at))
    return row.crash_id, group_id


def seed(c: Crashd, project: Project, tag: str, debug_id: str) -> Seeded:
    """A project's crash (three testers: a P1 ticket), a second group, feedback and symbols."""
    signature = f"{tag}_signature_crash"
    crash_id, group_id = a_crash(c, project, signature, "t1", attachment=f"{tag} log line\n".encode())
    for tester in ("t2", "t3"):
        a_crash(c, project, signature, tester)
    [opened] = evaluate_group(c.state.ctx, group_id)
    _, other_group_id = a_crash(c, project, f"{tag}_signature_other", "t1")
    content, ctype = multipart({"message": f"{tag} feedback text", "category": "ui", "tester_id": "t1"},
                               [("screenshot", "shot.png", PNG, "image/png")])
    sent = c.client.post(f"/api/{project.id}/feedback/?key={project.ingest_key}", content=content,
                         headers={"Content-Type": ctype})
    assert sent.status_code == 200, sent.text
    debug_file = f"lib{tag}.so"
    sym = f"MODULE Linux x86_64 {debug_id} {debug_file}\nFUNC 1000 20 0 {tag}_function\n".encode()
    uploaded = c.client.post(f"/api/{project.id}/symbols/", content=sym, headers={"Content-Type": "text/plain", **c.admin})
    assert uploaded.status_code == 200, uploaded.text
    return Seeded(project, crash_id, group_id, other_group_id, opened.ticket_id, sent.json()["id"], debug_file,
                  debug_id, (crash_id, signature, f"{tag}_signature_other", f"{tag} feedback text", debug_file,
                             sent.json()["id"]))


@dataclass
class World:
    a: Seeded
    b: Seeded


@pytest.fixture
def world(crashd: Crashd) -> World:
    other = queries.create_project(crashd.state.ctx.engine, name="zeta-isolated")
    return World(seed(crashd, crashd.project, "alpha", "0123456789ABCDEF0123456789ABCDEF0"),
                 seed(crashd, other, "zeta", "FEDCBA9876543210FEDCBA98765432100"))


def person(c: Crashd, monkeypatch: pytest.MonkeyPatch, name: str, *roles: tuple[str, Project]) -> TestClient:
    """A new browser-like client signed in as a new global viewer with these roles in projects
    (``crashd user grant``)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cmd_user_create(c.settings, argparse.Namespace(name=name, role="viewer")) == 0
    for role, project in roles:
        args = argparse.Namespace(name=name, project=project.name, role=role, security=False)
        assert cmd_user_grant(c.settings, args) == 0
    client = TestClient(c.client.app)
    token = csrf_of(client.get("/login?next=/").text)
    response = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token, "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    client.headers["X-CSRF-Token"] = csrf_of(client.get("/").text)
    return client


def token_client(c: Crashd, name: str, role: str, project: Project) -> TestClient:
    """A client with a per-project API token (``crashd token create --project``)."""
    _, token = users.create_token(c.state.ctx.engine, name=name, role=role, project_id=project.id)
    return TestClient(c.client.app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def viewers(crashd: Crashd, world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, TestClient]]:
    yield {"session": person(crashd, monkeypatch, "vera", ("viewer", world.a.project)),
           "token": token_client(crashd, "grafana-a", "viewer", world.a.project)}


def get_routes(c: Crashd) -> list[tuple[str, dict]]:
    """(path, operation) of every GET route in /api/openapi.json."""
    document = c.client.get("/api/openapi.json", headers=c.admin).json()
    return [(path, ops["get"]) for path, ops in document["paths"].items() if "get" in ops]


def fill(path: str, seeded: Seeded) -> str:
    values = seeded.params(path)
    return PARAM.sub(lambda m: values[m.group(1)], path)


def test_a_viewer_of_a_gets_404_for_every_object_of_b(crashd: Crashd, world: World,
                                                      viewers: dict[str, TestClient]) -> None:
    routes = [path for path, _ in get_routes(crashd) if PARAM.search(path)]
    pages = [r.path for r in PAGES if isinstance(r, Route) and "GET" in (r.methods or ()) and PARAM.search(r.path)]
    assert len(routes) >= 8 and len(pages) >= 5, (routes, pages)  # the walk covers what the app has
    for how, client in viewers.items():
        for path in routes + (pages if how == "session" else []):
            asked = fill(path, world.b)
            own, other = client.get(fill(path, world.a)), client.get(asked)
            if path in UPLOADER_ONLY:  # no reader may call it: the same refusal for both projects
                assert other.status_code == own.status_code and own.status_code in (401, 403), (how, path)
                continue
            assert own.status_code in (200, 303), (how, path, own.status_code, own.text[:300])
            assert other.status_code == 404, (how, path, other.status_code, other.text[:300])
            # a 404 page may repeat the id asked for, nothing else of B's
            assert not any(mark in other.text for mark in world.b.marks if mark not in asked), (how, path)
    assert len(routes) + len(pages) >= 13


def test_lists_never_hold_rows_of_b(crashd: Crashd, world: World, viewers: dict[str, TestClient]) -> None:
    lists = [(path, op) for path, op in get_routes(crashd) if not PARAM.search(path)]
    pages = [r.path for r in PAGES if isinstance(r, Route) and "GET" in (r.methods or ()) and not PARAM.search(r.path)]
    for how, client in viewers.items():
        for path, op in lists:
            takes_project = any(p["name"] == "project" for p in op.get("parameters", []))
            required = "".join(f"&{p['name']}={REQUIRED.get(p['name'], '1.0')}" for p in op.get("parameters", [])
                               if p["in"] == "query" and p["name"] != "project"  # compare's base and target
                               and (p.get("required") or p["name"] in ("base", "target")))  # (optional too)
            own = client.get(f"{path}?project={world.a.project.name}{required}" if takes_project else path)
            assert own.status_code == 200, (how, path, own.text[:300])
            assert not any(mark in own.text for mark in world.b.marks), (how, path)
            if takes_project:  # another project's filter: as if it did not exist
                for ref in (world.b.project.name, str(world.b.project.id)):
                    assert client.get(f"{path}?project={ref}{required}").status_code == 404, (how, path, ref)
                unfiltered = client.get(path)
                assert unfiltered.status_code in (200, 400) and not any(m in unfiltered.text for m in world.b.marks)
        for path in pages if how == "session" else []:
            for query in ("", f"?project={world.b.project.name}"):
                page = client.get(path + query)
                assert page.status_code in (200, 404), (path, query)
                assert not any(mark in page.text for mark in world.b.marks), (path, query)
    groups = viewers["token"].get("/api/groups").json()["groups"]
    assert {g["signature"] for g in groups} == {"alpha_signature_crash", "alpha_signature_other"}
    assert [t["id"] for t in viewers["session"].get("/api/tickets").json()["tickets"]] == [world.a.ticket_id]


def test_a_triager_of_a_acts_in_a_only(crashd: Crashd, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    triagers = {"session": person(crashd, monkeypatch, "tess", ("triager", world.a.project)),
                "token": token_client(crashd, "bot-a", "triager", world.a.project)}
    api = triagers["token"]
    assert api.post(f"/api/tickets/{world.b.ticket_id}/resolve", json={"fixed_in": "1.1"}).status_code == 404
    assert api.post(f"/api/groups/{world.b.other_group_id}/merge", json={"into": world.b.group_id}).status_code == 404
    assert api.post(f"/api/groups/{world.a.other_group_id}/merge", json={"into": world.b.group_id}).status_code == 404
    assert api.post(f"/api/groups/{world.b.group_id}/unmerge", json={"signature": "x"}).status_code == 404
    done = api.post(f"/api/tickets/{world.a.ticket_id}/resolve", json={"fixed_in": "1.1"})
    assert done.status_code == 200 and done.json()["state"] == "resolved", done.text
    assert done.json()["history"][-1]["actor"] == "user:bot-a"
    merged = api.post(f"/api/groups/{world.a.other_group_id}/merge", json={"into": world.a.group_id})
    assert merged.status_code == 200, merged.text

    browser = triagers["session"]
    token = browser.headers["X-CSRF-Token"]
    assert browser.post(f"/tickets/{world.b.ticket_id}/reopen", data={"csrf_token": token}).status_code == 404
    assert browser.post(f"/crashes/{world.b.crash_id}/reprocess", data={"csrf_token": token}).status_code == 404
    assert browser.post(f"/groups/{world.b.other_group_id}/merge",
                        data={"csrf_token": token, "into": str(world.b.group_id)}).status_code == 404
    reopened = browser.post(f"/tickets/{world.a.ticket_id}/reopen", data={"csrf_token": token}, follow_redirects=False)
    assert reopened.status_code == 303, reopened.text
    assert "btn-resolve" in browser.get(f"/groups/{world.a.group_id}").text  # the buttons show for a triager
    unmerged = browser.post(f"/groups/{world.a.group_id}/unmerge",
                            data={"csrf_token": token, "signature": "alpha_signature_other"}, follow_redirects=False)
    assert unmerged.status_code == 303, unmerged.text
    admin_view = crashd.client.get(f"/api/tickets/{world.b.ticket_id}", headers=crashd.admin).json()
    assert admin_view["state"] == "open"  # B's ticket never moved


def test_a_viewer_of_a_may_not_act_in_a(crashd: Crashd, world: World, viewers: dict[str, TestClient]) -> None:
    for how, client in viewers.items():
        refused = client.post(f"/api/tickets/{world.a.ticket_id}/resolve", json={"fixed_in": "1.1"})
        assert (refused.status_code, refused.json()) == (403, {"detail": "admin role required"}), how
        merge = client.post(f"/api/groups/{world.a.other_group_id}/merge", json={"into": world.a.group_id})
        assert merge.status_code == 403, how
    browser = viewers["session"]
    token = browser.headers["X-CSRF-Token"]
    assert browser.post(f"/tickets/{world.a.ticket_id}/resolve", data={"csrf_token": token}).status_code == 403
    assert browser.post(f"/crashes/{world.a.crash_id}/reprocess", data={"csrf_token": token}).status_code == 403
    assert "btn-resolve" not in browser.get(f"/groups/{world.a.group_id}").text


def test_a_triager_of_b_only_reads_a_project_it_views(crashd: Crashd, world: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Roles are per project: triager in B and viewer in A resolves in B, gets 403 in A."""
    client = person(crashd, monkeypatch, "mixed", ("viewer", world.a.project), ("triager", world.b.project))
    refused = client.post(f"/api/tickets/{world.a.ticket_id}/resolve", json={"fixed_in": "1.1"})
    assert (refused.status_code, refused.json()) == (403, {"detail": "triager role required"})
    done = client.post(f"/api/tickets/{world.b.ticket_id}/resolve", json={"fixed_in": "1.1"})
    assert done.status_code == 200, done.text


def test_global_roles_keep_every_project(crashd: Crashd, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A global viewer without grants (as before grants existed) and the admin read both projects."""
    everyone = person(crashd, monkeypatch, "old-viewer")
    for client, headers in ((everyone, {}), (crashd.client, crashd.admin)):
        for seeded in (world.a, world.b):
            assert client.get(f"/api/crashes/{seeded.crash_id}", headers=headers).status_code == 200
            assert client.get(f"/api/groups?project={seeded.project.name}", headers=headers).status_code == 200
        text = client.get("/api/groups", headers=headers).text
        assert "alpha_signature_crash" in text and "zeta_signature_crash" in text
