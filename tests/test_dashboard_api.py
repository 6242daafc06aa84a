"""The dashboard's data (storage/dashboard_queries.py) and its JSON twins: GET /api/groups
(filters, sorting, paging, sparklines), /api/groups/<id>, /api/triage and /api/symbols, on
both backends. Crashes come through the real pipeline (corpus dumps) where that is cheap, and
otherwise through storage.groups.assign_group, the same counting code the pipeline runs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from schemas.tables import utcnow
from storage import dashboard_queries
from storage.groups import CRASHES, Grouping, assign_group, record_missing_symbols
from storage.tickets import EVENTS, TICKETS

from conftest import Crashd

SEGV = "linux-x64-generated-crashpad-segv-O0"
UNAUTHORIZED = {"detail": "admin bearer token required"}


def add_crash(crashd: Crashd, signature: str, at: datetime, *, build: str = "1.0", tester: str | None = "t1",
              platform: str = "Linux", component: str | None = "game") -> tuple[str, int]:
    """A processed crash counted in the group of signature; returns (crash_id, group_id)."""
    crash_id = str(uuid.uuid4())
    engine = crashd.state.ctx.engine
    with engine.begin() as conn:
        conn.execute(CRASHES.insert().values(
            crash_id=crash_id, project_id=crashd.project.id, status="processed", received_at=at, updated_at=at,
            submitted_via="minidump", build=build, tester_id=tester, minidump_key=f"k/{crash_id}", minidump_size=1,
            minidump_sha256="0" * 64, annotations_key=f"a/{crash_id}", annotations={}))
    group_id = assign_group(engine, grouping=Grouping(crash_id, crashd.project.id, signature, "1", component, None,
                                                      platform, at))
    return crash_id, group_id


def add_ticket(crashd: Crashd, group_id: int, state: str, priority: str, due_at: datetime,
               fixed_in: str | None = None, title: str = "t") -> int:
    with crashd.state.ctx.engine.begin() as conn:
        ticket_id = conn.execute(TICKETS.insert().values(
            project_id=crashd.project.id, group_id=group_id, priority=priority, state=state, title=title,
            rule="spreading", builds_at_firing=[], due_at=due_at, fixed_in=fixed_in, created_at=utcnow(),
            updated_at=utcnow()).returning(TICKETS.c.id)).scalar_one()
        conn.execute(EVENTS.insert().values(ticket_id=ticket_id, at=utcnow(), actor="rule:spreading",
                                            action="opened", details={}))
    return ticket_id


def get(crashd: Crashd, path: str, status: int = 200) -> dict:
    response = crashd.client.get(path, headers=crashd.admin)
    assert response.status_code == status, response.text
    return response.json()


def signatures(crashd: Crashd, query: str) -> list[str]:
    return [g["signature"] for g in get(crashd, f"/api/groups?{query}")["groups"]]


# -- the groups table -----------------------------------------------------------------------


@pytest.fixture
def three_groups(crashd: Crashd) -> dict[str, int]:
    now = utcnow()
    alpha = [add_crash(crashd, "alpha", now - delta, build=b, tester=t)[1] for delta, b, t in
             ((timedelta(hours=1), "1.0", "t1"), (timedelta(days=2), "1.1", "t2"), (timedelta(days=5), "1.0", "t3"))]
    beta = add_crash(crashd, "beta", now - timedelta(days=10), build="2.0", platform="Windows NT", component="engine")[1]
    gamma = [add_crash(crashd, "gamma", now - delta, tester="t4")[1]
             for delta in (timedelta(minutes=30), timedelta(hours=3))]
    add_ticket(crashd, alpha[0], "open", "P0", now + timedelta(hours=5))
    add_ticket(crashd, beta, "resolved", "P1", now, fixed_in="2.1")
    return {"alpha": alpha[0], "beta": beta, "gamma": gamma[0]}


def test_groups_sorting_and_paging(crashd: Crashd, three_groups: dict[str, int]) -> None:
    assert signatures(crashd, "project=game") == ["alpha", "gamma", "beta"]  # testers, then crashes
    assert signatures(crashd, "sort=last_seen") == ["gamma", "alpha", "beta"]
    assert signatures(crashd, "sort=last_seen&order=asc") == ["beta", "alpha", "gamma"]
    assert signatures(crashd, "sort=first_seen") == ["gamma", "alpha", "beta"]
    assert signatures(crashd, "sort=crash_count") == ["alpha", "gamma", "beta"]
    assert signatures(crashd, "sort=build_count") == ["alpha", "gamma", "beta"]
    assert signatures(crashd, "sort=signature") == ["alpha", "beta", "gamma"]
    assert signatures(crashd, "sort=signature&order=desc") == ["gamma", "beta", "alpha"]
    page = get(crashd, "/api/groups?sort=signature&limit=2&offset=1")
    assert ([g["signature"] for g in page["groups"]], page["total"], page["limit"], page["offset"]) == (
        ["beta", "gamma"], 3, 2, 1)
    assert get(crashd, "/api/groups?offset=10")["groups"] == [] and get(crashd, "/api/groups?offset=10")["total"] == 3
    assert get(crashd, "/api/groups?limit=5000")["limit"] == 1000  # cut, as before


def test_groups_filters_and_fields(crashd: Crashd, three_groups: dict[str, int]) -> None:
    assert signatures(crashd, "component=game") == ["alpha", "gamma"]
    assert signatures(crashd, "platform=Windows%20NT") == ["beta"]
    assert signatures(crashd, "status=open") == ["alpha"]
    assert signatures(crashd, "status=resolved") == ["beta"]
    assert signatures(crashd, "status=none") == ["gamma"]
    assert signatures(crashd, "status=verified") == []
    assert signatures(crashd, "since=24h&sort=signature") == ["alpha", "gamma"]
    by_build = get(crashd, "/api/groups?build=1.1")
    assert [(g["signature"], g["build_crash_count"], g["crash_count"]) for g in by_build["groups"]] == [("alpha", 1, 3)]
    assert by_build["total"] == 1
    alpha = get(crashd, "/api/groups?status=open")["groups"][0]
    assert alpha["id"] == alpha["group_id"] == three_groups["alpha"]
    assert {k: alpha[k] for k in ("project", "component", "crash_count", "tester_count", "build_count",
                                  "ticket_status", "ticket_priority")} == {
        "project": "game", "component": "game", "crash_count": 3, "tester_count": 3, "build_count": 2,
        "ticket_status": "open", "ticket_priority": "P0"}
    assert datetime.fromisoformat(alpha["last_seen"]).tzinfo is not None
    assert len(alpha["sparkline"]) == 14 and sum(alpha["sparkline"]) == 3
    gamma = get(crashd, "/api/groups?status=none&days=3")["groups"][0]
    assert (gamma["ticket_id"], gamma["ticket_status"], len(gamma["sparkline"])) == (None, None, 3)


@pytest.mark.parametrize("query", ["sort=bogus", "order=up", "status=closed", "limit=0", "limit=ten", "offset=-1",
                                   "days=0", "days=91", "since=yesterday",
                                   # found by fuzzing: these were 500s (SQLite OverflowError, datetime range)
                                   "offset=99999999999999999999", "since=999999d", "since=99999999999999999999h",
                                   "since=0001-01-01T00:00:00%2B01:00"])
def test_groups_bad_parameters(crashd: Crashd, query: str) -> None:
    detail = get(crashd, f"/api/groups?{query}", 400)["detail"]
    assert detail.startswith("bad query parameter: ") and query.split("=")[0] in detail


def test_sparkline_days_are_utc_days_ending_today(crashd: Crashd) -> None:
    now = datetime(2026, 3, 14, 12, 0, tzinfo=timezone.utc)
    times = ["2026-03-14T00:00:00", "2026-03-14T11:59:00", "2026-03-13T23:59:59", "2026-03-01T00:00:00",
             "2026-02-28T23:59:59", "2026-03-15T01:00:00"]
    group_id = [add_crash(crashd, "spark", datetime.fromisoformat(t).replace(tzinfo=timezone.utc))[1] for t in times][0]
    engine = crashd.state.ctx.engine
    line = dashboard_queries.list_groups_page(engine, now=now)["groups"][0]["sparkline"]
    assert line == [1] + [0] * 11 + [1, 2]  # 03-01 ... 03-13, 03-14; 02-28 and 03-15 outside
    assert dashboard_queries.list_groups_page(engine, now=now, days=2)["groups"][0]["sparkline"] == [1, 2]
    # 23:30 in New York on the 14th is the 15th in UTC: the window ends on the 15th
    new_york = datetime(2026, 3, 14, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert dashboard_queries.list_groups_page(engine, now=new_york, days=3)["groups"][0]["sparkline"] == [1, 2, 1]
    with engine.connect() as conn:
        assert dashboard_queries.sparklines(conn, group_ids=[], days=3) == {}
        assert dashboard_queries.sparklines(conn, group_ids=[group_id + 1], days=2, now=now) == {group_id + 1: [0, 0]}


def test_every_dashboard_endpoint_needs_credentials(crashd: Crashd) -> None:
    for path in ("/api/groups", "/api/groups/1", "/api/triage", "/api/symbols"):
        response = crashd.client.get(path)
        assert (response.status_code, response.json()) == (401, UNAUTHORIZED), path
        wrong = crashd.client.get(path, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401, path
    for path in ("/api/groups?project=nope", "/api/triage?project=nope", "/api/symbols?project=nope",
                 "/api/groups/999999"):
        assert crashd.client.get(path, headers=crashd.admin).status_code == 404, path


@pytest.mark.parametrize("path", ["/api/groups/99999999999999999999", "/api/triage?project=99999999999999999999",
                                  "/api/symbols?project=99999999999999999999", "/api/groups?project=%C2%B3",
                                  "/api/triage?project=%C2%B3", "/api/triage?project=3000000000"])
def test_ids_too_large_for_a_row_and_unicode_digits_are_not_found(crashd: Crashd, path: str) -> None:
    """Found by fuzzing: a project "id" past 2**63 (SQLite OverflowError), past 2**31 - 1
    (PostgreSQL: integer out of range) or of Unicode digits ("³".isdigit(), but int("³")
    fails) was a 500, not 404."""
    response = crashd.client.get(path, headers=crashd.admin)
    assert response.status_code == 404 and response.json()["detail"] in ("project not found", "group not found")


def test_largest_offset_is_an_empty_page(crashd: Crashd) -> None:
    page = get(crashd, f"/api/groups?offset={2**63 - 1}")
    assert (page["groups"], page["offset"]) == ([], 2**63 - 1)


# -- a group's page, through the pipeline ---------------------------------------------------


def upload_sessions(crashd: Crashd, build: str, count: int) -> None:
    body = [{"session_id": f"{build}-{i}", "tester_id": f"t{i}", "build": build, "started": "2026-11-25T10:00:00Z",
             "status": "exited"} for i in range(count)]
    response = crashd.client.post(f"/api/{crashd.project.id}/sessions/?sentry_key={crashd.key}", json=body)
    assert response.status_code == 200, response.text


def test_group_page_builds_rates_testers_crashes_ticket(crashd: Crashd) -> None:
    crashd.add_corpus_symbols(SEGV)
    uploaded = [crashd.upload_corpus(SEGV, guid=f"g{i}", tester_id=f"t{i}", ver=v)
                for i, v in enumerate(["1.0", "1.0", "1.1"])]
    upload_sessions(crashd, "1.0", 4)
    crashd.drain()
    group_id = crashd.crash(uploaded[0])["group_id"]
    page = get(crashd, f"/api/groups/{group_id}")
    assert (page["signature"], page["crash_count"], page["tester_count"], page["build_count"]) == ("crash_here", 3, 3, 2)
    assert [(b["build"], b["crashes"], b["crash_count"], b["sessions"], b["crash_rate"]) for b in page["builds"]] == [
        ("1.0", 2, 2, 4, 0.5), ("1.1", 1, 1, 0, None)]
    assert page["platforms"] == {"Linux": 3}
    assert sorted((t["tester_id"], t["crashes"]) for t in page["testers"]) == [("t0", 1), ("t1", 1), ("t2", 1)]
    received = [c["received_at"] for c in page["crashes"]]
    assert sorted(c["crash_id"] for c in page["crashes"]) == sorted(uploaded) and received == sorted(received, reverse=True)
    assert page["representative_crash_id"] == page["crashes"][0]["crash_id"] == page["representative_crash"]["crash_id"]
    stack = page["representative_crash"]["stack"]
    assert stack[0]["function"] == "crash_here" and stack[0]["trust"] == "context"
    assert {"trust", "inlines", "module", "module_offset", "missing_symbols"} <= stack[0].keys()
    assert all("registers" not in frame for frame in stack)
    # 3 testers within 24 h: the default rule "spreading" opened a P1 ticket by itself
    ticket = page["ticket"]
    assert (ticket["status"], ticket["priority"], page["ticket_status"]) == ("open", "P1", "open")
    assert [e["action"] for e in ticket["history"]] == ["opened"] and "resolve" in ticket["actions"]
    response = crashd.client.post(f"/api/tickets/{ticket['ticket_id']}/resolve", headers=crashd.admin,
                                  json={"fixed_in": "1.1", "by": "qa"})
    assert response.status_code == 200, response.text
    ticket = get(crashd, f"/api/groups/{group_id}?crashes=1")["ticket"]
    assert ([e["action"] for e in ticket["history"]], ticket["history"][-1]["actor"]) == (["opened", "resolved"], "user:qa")
    assert (ticket["status"], ticket["fixed_in"], "verify" in ticket["actions"]) == ("resolved", "1.1", True)
    assert len(get(crashd, f"/api/groups/{group_id}?crashes=1")["crashes"]) == 1
    assert get(crashd, f"/api/groups/{group_id}?crashes=-1", 400)["detail"].startswith("bad query parameter")


# -- the triage board -----------------------------------------------------------------------


def test_triage_board_orders_by_due_time_and_flags_overdue(crashd: Crashd) -> None:
    now = utcnow()
    old = now - timedelta(days=3)
    ids = {name: add_crash(crashd, name, old)[1] for name in ("overdue", "soon", "back_again", "fixed")}
    spreading = [add_crash(crashd, "spreading", now - timedelta(hours=1), tester=f"s{i}")[1] for i in range(3)][0]
    small = add_crash(crashd, "small_new", now - timedelta(hours=10))[1]
    add_crash(crashd, "small_new", now - timedelta(days=4))  # first seen 4 days ago now: not new
    add_crash(crashd, "aging", now - timedelta(hours=49))
    add_ticket(crashd, ids["overdue"], "open", "P1", now - timedelta(hours=2), title="game: overdue")
    add_ticket(crashd, ids["soon"], "open", "P0", now + timedelta(hours=3), title="game: soon")
    add_ticket(crashd, ids["back_again"], "regressed", "P0", now + timedelta(hours=30), title="game: back_again")
    add_ticket(crashd, ids["fixed"], "resolved", "P1", now, fixed_in="1.1", title="game: fixed")
    board = get(crashd, "/api/triage?project=game")
    assert [t["signature"] for t in board["open_tickets"]] == ["overdue", "soon", "back_again"]
    assert [t["overdue"] for t in board["open_tickets"]] == [True, False, False]
    left = [t["seconds_left"] for t in board["open_tickets"]]
    assert -7300 < left[0] < -7100 and 10700 < left[1] < 10900
    assert board["open_tickets"][0]["group_id"] == ids["overdue"] and board["open_tickets"][0]["tester_count"] == 1
    assert [t["signature"] for t in board["regressions"]] == ["back_again"]
    assert [t["signature"] for t in board["awaiting_verification"]] == ["fixed"]
    assert "summary" in board["awaiting_verification"][0]["verification"]
    assert [g["signature"] for g in board["spreading"]] == ["spreading"]
    assert spreading != small
    markdown = board["report_markdown"]
    assert markdown.startswith("# Triage report") and "## Open P0/P1 (3)" in markdown  # the regressed P0 too, as on the board
    assert "overdue by 2h" in markdown and "## Regressions (1)" in markdown and "game: fixed" in markdown


# -- symbols --------------------------------------------------------------------------------

TINY_ID = "0123456789ABCDEF0123456789ABCDEF0"


def test_symbols_page_ranks_missing_symbols_by_crashes(crashd: Crashd) -> None:
    sym = (f"MODULE Linux x86_64 {TINY_ID} libtiny.so\nINFO CODE_ID 8967452301EFCDAB\nFILE 0 tiny.c\n"
           "FUNC 1000 20 0 tiny_function\n1000 10 3 0\n1010 10 4 0\n")
    response = crashd.client.post(f"/api/{crashd.project.id}/symbols/?key={crashd.upload_token}", content=sym.encode(),
                                  headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    now = utcnow()
    (c1, g1), (c2, _), (c3, g3), (c4, _) = [add_crash(crashd, sig, now - timedelta(hours=h)) for sig, h in
                                            (("one", 4), ("one", 3), ("two", 2), ("three", 1))]
    engine = crashd.state.ctx.engine
    libs = {"liba": ("liba.so", "AAAA0"), "libb": ("libb.so", "BBBB0"), "tiny": ("libtiny.so", TINY_ID)}
    for crash_id, names in ((c1, ["liba", "libb"]), (c2, ["liba", "tiny"]), (c3, ["liba"]), (c4, ["tiny"])):
        record_missing_symbols(engine, crash_id=crash_id, modules={libs[n] for n in names})
    page = get(crashd, "/api/symbols?project=game")
    assert [(m["debug_file"], m["crashes"], m["groups"], m["uploaded"]) for m in page["missing"]] == [
        ("liba.so", 3, 2, False), ("libtiny.so", 2, 2, True), ("libb.so", 1, 1, False)]
    assert page["missing"][0]["last_seen"].startswith(str((now - timedelta(hours=2)).date()))
    [tiny] = page["files"]
    assert (tiny["debug_file"], tiny["debug_id"], tiny["format"], tiny["project"]) == (
        "libtiny.so", TINY_ID, "breakpad", "game")
    assert [m["debug_file"] for m in get(crashd, "/api/symbols?limit=1")["missing"]] == ["liba.so"]
    assert get(crashd, "/api/symbols?limit=0", 400)["detail"].startswith("bad query parameter")
    assert g1 != g3
