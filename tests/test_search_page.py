"""The search page (/search, server/dashboard/search.py) and the crash page's links to it,
through the ASGI client on both backends: the query builder's rows and the API-style query
string give the same crashes as GET /api/crashes, paging, sorting, facet bars on an absolute
axis, 400 pages naming what is wrong, escaping, and who sees what.

Crashes come in through the real upload pipeline (dumps of tests/minidump_writer.py with
annotations as form fields) and are processed, so crash_fields holds their values.
"""

from __future__ import annotations

import argparse
import html
import re
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest
from starlette.testclient import TestClient
from test_dashboard_pages import signed_in

from schemas.tables import Crash, utcnow
from server.cli.users import cmd_user_grant
from storage import queries
from storage.db import session

from conftest import Crashd
from dashboard_world import GGML, TICK, game_dump, upload_crash, upload_symbols

ODD = "!odd <b>value</b>"  # begins with an operator sign and holds markup


def seed_crashes(crashd: Crashd) -> dict[str, str]:
    """Four processed crashes: a, b (World::tick, builds 1.4.x), c, d (llama_eval_graph, 1.5.0),
    each with a gpu annotation; a has a driver_version, b a nar_model."""
    upload_symbols(crashd, crashd.client)
    ids = {
        "a": upload_crash(crashd, crashd.client, game_dump(TICK, 1), "t1", "1.4.0", gpu="RTX 3060",
                          driver_version="531.41"),
        "b": upload_crash(crashd, crashd.client, game_dump(TICK, 2), "t2", "1.4.1", gpu="RTX 3070",
                          nar_model="nar-7b"),
        "c": upload_crash(crashd, crashd.client, game_dump(GGML, 3), "t3", "1.5.0", gpu="Radeon RX 6600"),
        "d": upload_crash(crashd, crashd.client, game_dump(GGML, 4), "t1", "1.5.0", gpu=ODD),
    }
    crashd.drain()
    return ids


@pytest.fixture
def crashes(crashd: Crashd) -> dict[str, str]:
    return seed_crashes(crashd)


@pytest.fixture
def viewer(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    return signed_in(crashd, "sam", "viewer", monkeypatch)


def found(page: str) -> list[str]:
    """The crash ids of the results table, in order."""
    table = page.split('<table class="grid results">')[1].split("</table>")[0]
    return re.findall(r'<a href="/crashes/([^"]+)" title=', table)


def search(client: TestClient, query: str, status: int = 200) -> str:
    response = client.get(f"/search?{query}")
    assert response.status_code == status, (query, response.text[:800])
    assert "Traceback" not in response.text
    return response.text


def api(crashd: Crashd, query: str) -> set[str]:
    response = crashd.client.get(f"/api/crashes?{query}", headers=crashd.admin)
    assert response.status_code == 200, response.text
    return {c["crash_id"] for c in response.json()["crashes"]}


def rows(page: str) -> list[tuple[str, str, str]]:
    """The builder's rows as (field, operator, value), empty ones included."""
    fields = re.findall(r'<input name="f\d+" value="([^"]*)"', page)
    ops = re.findall(r'<select name="o\d+"[^>]*>.*?<option value="(\w+)" selected>', page, re.S)
    values = re.findall(r'<input name="v\d+" value="([^"]*)"', page)
    return [(html.unescape(f), o, html.unescape(v)) for f, o, v in zip(fields, ops, values, strict=True)]


def href(page: str, pattern: str) -> str:
    """The first link whose (unescaped) href matches pattern."""
    for link in re.findall(r'href="([^"]+)"', page):
        if re.search(pattern, html.unescape(link)):
            return html.unescape(link)
    raise AssertionError(f"no link matching {pattern}")


# -- the builder and the API-style query string ---------------------------------------------


def test_builder_rows_search_like_the_api(crashd: Crashd, crashes: dict[str, str], viewer: TestClient) -> None:
    a, b, c, d = (crashes[k] for k in "abcd")
    cases = [  # (builder rows, the API's query)
        ([("annotations.gpu", "prefix", "RTX")], "annotations.gpu=^RTX"),
        ([("annotations.gpu", "eq", "RTX 3060")], "annotations.gpu=RTX 3060"),
        ([("annotations.gpu", "contains", "tx 30")], "annotations.gpu=~tx 30"),
        ([("annotations.gpu", "eq", ODD)], f"annotations.gpu=={ODD}"),  # taken literally
        ([("annotations.gpu", "nprefix", "RTX")], "annotations.gpu=!^RTX"),
        ([("annotations.nar_model", "ncontains", "7b")], "annotations.nar_model=!~7b"),  # no field: "not" too
        ([("build", "neq", "1.5.0")], "build=!1.5.0"),
        ([("build", "eq", "1.4.0"), ("build", "eq", "1.4.1")], "build=1.4.0&build=1.4.1"),  # same field: OR
        ([("annotations.gpu", "prefix", "R"), ("build", "eq", "1.5.0")], "annotations.gpu=^R&build=1.5.0"),  # AND
        ([("signature", "contains", "llama")], "signature=llama"),
        ([("received", "ge", "24h")], "received=>=24h"),
        ([("received", "lt", "24h")], "received=<24h"),
        ([("tester_id", "raw", "!t1")], "tester_id=!t1"),  # written in the query language
    ]
    for given, query in cases:
        form = "&".join(f"f{i}={f}&o{i}={o}&v{i}={v}" for i, (f, o, v) in enumerate(given))
        form = form.replace("+", "%2B").replace(" ", "%20").replace("<", "%3C").replace(">", "%3E")
        page = search(viewer, "project=game&" + form.replace("!", "%21"))
        expected = api(crashd, "project=game&" + query.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E"))
        assert set(found(page)) == expected, (given, query)
        assert rows(page)[:len(given)] == given and rows(page)[len(given):] == [("", "eq", "")] * 2  # + 2 empty
    assert set(found(search(viewer, "project=game&f0=annotations.gpu&o0=prefix&v0=RTX"))) == {a, b}
    assert set(found(search(viewer, "f0=annotations.gpu&o0=neq&v0=RTX%203060&f1=&o1=eq&v1="))) == {b, c, d}
    assert found(search(viewer, "project=game&f0=build&o0=eq&v0=1.5.0&f1=build&o1=eq&v1=")) in ([c, d], [d, c])
    assert set(found(search(viewer, "project=game"))) == {a, b, c, d}  # no condition: every crash


def test_the_api_style_query_string_becomes_rows(crashd: Crashd, crashes: dict[str, str], viewer: TestClient) -> None:
    page = search(viewer, "project=game&annotations.gpu=RTX%203060")
    assert found(page) == [crashes["a"]]
    assert rows(page) == [("annotations.gpu", "eq", "RTX 3060"), ("", "eq", ""), ("", "eq", "")]
    page = search(viewer, "project=game&annotations.gpu==%21odd%20%3Cb%3Evalue%3C/b%3E&signature=llama&"
                          "hang_seconds=%21%3E30&received=%3E%3D7d")
    assert found(page) == [crashes["d"]]
    assert rows(page)[:4] == [("annotations.gpu", "eq", ODD), ("signature", "contains", "llama"),
                              ("hang_seconds", "raw", "!>30"), ("received", "ge", "7d")]
    # submitting the rows back gives the same crashes
    again = "&".join(f"f{i}={f}&o{i}={o}&v{i}={v}".replace("!", "%21").replace("<", "%3C").replace(">", "%3E")
                     .replace(" ", "%20").replace("=", "%3D").replace("%3D", "=", 3)
                     for i, (f, o, v) in enumerate(rows(page)[:4]))
    assert found(search(viewer, "project=game&" + again)) == [crashes["d"]]
    # each row's "remove" link is the query without it
    removed = href(page, r"^/search\?project=game&signature=~llama&hang_seconds=")
    assert set(found(search(viewer, removed.split("?", 1)[1]))) == {crashes["c"], crashes["d"]}


def test_paging_sorting_and_the_json_twin(crashd: Crashd, crashes: dict[str, str], viewer: TestClient) -> None:
    first = search(viewer, "project=game&sort=build&order=asc&limit=3")
    assert found(first)[:2] == [crashes["a"], crashes["b"]] and len(found(first)) == 3
    assert "1–3 of 4 crashes" in first and 'rel="prev"' not in first
    rest = search(viewer, href(first, r"offset=3").split("?", 1)[1])
    assert len(found(rest)) == 1 and set(found(first) + found(rest)) == set(crashes.values())
    assert "4–4 of 4" in rest and 'rel="next"' not in rest
    assert 'value="build" selected' in rest and 'value="asc" selected' in rest  # the form keeps the sort
    back = href(rest, r"offset=0")
    assert found(search(viewer, back.split("?", 1)[1])) == found(first)
    twin = href(first, r"^/api/crashes\?")
    body = crashd.client.get(twin, headers=crashd.admin).json()
    assert [c["crash_id"] for c in body["crashes"]] == found(first) and body["total"] == 4
    newest = found(search(viewer, "project=game"))
    assert newest == [crashes[k] for k in "dcba"]  # received, newest first by default
    assert len(found(search(viewer, "project=game&limit=5000"))) == 4  # cut to 1000, like the API


# -- facets ---------------------------------------------------------------------------------


def facet(page: str, field: str) -> list[tuple[str, str, str]]:
    """A facet's rows as (value, width, label)."""
    block = page.split(f'<div class="facet" data-field="{field}">')[1].split("</div>")[0]
    return [(html.unescape(v), w, html.unescape(label)) for v, w, label in re.findall(
        r'<span class="facet-value">([^<]*)</span><span class="facet-track"><span class="facet-fill" '
        r'style="width: ([\d.]+)%"></span><span class="facet-count">([^<]*)</span>', block)]


def test_facet_bars_on_an_absolute_axis(crashd: Crashd, crashes: dict[str, str], viewer: TestClient) -> None:
    page = search(viewer, "project=game")
    configured = [f.strip() for f in crashd.settings.facet_fields.split(",")]
    shown = re.findall(r'<div class="facet" data-field="([^"]+)">', page)
    assert shown == configured  # CRASHD_FACET_FIELDS, in order
    assert sorted(facet(page, "build")) == [("1.4.0", "25.0", "1 · 25.0 %"), ("1.4.1", "25.0", "1 · 25.0 %"),
                                            ("1.5.0", "50.0", "2 · 50.0 %")]
    assert ("531.41", "25.0", "1 · 25.0 %") in facet(page, "annotations.driver_version")
    assert ("missing", "75.0", "3 · 75.0 %") in facet(page, "annotations.driver_version")
    assert (ODD, "25.0", "1 · 25.0 %") in facet(page, "annotations.gpu")  # escaped, shown as text
    narrowed = search(viewer, "project=game&build=1.5.0&facet=annotations.nar_model")
    assert re.findall(r'<div class="facet" data-field="([^"]+)">', narrowed)[0] == "annotations.nar_model"
    assert facet(narrowed, "build") == [("1.5.0", "100.0", "2 · 100.0 %")]
    assert facet(narrowed, "annotations.nar_model") == [("missing", "100.0", "2 · 100.0 %")]
    # a bar adds field==value to the query (equals, literally)
    link = href(page, r"annotations\.gpu=%3D%21odd")
    assert dict(parse_qsl(urlsplit(link).query))["annotations.gpu"] == "=" + ODD
    assert found(search(viewer, urlsplit(link).query)) == [crashes["d"]]
    # in place of the field's other conditions (the same field twice is OR: it would widen)
    drilled = search(viewer, "project=game&annotations.gpu=^RTX&annotations.gpu=!Radeon%20RX%206600")
    link = href(drilled, r"annotations\.gpu=%3DRTX%203060")
    assert parse_qsl(urlsplit(link).query) == [("project", "game"), ("annotations.gpu", "!=Radeon RX 6600"),
                                               ("annotations.gpu", "=RTX 3060")]
    assert found(search(viewer, urlsplit(link).query)) == [crashes["a"]]
    picked = search(viewer, "project=game&facet=annotations.nar_model&limit=25")
    assert 'name="facet" value="annotations.nar_model"' in picked
    assert ("nar-7b", "25.0", "1 · 25.0 %") in facet(picked, "annotations.nar_model")
    assert "facet=annotations.nar_model" in href(picked, r"annotations\.nar_model=%3Dnar-7b")
    tail = search(viewer, "project=game&facet=annotations.gpu")
    other = facet(search(viewer, "project=game&facet=module"), "module")
    assert other and all(label.split(" ")[0].isdigit() for _, _, label in other)
    absent = search(viewer, "project=game&facet=annotations.none")
    assert facet(absent, "annotations.none") == [("missing", "100.0", "4 · 100.0 %")] and "No values" not in absent
    assert "No values among these crashes." in search(viewer, "project=game&build=9.9&facet=annotations.none")
    assert tail.count('data-field="annotations.gpu"') == 1  # chosen and configured: once


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("query, named", [
    ("gpu=RTX", "unknown search field 'gpu'"), ("f0=gpu&o0=eq&v0=RTX", "annotations.<key>"),
    ("f0=received&o0=eq&v0=yesterday", "received"), ("f0=&o0=eq&v0=lonely", "has no field"),
    ("f0=build&o0=bogus&v0=1", "unknown operator"), ("sort=bogus", "sort must be one of"),
    ("order=sideways", "order must be"), ("limit=x", "limit"), ("offset=-1", "offset"),
    ("facet=received", "cannot be counted"), ("facet=gpu", "facet: unknown search field"),
    ("f0=annotations.gpu&o0=gt&v0=3", "ranges"), ("f0=group&o0=eq&v0=abc", "group"),
    ("kind=crashes", "kind must be one of"),
])
def test_a_query_it_cannot_take_is_a_400_page(crashd: Crashd, crashes: dict[str, str], viewer: TestClient,
                                              query: str, named: str) -> None:
    page = search(viewer, f"project=game&{query}", status=400)
    assert '<p class="error search-error"><b>Bad query:</b>' in page and named in html.unescape(page)
    assert '<form method="get" action="/search"' in page and 'name="f0"' in page  # the form, to fix it
    assert '<table class="grid results">' not in page


def test_empty_rows_are_ignored_and_the_form_keeps_what_was_typed(crashd: Crashd, crashes: dict[str, str],
                                                                  viewer: TestClient) -> None:
    page = search(viewer, "project=game&f0=build&o0=eq&v0=&f1=&o1=prefix&v1=&f5=tester_id&o5=eq&v5=t2")
    assert found(page) == [crashes["b"]]
    assert rows(page) == [("tester_id", "eq", "t2"), ("", "eq", ""), ("", "eq", "")]
    bad = search(viewer, "project=game&f0=gpu&o0=contains&v0=RTX&sort=build", status=400)
    assert rows(bad)[0] == ("gpu", "contains", "RTX") and 'value="build" selected' in bad


# -- the crash page's links -----------------------------------------------------------------


def test_crash_page_links_every_annotation_value_to_its_crashes(crashd: Crashd, crashes: dict[str, str],
                                                                viewer: TestClient) -> None:
    page = viewer.get(f"/crashes/{crashes['d']}").text
    project = crashd.project.id
    odd = href(page, r"annotations\.gpu=")
    assert odd == f"/search?project={project}&annotations.gpu=%3D%21odd%20%3Cb%3Evalue%3C%2Fb%3E"
    assert found(search(viewer, odd.split("?", 1)[1])) == [crashes["d"]]
    build = href(page, r"&build=")
    assert build == f"/search?project={project}&build=%3D1.5.0"
    assert set(found(search(viewer, build.split("?", 1)[1]))) == {crashes["c"], crashes["d"]}
    platform = href(page, r"&platform=")
    assert set(found(search(viewer, platform.split("?", 1)[1]))) == set(crashes.values())
    for field in ("os_version", "cpu"):
        link = href(page, rf"&{field}=")
        assert crashes["d"] in found(search(viewer, link.split("?", 1)[1])), field
    assert page.count("all with this value") == len(crashd.crash(crashes["d"])["annotations"])
    a_page = viewer.get(f"/crashes/{crashes['a']}").text
    driver = href(a_page, r"annotations\.driver_version=")
    assert found(search(viewer, driver.split("?", 1)[1])) == [crashes["a"]]


def test_a_received_crash_is_found_by_its_columns_only(crashd: Crashd, viewer: TestClient) -> None:
    """Before processing, crash_fields holds nothing of a crash: its annotation and build link
    to the other crashes with the value, and a search by a column of crashes finds it."""
    row = Crash(crash_id=str(uuid.uuid4()), project_id=crashd.project.id, status="received", submitted_via="minidump",
                build="2.0.0", tester_id="t9", annotations_key="a", annotations={"gpu": "RTX 4090"}, received_at=utcnow())
    with session(crashd.state.ctx.engine) as s:
        s.add(row)
        s.commit()
    page = viewer.get(f"/crashes/{row.crash_id}").text
    assert f"/search?project={crashd.project.id}&amp;build=%3D2.0.0" in page and "&amp;platform=" not in page
    assert href(page, r"annotations\.gpu=") == f"/search?project={crashd.project.id}&annotations.gpu=%3DRTX%204090"
    assert found(search(viewer, "project=game&status=received")) == [row.crash_id]
    assert found(search(viewer, "project=game&annotations.gpu=RTX%204090")) == []


# -- the page: results, escaping, access ----------------------------------------------------


def test_results_show_the_crash_and_escape_what_clients_sent(crashd: Crashd, crashes: dict[str, str],
                                                             viewer: TestClient) -> None:
    page = search(viewer, "project=game&annotations.gpu=~odd&build=1.5.0&annotations.gpu=!RTX%203060")
    assert page.count("<script") == 1 and "<b>value" not in page
    assert "&lt;b&gt;value&lt;/b&gt;" in page
    doc = crashd.crash(crashes["d"])
    row = page.split('<table class="grid results">')[1].split("</tr>", 2)[1]
    assert f'href="/groups/{doc["group_id"]}" class="mono">llama_eval_graph</a>' in row
    assert ">1.5.0</td>" in row and ">t1</td>" in row and "comp-llama_cpp" in row and ">Linux</td>" in row
    chip = href(row, r"annotations\.gpu=%3D%21odd")  # narrows to the value: the gpu condition
    assert chip == ("/search?project=game&build=%3D1.5.0&annotations.gpu=%21%3DRTX%203060"  # it replaces
                    "&annotations.gpu=%3D%21odd%20%3Cb%3Evalue%3C%2Fb%3E")  # (its "not" stays)
    assert found(search(viewer, urlsplit(chip).query)) == [crashes["d"]]
    assert '<a href="/search" class="on">Search</a>' in page  # the nav


def test_signed_in_users_and_their_projects_only(crashd: Crashd, crashes: dict[str, str], viewer: TestClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    anonymous = TestClient(crashd.client.app)
    response = anonymous.get("/search?annotations.gpu=RTX", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fsearch%3Fannotations.gpu%3DRTX"
    other = queries.create_project(crashd.state.ctx.engine, name="other-search")
    assert set(found(search(viewer, ""))) == set(crashes.values())  # a global viewer: every project
    assert ">other-search</option>" in search(viewer, "")
    olga = signed_in(crashd, "olga", "viewer", monkeypatch)
    grant = argparse.Namespace(name="olga", project=other.name, role="viewer", security=False)
    assert cmd_user_grant(crashd.settings, grant) == 0  # a viewer of the other project only
    for query in ("", "project=game", "annotations.gpu=~R", "facet=annotations.gpu"):
        page = search(olga, query)
        assert found(page) == [] and "RTX" not in page and ">game</option>" not in page, query
