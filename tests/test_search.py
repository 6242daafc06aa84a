"""Searching crashes by any field (GET /api/crashes, /api/facets, the crash filters of
/api/groups; docs/search.md) on both backends with real processed corpus crashes, and the
query language (storage/search_query.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from storage import queries, users
from storage.search_index import crash_fields, text_value
from storage.search_query import Condition, SearchError, parse, parse_condition

from conftest import Crashd

SEGV = "linux-x64-generated-crashpad-segv-O0"
ABORT = "linux-x64-generated-crashpad-abort-O2"


def _seed(crashd: Crashd) -> dict[str, str]:
    crashd.add_corpus_symbols(SEGV, ABORT)
    ids = {
        "a": crashd.upload_corpus(SEGV, guid="a", tester_id="t1", ver="1.4.0", gpu="RTX 3060", driver_version="531.41"),
        "b": crashd.upload_corpus(SEGV, guid="b", tester_id="t2", ver="1.4.1", gpu="RTX 3070", nar_model="nar-7b"),
        "c": crashd.upload_corpus(ABORT, guid="c", tester_id="t3", ver="1.5.0", gpu="Radeon RX 6600"),
        "d": crashd.upload_corpus(ABORT, guid="d", tester_id="t1", ver="1.5.0", gpu="RTX 3060 | Ti"),
    }
    crashd.drain()
    return ids


def _found(crashd: Crashd, query: str) -> set[str]:
    response = crashd.client.get(f"/api/crashes?project=game&{query}", headers=crashd.admin)
    assert response.status_code == 200, response.text
    return {c["crash_id"] for c in response.json()["crashes"]}


def test_search_fields_and_operators(crashd: Crashd) -> None:
    ids = _seed(crashd)
    a, b, c, d = (ids[k] for k in "abcd")
    assert _found(crashd, "annotations.gpu=RTX 3060") == {a}
    assert _found(crashd, "annotations.gpu=^RTX") == {a, b, d}
    assert _found(crashd, "annotations.gpu=~tx 30") == {a, b, d}  # substring, any case
    assert _found(crashd, "annotations.gpu=!^RTX") == {c}
    assert _found(crashd, "annotations.nar_model=!nar-7b") == {a, c, d}  # without the annotation: "not" too
    assert _found(crashd, "annotations.gpu=RTX 3060&annotations.gpu=RTX 3070") == {a, b}  # same field: OR
    assert _found(crashd, "annotations.gpu=^RTX&build=1.5.0") == {d}  # different fields: AND
    assert _found(crashd, "build=^1.4") == {a, b}
    assert _found(crashd, "build=!1.5.0") == {a, b}
    assert _found(crashd, "tester_id=t1") == {a, d}
    assert _found(crashd, "signature=crash_") == {a, b}  # signature: contains by default
    assert _found(crashd, "signature==process_item") == {c, d}
    assert _found(crashd, "platform=Linux&kind=crash&status=processed") == {a, b, c, d}
    assert _found(crashd, "os_version=~.") == {a, b, c, d}
    assert _found(crashd, "cpu=amd64") == {a, b, c, d}
    module = crashd.crash(a)["processed"]["stack_modules"][0]  # the crashing thread's top module
    assert a in _found(crashd, f"module={module}") and c not in _found(crashd, f"module=!{module}")
    assert _found(crashd, "received=>=24h") == {a, b, c, d}
    assert _found(crashd, "received=<24h") == set()
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert _found(crashd, f"received={today}") == {a, b, c, d}
    assert _found(crashd, "annotations.gpu==RTX 3060 | Ti") == {d}  # '|' is a plain character


def test_search_paging_sorting_and_groups(crashd: Crashd) -> None:
    ids = _seed(crashd)
    first = crashd.client.get("/api/crashes?project=game&sort=build&order=asc&limit=3", headers=crashd.admin).json()
    assert first["total"] == 4 and first["limit"] == 3 and len(first["crashes"]) == 3
    assert [x["build"] for x in first["crashes"]] == ["1.4.0", "1.4.1", "1.5.0"]
    rest = crashd.client.get("/api/crashes?project=game&sort=build&order=asc&limit=3&offset=3",
                             headers=crashd.admin).json()
    assert [x["crash_id"] for x in rest["crashes"]] in ([ids["c"]], [ids["d"]])
    hit = first["crashes"][0]
    assert hit["annotations"]["gpu"] == "RTX 3060" and hit["signature"] and hit["group_id"]
    groups = crashd.client.get("/api/groups?project=game&annotations.gpu=^Radeon", headers=crashd.admin).json()
    assert [g["signature"] for g in groups["groups"]] == ["process_item"]
    groups = crashd.client.get("/api/groups?project=game&build=^1.4", headers=crashd.admin).json()
    assert [g["signature"] for g in groups["groups"]] == ["crash_here"]
    both = crashd.client.get("/api/groups?project=game&build=1.4.0&build=1.5.0", headers=crashd.admin).json()
    assert {g["signature"] for g in both["groups"]} == {"crash_here", "process_item"}


@pytest.mark.parametrize("query, named", [
    ("gpu=RTX", "gpu"), ("annotations.=x", "annotations."), ("build=", "build"), ("received=yesterday", "received"),
    ("annotations.gpu=>3", "annotations.gpu"), ("kind=crashes", "kind"), ("sort=bogus", "sort"),
    ("limit=x", "limit"), ("group=abc", "group"), ("hang_seconds=>lots", "hang_seconds"),
])
def test_search_refuses_what_it_cannot_take(crashd: Crashd, query: str, named: str) -> None:
    response = crashd.client.get(f"/api/crashes?project=game&{query}", headers=crashd.admin)
    assert response.status_code == 400
    assert named in response.json()["detail"]
    groups = crashd.client.get(f"/api/groups?project=game&{query}", headers=crashd.admin)
    if not query.startswith(("sort", "limit", "build=")):  # the groups list's own sort, limit and build
        assert groups.status_code == 400 and named in groups.json()["detail"]


def test_facets(crashd: Crashd) -> None:
    ids = _seed(crashd)
    response = crashd.client.get("/api/facets?project=game&field=annotations.gpu&field=build&limit=2",
                                 headers=crashd.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 4
    gpu, build = body["facets"]
    assert gpu["field"] == "annotations.gpu" and gpu["distinct"] == 4 and len(gpu["values"]) == 2
    assert gpu["other"] == 2 and gpu["missing"] == 0
    assert build["values"][0] == {"value": "1.5.0", "count": 2}
    filtered = crashd.client.get("/api/facets?project=game&field=annotations.nar_model&tester_id=t2",
                                 headers=crashd.admin).json()
    assert filtered["total"] == 1 and filtered["facets"][0]["values"] == [{"value": "nar-7b", "count": 1}]
    group = crashd.crash(ids["a"])["group_id"]
    mods = crashd.client.get(f"/api/facets?project=game&field=module&group={group}", headers=crashd.admin).json()
    assert mods["total"] == 2 and mods["facets"][0]["missing"] is None
    module = crashd.crash(ids["a"])["processed"]["stack_modules"][0]
    assert {"value": module, "count": 2} in mods["facets"][0]["values"]
    for query in ("", "field=received", "field=gpu", "field=build&gpu=1"):
        bad = crashd.client.get(f"/api/facets?project=game&{query}", headers=crashd.admin)
        assert bad.status_code == 400, query


def test_search_stays_in_the_callers_projects(crashd: Crashd) -> None:
    _seed(crashd)
    other = queries.create_project(crashd.state.ctx.engine, name="other-search")
    _, token = users.create_token(crashd.state.ctx.engine, name="v", role="viewer", project_id=other.id)
    viewer = {"Authorization": f"Bearer {token}"}  # a viewer of another project only
    assert crashd.client.get("/api/crashes?annotations.gpu=^RTX", headers=viewer).json()["crashes"] == []
    assert crashd.client.get("/api/crashes?project=game", headers=viewer).status_code == 404
    facets = crashd.client.get("/api/facets?field=annotations.gpu", headers=viewer).json()
    assert facets["total"] == 0 and facets["facets"][0]["values"] == []
    assert crashd.client.get("/api/crashes?project=game").status_code == 401
    everything = crashd.client.get("/api/crashes?annotations.gpu=^RTX", headers=crashd.admin).json()
    assert everything["total"] == 3  # an admin without ?project=: every project


def test_query_language() -> None:
    now = datetime(2026, 12, 5, tzinfo=timezone.utc)
    assert parse_condition("annotations.gpu", "!~rtx") == Condition("annotations.gpu", "contains", "rtx", True)
    assert parse_condition("build", "==^x") == Condition("build", "eq", "=^x")  # "=" then the rest literally
    assert parse_condition("received", ">=7d", now) == Condition("received", "ge", now - timedelta(days=7))
    assert parse_condition("hang_seconds", ">30") == Condition("hang_seconds", "gt", 30.0)
    assert parse(iter([("limit", "5"), ("group", "12")]), reserved=["limit"]) == [Condition("group", "eq", 12)]
    for field, raw in (("received", "2026-12-01T10:00"), ("hang_seconds", "nan"), ("status", "done"),
                       ("module", "x" * 301), ("annotations.a b", "x")):
        with pytest.raises(SearchError):
            parse_condition(field, raw)
    with pytest.raises(SearchError):
        parse([("build", "1")] * 21)


def test_indexed_values() -> None:
    row: dict[str, Any] = {
        "annotations": {"gpu": "RTX", "vram": 8, "safe": True, "list": [1], "none": None, "": "x", "long": "y" * 400},
        "signature": "hang | nar_step", "platform": "Windows", "component": None,
        "processed": {"os_version": "10.0.19045", "cpu_arch": "amd64", "stack_modules": ["game.exe", "nar.dll"]},
    }
    pairs = crash_fields(row)
    assert ("annotations.gpu", "RTX") in pairs and ("annotations.vram", "8") in pairs
    assert ("annotations.safe", "true") in pairs and ("annotations.long", "y" * 300) in pairs
    assert not any(f in ("annotations.list", "annotations.none", "annotations.", "component") for f, _ in pairs)
    assert {("os_version", "10.0.19045"), ("cpu", "amd64"), ("module", "nar.dll"),
            ("signature", "hang | nar_step")} <= pairs
    assert text_value("a\x00b") == "ab" and text_value("") is None


def test_merged_crashes_are_found_in_their_new_group(crashd: Crashd) -> None:
    ids = _seed(crashd)
    into, other = crashd.crash(ids["a"])["group_id"], crashd.crash(ids["c"])["group_id"]
    merged = crashd.client.post(f"/api/groups/{other}/merge", json={"into": into}, headers=crashd.admin)
    assert merged.status_code == 200, merged.text
    assert _found(crashd, f"group={into}") == set(ids.values())
    gpus = crashd.client.get(f"/api/facets?project=game&field=annotations.gpu&group={into}",
                             headers=crashd.admin).json()
    assert gpus["total"] == 4 and {"value": "Radeon RX 6600", "count": 1} in gpus["facets"][0]["values"]
    assert _found(crashd, f"group={other}") == set()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migration_0018_indexes_crashes_processed_before(kind: str, tmp_path, request) -> None:
    from alembic import command
    from sqlalchemy import text

    from schemas.settings import Settings
    from storage.db import alembic_config, make_engine, migrate

    url = request.getfixturevalue("pg_database") if kind == "postgres" else None
    engine = make_engine(Settings(data_dir=tmp_path, database_url=url), pooled=False)
    if url:
        with engine.begin() as conn:  # start from an empty schema
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    command.upgrade(alembic_config(engine), "0017")
    processed = '{"os": "Linux", "cpu_arch": "amd64", "top_frames": [{"module": "libgame.so"}]}'
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (id, name, ingest_key, created_at) VALUES (1, 'p', 'k', :at)"),
                     {"at": datetime.now(timezone.utc)})
        for crash_id, status in (("c1", "processed"), ("c2", "received")):
            conn.execute(text(
                "INSERT INTO crashes (crash_id, project_id, status, received_at, updated_at, submitted_via,"
                " annotations_key, annotations, processed, signature, build, kind, attempts)"
                " VALUES (:id, 1, :status, :at, :at, 'minidump', 'k', :ann, :processed, 'crash_here', '1.0',"
                " 'crash', 0)"),
                {"id": crash_id, "status": status, "at": datetime.now(timezone.utc), "ann": '{"gpu": "RTX"}',
                 "processed": processed})
    migrate(engine)
    with engine.connect() as conn:
        rows = set(conn.execute(text("SELECT crash_id, field, value FROM crash_fields")).all())
    engine.dispose()
    assert rows == {("c1", "annotations.gpu", "RTX"), ("c1", "signature", "crash_here"), ("c1", "build", "1.0"),
                    ("c1", "kind", "crash"), ("c1", "cpu", "amd64"), ("c1", "module", "libgame.so")}


def test_facets_of_the_latest_crashes_and_substrings_from_field_values(crashd: Crashd) -> None:
    ids = _seed(crashd)
    latest = crashd.client.get("/api/facets?project=game&field=build&latest=2", headers=crashd.admin).json()
    assert latest["total"] == 4 and latest["sample"] == 2
    newest = crashd.client.get("/api/crashes?project=game&limit=2", headers=crashd.admin).json()["crashes"]
    expected: dict[str, int] = {}
    for crash in newest:
        expected[crash["build"]] = expected.get(crash["build"], 0) + 1
    assert {v["value"]: v["count"] for v in latest["facets"][0]["values"]} == expected
    assert latest["facets"][0]["missing"] == 0
    everything = crashd.client.get("/api/facets?project=game&field=build&latest=10", headers=crashd.admin).json()
    assert everything["sample"] is None and sum(v["count"] for v in everything["facets"][0]["values"]) == 4
    assert crashd.client.get("/api/facets?project=game&field=build&latest=0", headers=crashd.admin).status_code == 400
    # a substring finds its values in field_values, then their crashes; AND by INTERSECT, NOT by EXCEPT
    assert _found(crashd, "annotations.gpu=~rtx&annotations.gpu=!~ti") == {ids["a"], ids["b"]}
    assert _found(crashd, "annotations.gpu=~rtx&tester_id=t1&status=processed") == {ids["a"], ids["d"]}
    assert _found(crashd, "tester_id=!t1&status=!failed") == {ids["b"], ids["c"]}


def test_a_groups_facets_of_its_latest_crashes(crashd: Crashd) -> None:
    ids = _seed(crashd)
    group = crashd.crash(ids["c"])["group_id"]  # c and d: builds 1.5.0 both, gpus differ
    newest = crashd.client.get(f"/api/crashes?project=game&group={group}&limit=1", headers=crashd.admin).json()
    sampled = crashd.client.get(f"/api/facets?project=game&group={group}&field=annotations.gpu&field=build&latest=1",
                                headers=crashd.admin).json()
    assert sampled["total"] == 2 and sampled["sample"] == 1
    gpu, build = sampled["facets"]
    assert gpu["values"] == [{"value": newest["crashes"][0]["annotations"]["gpu"], "count": 1}]
    assert build["values"] == [{"value": "1.5.0", "count": 1}] and build["missing"] == 0
