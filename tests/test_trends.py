"""Trends (issue 17, docs/rates.md): storage/trends.py's daily series per build, GET /api/trends,
the trend charts (server/dashboard/trend_chart.py) and the group page's builds without a crash
of the group ("0 in 300 sessions"), on SQLite and PostgreSQL.

The world: build 0.9 played long ago; 1.0 played two days ago (10 sessions of 30 minutes) and
yesterday (4 sessions, 2 of them timed at an hour); 1.1 today (300 sessions, untimed). Group
``alpha`` crashed in 1.0 twice two days ago and once yesterday; group ``stuck`` hung once in 1.0
yesterday; group ``beta`` crashed once in 1.1 today; a handled error in 1.0 counts nowhere.
Feedback: one report about an alpha crash (1.0, yesterday), one about nothing (1.1, today).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import pytest
from starlette.testclient import TestClient

from schemas.tables import Crash, Feedback
from server.dashboard.trend_chart import nice_top, rate_position, trend_chart
from storage import queries, trends
from storage.db import session
from storage.groups import Grouping, assign_group

from conftest import Crashd
from dashboard_world import PASSWORD, create_user, csrf_of


def today() -> date:
    """Today (UTC) when asked: a constant taken at import went stale when the suite crossed
    midnight, and every test here failed."""
    return datetime.now(timezone.utc).date()


def at(days_ago: int, hour: int = 12) -> datetime:
    """hour o'clock UTC, days_ago days before today."""
    return datetime.combine(today() - timedelta(days=days_ago), time(hour), tzinfo=timezone.utc)


@dataclass
class World:
    alpha: int
    stuck: int
    beta: int


def post_sessions(c: Crashd, build: str, days_ago: int, durations: list[float | None]) -> None:
    body = [{"session_id": f"{build}-{days_ago}-{i}", "build": build, "started": at(days_ago).isoformat(),
             "status": "exited", **({"duration": d} if d is not None else {})} for i, d in enumerate(durations)]
    response = c.client.post(f"/api/{c.project.id}/sessions/?sentry_key={c.key}", json=body)
    assert response.status_code == 200 and response.json()["accepted"] == len(body), response.text


def add_crash(c: Crashd, build: str, days_ago: int, signature: str, kind: str = "crash",
              project_id: int | None = None) -> tuple[str, int]:
    """A processed crash received days_ago, counted in its signature's group."""
    project_id = project_id or c.project.id
    assert project_id is not None
    row = Crash(crash_id=str(uuid.uuid4()), project_id=project_id, status="processed", submitted_via="minidump",
                build=build, annotations_key="a", received_at=at(days_ago), signature=signature, kind=kind)
    with session(c.state.ctx.engine) as s:
        s.add(row)
        s.commit()
    group_id = assign_group(c.state.ctx.engine, grouping=Grouping(
        row.crash_id, project_id, signature, "1", "game", None, "Linux", row.received_at, kind))
    return row.crash_id, group_id


def add_feedback(c: Crashd, build: str, days_ago: int, crash_id: str | None = None) -> None:
    with session(c.state.ctx.engine) as s:
        s.add(Feedback(id=str(uuid.uuid4()), project_id=c.project.id, category="bug", message="it broke",
                       build=build, crash_id=crash_id, source="api", received_at=at(days_ago)))
        s.commit()


@pytest.fixture
def world(crashd: Crashd) -> World:
    post_sessions(crashd, "0.9", 40, [600.0])
    post_sessions(crashd, "1.0", 2, [1800.0] * 10)
    post_sessions(crashd, "1.0", 1, [3600.0, 3600.0, None, None])
    post_sessions(crashd, "1.1", 0, [None] * 300)
    alpha_crash, alpha = add_crash(crashd, "1.0", 2, "alpha")
    add_crash(crashd, "1.0", 2, "alpha")
    add_crash(crashd, "1.0", 1, "alpha")
    _, stuck = add_crash(crashd, "1.0", 1, "hang | stuck", kind="hang")
    _, beta = add_crash(crashd, "1.1", 0, "beta")
    add_crash(crashd, "1.0", 2, "handled", kind="error")
    add_feedback(crashd, "1.0", 1, crash_id=alpha_crash)
    add_feedback(crashd, "1.1", 0)
    return World(alpha, stuck, beta)


def signed_in(c: Crashd, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """A browser-like client signed in as a new viewer."""
    create_user(c, "vic", "viewer", monkeypatch)
    client = TestClient(c.client.app)
    token = csrf_of(client.get("/login?next=/").text)
    response = client.post("/login", data={"username": "vic", "password": PASSWORD, "csrf_token": token, "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def get(c: Crashd, query: str) -> dict:
    response = c.client.get(f"/api/trends?{query}", headers=c.admin)
    assert response.status_code == 200, response.text
    return response.json()


def series(document: dict) -> dict[str, list[tuple]]:
    """build -> [(sessions, session_hours, crashes, crashes_per_session, per 1k h, hangs, hangs
    per session, feedback)] a day."""
    keys = ("sessions", "session_hours", "crashes", "crashes_per_session", "crashes_per_1k_session_hours", "hangs",
            "hangs_per_session", "feedback")
    return {b["build"]: [tuple(p[k] for k in keys) for p in b["series"]] for b in document["builds"]}


# -- the JSON API ---------------------------------------------------------------------------


def test_project_series_per_build_and_day(crashd: Crashd, world: World) -> None:
    found = get(crashd, "project=game&days=3")
    assert (found["project"], found["project_id"], found["group_id"]) == ("game", crashd.project.id, None)
    assert found["days"] == [(today() - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert [p["day"] for p in found["builds"][0]["series"]] == found["days"]
    assert series(found) == {
        # 10 sessions of 30 min: 5 h; 2 of 4 timed at 1 h: the other 2 at that mean, 4 h
        "1.0": [(10, 5.0, 2, 0.2, 400.0, 0, 0.0, 0), (4, 4.0, 1, 0.25, 250.0, 1, 0.25, 1),
                (0, None, 0, None, None, 0, None, 0)],
        "1.1": [(0, None, 0, None, None, 0, None, 0), (0, None, 0, None, None, 0, None, 0),
                (300, None, 1, 1 / 300, None, 0, 0.0, 1)],  # no duration reported: hours unknown
    }


def test_a_groups_series_counts_its_own_crashes_hangs_and_feedback(crashd: Crashd, world: World) -> None:
    alpha = series(get(crashd, f"project={crashd.project.id}&days=3&group={world.alpha}"))
    assert alpha["1.0"][:2] == [(10, 5.0, 2, 0.2, 400.0, 0, 0.0, 0), (4, 4.0, 1, 0.25, 250.0, 0, 0.0, 1)]
    assert alpha["1.1"][2] == (300, None, 0, 0.0, None, 0, 0.0, 0)  # the fix build: 0 in 300 sessions
    stuck = get(crashd, f"project=game&days=3&group={world.stuck}")
    assert stuck["group_id"] == world.stuck
    assert [p["hangs"] for p in stuck["builds"][0]["series"]] == [0, 1, 0]


def test_window_and_builds(crashd: Crashd, world: World) -> None:
    assert list(series(get(crashd, "project=game&days=1"))) == ["1.1"]  # 1.0 has nothing today
    assert list(series(get(crashd, "project=game"))) == ["1.0", "1.1"]  # 30 days: 0.9 is older
    assert len(get(crashd, "project=game&days=90")["days"]) == 90
    assert list(series(get(crashd, "project=game&days=90"))) == ["0.9", "1.0", "1.1"]
    picked = series(get(crashd, "project=game&days=3&build=1.1,nightly"))
    assert list(picked) == ["1.1", "nightly"] and picked["nightly"][0] == (0, None, 0, None, None, 0, None, 0)


def test_the_newest_builds_by_first_day_then_version() -> None:
    first = {f"1.{i}": today() - timedelta(days=20 - i) for i in range(12)}
    first.update({"0.1": today() - timedelta(days=29), "0.2": today() - timedelta(days=29)})
    assert trends.newest_builds(first) == [f"1.{i}" for i in range(4, 12)]
    assert trends.newest_builds({"0.2": today(), "0.10": today(), "0.9": today()}, limit=2) == ["0.9", "0.10"]
    assert trends.newest_builds({}) == []


def test_the_window_ends_today() -> None:
    now = datetime(2026, 3, 1, 0, 30, tzinfo=timezone.utc)
    assert trends.window(3, now) == [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]


@pytest.mark.parametrize("query, why", [
    ("project=game&days=0", "days must be between 1 and 90"),
    ("project=game&days=91", "days must be between 1 and 90"),
    ("project=game&days=week", "days must be an integer"),
    ("project=game&group=abc", "group must be an integer"),
    ("project=game&group=0", "group must be between 1"),
    ("project=game&build=,", "build must name builds"),
    ("project=game&since=7d", "unknown parameter 'since'"),
    ("project=game&gpu=RTX", "unknown parameter 'gpu'"),
    ("days=3", "project is required"),
])
def test_bad_parameters_are_400_naming_them(crashd: Crashd, query: str, why: str) -> None:
    response = crashd.client.get(f"/api/trends?{query}", headers=crashd.admin)
    assert response.status_code == 400 and why in response.json()["detail"], response.text
    assert response.json()["detail"].startswith("bad query parameter: ")


def test_access(crashd: Crashd, world: World) -> None:
    assert crashd.client.get("/api/trends?project=game").status_code == 401
    assert crashd.client.get("/api/trends?project=nope", headers=crashd.admin).status_code == 404
    other = queries.create_project(crashd.state.ctx.engine, name="other")
    _, elsewhere = add_crash(crashd, "1.0", 0, "alpha", project_id=other.id)
    for group_id in (elsewhere, 999999):  # another project's group is as unknown as none
        response = crashd.client.get(f"/api/trends?project=game&group={group_id}", headers=crashd.admin)
        assert (response.status_code, response.json()) == (404, {"detail": "group not found"})
    assert get(crashd, f"project=other&group={elsewhere}")["builds"][0]["series"][-1]["crashes"] == 1


# -- the group page's per-build table -------------------------------------------------------


def test_group_builds_list_the_builds_it_never_crashed_in(crashd: Crashd, world: World) -> None:
    detail = crashd.client.get(f"/api/groups/{world.alpha}", headers=crashd.admin).json()
    rows = [(b["build"], b["crashes"], b["crash_count"], b["sessions"], b["crash_rate"], b["last_seen"] is None)
            for b in detail["builds"]]
    # 0.9 was last played before alpha's first crash: not a candidate fix
    assert rows == [("1.0", 3, 3, 14, 3 / 14, False), ("1.1", 0, 0, 300, 0.0, True)]
    beta = crashd.client.get(f"/api/groups/{world.beta}", headers=crashd.admin).json()
    assert [b["build"] for b in beta["builds"]] == ["1.1"]  # 1.0 was not played since beta appeared


def test_pages_show_the_charts_and_the_zero_crash_build(crashd: Crashd, world: World,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = signed_in(crashd, monkeypatch)
    page = viewer.get(f"/groups/{world.alpha}").text
    trend = page.split('id="trends"')[1].split("</section>")[0]
    assert '<svg class="trend-chart"' in trend and trend.count("<polyline") == 2  # 1.0's crashes, hangs
    assert "1.0 · " + (today() - timedelta(days=2)).isoformat() + ": 2 crashes in 10 sessions (20 %), 400 per 1,000" in trend
    per_build = page.split("<h2>Per build</h2>")[1].split("</table>")[0]
    zero = re.search(r'<tr class="no-crash">.*?</tr>', per_build, re.S)
    assert zero and ">1.1</a>" in zero.group(0) and "0 in 300 sessions" in zero.group(0)
    assert re.findall(r'<span class="barlabel">([^<]+)</span>', per_build) == ["3", "21.43 %", "0.00 %"]
    # the rate bar on the fixed axis: 21.43 % is 0.777 of 0.1 %..100 %, whatever the other rows
    assert 'style="width: 77.7%"' in per_build
    builds = viewer.get("/builds?project=game").text
    assert '<svg class="trend-chart"' in builds.split('id="trends"')[1].split("</section>")[0]


# -- the chart ------------------------------------------------------------------------------


def a_trend(build: str, values: list[tuple[int, int]]) -> dict:
    """A storage/trends result of one build: (sessions, crashes) a day."""
    days = [today() - timedelta(days=len(values) - 1 - i) for i in range(len(values))]
    points = [trends.point(day, trends.Played(sessions), crashes, 0, 0)
              for day, (sessions, crashes) in zip(days, values, strict=True)]
    return {"days": days, "builds": [{"build": build, "series": points}]}


def test_the_chart_escapes_build_names_and_breaks_lines_without_sessions() -> None:
    chart = str(trend_chart(a_trend("<script>x</script>", [(10, 1), (0, 0), (10, 2), (5, 0)]), label="<b>"))
    assert "<script>" not in chart and "&lt;script&gt;x&lt;/script&gt;" in chart and "<b>" not in chart
    # crashes and hangs per session: a dot a day with sessions, lines between neighbours only
    assert chart.count("<polyline") == 2 and chart.count("<circle") == 6
    assert "no feedback reports" in chart


def test_the_chart_says_when_there_is_nothing() -> None:
    chart = str(trend_chart(a_trend("1.0", [(0, 0)] * 3), label="x"))
    assert "<svg" not in chart and "No sessions, crashes or feedback in the last 3 days." in chart
    assert "rates unknown" in str(trend_chart(a_trend("1.0", [(0, 2)]), label="x"))


def test_the_rate_axis_is_fixed() -> None:
    assert [rate_position(r) for r in (None, 0, 0.0001, 0.001, 0.01, 0.1, 1, 4)] == [
        0, 0, 0.02, 0.02, pytest.approx(1 / 3), pytest.approx(2 / 3), 1, 1]
    assert [nice_top(v) for v in (0, 0.034, 0.2, 0.21, 3, 7)] == pytest.approx([1, 0.05, 0.2, 0.25, 5, 10])
