"""JSON API over builds (any reader): ``GET /api/builds`` (sessions, crashes, crash rate,
hangs and hang rate per build, in version order) and ``GET /api/builds/compare`` (did a build
crash less than another, per crash group; and hang less, overall). docs/rates.md says how
rates and the test work, docs/hangs.md what a hang is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.access import requires
from server.api.params import parse_since, query, required_project
from server.state import ServerState, state_of
from storage import sessions, turnaround
from triage.kinds import HANG
from triage.rates import RateTest, compare_rates, sort_builds
from triage.turnaround import AutoPair, pick_pair


def _rate(crashes: int, total: int) -> float | None:
    """crashes per session; None (unknown, not 0) without sessions."""
    return crashes / total if total else None


@requires("read")
async def list_endpoint(request: Request) -> Response:
    """GET /api/builds?project=&since= → ``{"builds": [{"build", "sessions",
    "crashed_sessions", "crash_rate", "crashes", "hang_count", "hang_rate", "first_seen"}]}``
    in version order."""
    state = state_of(request)
    project = await required_project(request)  # 404 for a project the caller may not read
    assert project.id is not None  # a stored project has its id
    since = query(parse_since, request.query_params.get("since"))
    return JSONResponse({"builds": await run_in_threadpool(build_rows, state, project.id, since)})


def build_rows(state: ServerState, project_id: int, since: datetime | None) -> list[dict[str, Any]]:
    """One row per build with a session or a crash (since), in version order (builds that
    are not versions by first seen, then by name)."""
    engine = state.ctx.engine
    played = sessions.sessions_per_build(engine, project_id=project_id, since=since)
    crashed = sessions.crashed_sessions_per_build(engine, project_id=project_id, since=since)
    crashes = sessions.crashes_per_build(engine, project_id=project_id, since=since)
    hangs = sessions.crashes_per_build(engine, project_id=project_id, since=since, kinds=(HANG,))
    first_seen = sessions.build_first_seen(engine, project_id=project_id)
    return [{
        "build": build, "sessions": played.get(build, 0), "crashed_sessions": crashed.get(build, 0),
        "crash_rate": _rate(crashed.get(build, 0), played.get(build, 0)), "crashes": crashes.get(build, 0),
        "hang_count": hangs.get(build, 0), "hang_rate": _rate(hangs.get(build, 0), played.get(build, 0)),
        "first_seen": first_seen[build].isoformat() if build in first_seen else None,
    } for build in sort_builds(sorted(set(played) | set(crashes) | set(hangs)), first_seen)]


@requires("read")
async def compare_endpoint(request: Request) -> Response:
    """GET /api/builds/compare?project=&base=&target=[&min_sessions=200&alpha=0.05]: crash
    rates of two builds, overall and per group seen in either, biggest drop first. Without
    base and target: the newest staging deploy with min_sessions sessions against the one
    before it (auto_pair; ``auto`` says so), 400 when there is none."""
    state = state_of(request)
    params = request.query_params
    project = await required_project(request)
    assert project.id is not None  # a stored project has its id
    base, target = params.get("base"), params.get("target")
    min_sessions, alpha = query(rate_test_params, params)
    pair = None
    if not base and not target:
        pair = await run_in_threadpool(auto_pair, state, project.id, min_sessions)
        if pair is None:
            raise HTTPException(400, f"bad query parameter: base and target are required (no staging build has "
                                     f"{min_sessions} sessions to compare automatically)")
        base, target = pair.base, pair.target
    if not base or not target:
        raise HTTPException(400, "bad query parameter: base and target are required")
    found = await run_in_threadpool(compare_builds, state, project.id, base, target, min_sessions, alpha)
    return JSONResponse({**found, "auto": auto_json(pair)})


def auto_pair(state: ServerState, project_id: int, min_sessions: int) -> AutoPair | None:
    """The builds compared when none were picked (docs/rates.md): the newest staging release
    with min_sessions sessions vs the staging release deployed before it; with fewer than two
    staging releases, the newest build with enough sessions vs the one before it in build
    order. None when no build has enough sessions."""
    engine = state.ctx.engine
    return pick_pair(turnaround.staging_releases(engine, project_id=project_id),
                     sessions.sessions_per_build(engine, project_id=project_id), min_sessions,
                     sessions.build_first_seen(engine, project_id=project_id))


def auto_json(pair: AutoPair | None) -> dict[str, str] | None:
    """``{"by": "release" | "build_order", "label": "beta3 vs beta2 (latest staging deploy)"}``,
    None for builds the caller picked."""
    return {"by": pair.by, "label": pair.label} if pair is not None else None


def rate_test_params(params: Mapping[str, str]) -> tuple[int, float]:
    """``min_sessions`` (>= 0, default 200) and ``alpha`` (0..1, default 0.05) of the rate
    test. Raises ValueError."""
    min_sessions = int(params.get("min_sessions", "200"))
    alpha = float(params.get("alpha", "0.05"))
    if min_sessions < 0 or not 0 < alpha < 1:
        raise ValueError("min_sessions must be >= 0 and alpha between 0 and 1")
    return min_sessions, alpha


def compare_builds(state: ServerState, project_id: int, base: str, target: str, min_sessions: int,
                   alpha: float) -> dict[str, Any]:
    """The compare document: sessions and crash rates of both builds, a rate test per group
    (the group's crashes in a build / the build's sessions), and the builds' hang reports per
    session with the same test over them (``hangs``)."""
    engine = state.ctx.engine
    played = sessions.sessions_per_build(engine, project_id=project_id)
    crashed = sessions.crashed_sessions_per_build(engine, project_id=project_id)
    hangs = sessions.crashes_per_build(engine, project_id=project_id, kinds=(HANG,))
    base_sessions, target_sessions = played.get(base, 0), played.get(target, 0)
    rows = []
    for group in sessions.group_crashes_in_builds(engine, project_id=project_id, builds=[base, target]):
        test = compare_rates(group["crashes"].get(base, 0), base_sessions, group["crashes"].get(target, 0),
                             target_sessions, min_sessions=min_sessions, alpha=alpha)
        rows.append(_group_row(group, test))
    rows.sort(key=_biggest_drop_first)
    return {
        "base": base, "target": target, "base_sessions": base_sessions, "target_sessions": target_sessions,
        "base_crash_rate": _rate(crashed.get(base, 0), base_sessions),
        "target_crash_rate": _rate(crashed.get(target, 0), target_sessions),
        "min_sessions": min_sessions, "alpha": alpha,
        "enough_sessions": target_sessions >= min_sessions, "groups": rows,
        "hangs": _hang_row(compare_rates(hangs.get(base, 0), base_sessions, hangs.get(target, 0), target_sessions,
                                         min_sessions=min_sessions, alpha=alpha)),
    }


def _hang_row(test: RateTest) -> dict[str, Any]:
    """The builds' hang reports and hangs per session, and whether the target hangs less."""
    return {
        "base_hangs": test.base_crashes, "target_hangs": test.target_crashes,
        "base_hang_rate": test.base_rate, "target_hang_rate": test.target_rate, "change": test.change,
        "p_value": test.p_value, "significant": test.significant, "reason": test.reason,
    }


def _group_row(group: dict[str, Any], test: RateTest) -> dict[str, Any]:
    return {
        "group_id": group["group_id"], "signature": group["signature"], "component": group["component"],
        "base_crashes": test.base_crashes, "target_crashes": test.target_crashes,
        "base_rate": test.base_rate, "target_rate": test.target_rate, "change": test.change,
        "p_value": test.p_value, "significant": test.significant, "reason": test.reason,
    }


def _biggest_drop_first(row: dict[str, Any]) -> tuple:
    """By the drop in crashes per session (base_rate - target_rate), largest first: the
    fix that spares players the most crashes leads. Rows whose rates are unknown come last,
    by the drop in crash counts; then the smaller p-value, then the group id."""
    known = row["base_rate"] is not None and row["target_rate"] is not None
    drop = row["base_rate"] - row["target_rate"] if known else 0.0
    p_value = row["p_value"] if row["p_value"] is not None else 1.0
    return (not known, -drop, row["target_crashes"] - row["base_crashes"], p_value, row["group_id"])
