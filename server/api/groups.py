"""JSON API over crash groups: GET /api/groups and GET /api/groups/<id> (the caller's
projects only; another project's group is 404); merging by hand (the project's triagers and
admins): POST /api/groups/<id>/merge ``{"into": <id>}`` and POST /api/groups/<id>/unmerge
``{"signature": ...}`` (or ``"signatures": [...]``, or ``"crash_ids": [...]``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.access import actor, check, requires
from server.api.crashes import load_report
from server.api.documents import jsonable
from server.api.params import group_query, page_query, project_scope, query
from server.api.search import search_conditions
from server.api.tickets import parse_json_object
from server.state import ServerState, state_of
from storage import dashboard_queries, queries, search
from storage.regroup import GroupNotFound, Regrouped, RegroupError
from storage.scope import group_project
from workers import regroup

MAX_UNMERGE = 100  # signatures or crashes in one unmerge request


def group_json(row: dict[str, Any]) -> dict[str, Any]:
    """A group row with times as ISO strings."""
    out = dict(row)
    for key in ("first_seen", "last_seen"):
        out[key] = queries.as_utc(out[key]).isoformat() if out.get(key) else None
    for build in out.get("builds", []):
        for key in ("first_seen", "last_seen"):
            build[key] = queries.as_utc(build[key]).isoformat() if build.get(key) else None
    return out


GROUP_PARAMS = ("project", "component", "build", "platform", "status", "kind", "since", "sort", "order", "limit",
                "offset", "days")
GROUP_FIELDS = ("component", "build", "platform", "kind")  # also crash fields: with an operator, they search crashes
OPERATOR_SIGNS = "!^~=<>"


def split_group_params(items: list[tuple[str, str]]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """/api/groups' own parameters (a group's build, component, platform, kind, its ticket's
    status, paging) and the crash search conditions (docs/search.md: groups with crashes that
    match), which are the rest and those of GROUP_FIELDS written with an operator
    (``build=^1.4``) or given twice."""
    own: dict[str, str] = {}
    crash: list[tuple[str, str]] = []
    given = Counter(name for name, _ in items)
    for name, value in items:
        searched = name in GROUP_FIELDS and (given[name] > 1 or value[:1] in OPERATOR_SIGNS and value != "")
        if name in GROUP_PARAMS and not searched:
            own[name] = value
        else:
            crash.append((name, value))
    return own, crash


@requires("read")
async def list_endpoint(request: Request) -> Response:
    """GET /api/groups?project=&component=&build=&platform=&status=&since=&sort=&order=&limit=
    &offset=&days=&<crash search field>=...: ``{"groups": [...], "total", "limit", "offset"}``
    (most testers first unless sorted otherwise; server/api/params.group_query reads the
    group parameters, any other is a crash search condition: groups having such crashes)."""
    state = state_of(request)
    params = request.query_params
    group_params, crash_params = split_group_params(params.multi_items())
    found = query(group_query, group_params)
    conditions = search_conditions(crash_params, ())
    scope = await project_scope(request)
    crashes = search.matching_groups(conditions, scope, search.probes(state.ctx.engine)) if conditions else None
    page = await run_in_threadpool(dashboard_queries.list_groups_page, state.ctx.engine, project_id=scope,
                                   crashes=crashes, **found)
    rows = [{"id": g["group_id"], **g} for g in page["groups"]]
    return JSONResponse(jsonable({"groups": rows, "total": page["total"], "limit": found["limit"],
                                  "offset": found["offset"]}))


@requires("read")
async def detail_endpoint(request: Request) -> Response:
    """GET /api/groups/<id>?crashes=&days=: the group, its builds (with sessions and crash
    rate), platforms, testers, latest crashes, ticket with history, and a representative
    crash with its crashing thread's stack (trust and inlined frames)."""
    state = state_of(request)
    found = query(page_query, request.query_params)
    group_id = request.path_params["group_id"]
    group = await run_in_threadpool(dashboard_queries.group_page, state.ctx.engine, group_id=group_id,
                                    **found) if queries.is_row_id(group_id) else None
    if group is None:
        raise HTTPException(404, "group not found")
    check(request, group["project_id"], "read", "group")  # another project's group: 404 too
    for build in group["builds"]:
        build["crash_count"] = build["crashes"]
    out = {"id": group["group_id"], **group}
    out["representative_crash"] = await run_in_threadpool(representative, state, group["representative_crash_id"])
    return JSONResponse(jsonable(out))


def representative(state: ServerState, crash_id: str | None) -> dict[str, Any] | None:
    """The representative crash: id, build, tester, received_at, crash_reason, top_frames,
    and ``stack``: its crashing thread's frames from the processed report (frame, trust,
    module, module_offset, function, file, line, inlines, missing_symbols), None when the
    report is not in the blob store."""
    crash = queries.get_crash(state.ctx.engine, crash_id=crash_id) if crash_id else None
    if crash is None:
        return None
    report = load_report(state, crash) or {}
    frames = (report.get("crashing_thread") or {}).get("frames")
    return {
        "crash_id": crash.crash_id, "build": crash.build, "tester_id": crash.tester_id,
        "received_at": queries.as_utc(crash.received_at).isoformat(),
        "top_frames": (crash.processed or {}).get("top_frames", []),
        "crash_reason": (crash.processed or {}).get("crash_reason"),
        "stack": None if frames is None else [{k: v for k, v in f.items() if k != "registers"} for f in frames],
    }


@requires("triage")
async def merge_endpoint(request: Request) -> Response:
    """POST /api/groups/<id>/merge ``{"into": <group id>}``: the group's crashes move into the
    other group and its signature stays merged there (also after reprocessing); tickets
    follow (docs/grouping.md). 200 with what moved, 400 with why it cannot be done."""
    state = state_of(request)
    body = _body(await request.body())
    into = body.get("into")
    if isinstance(into, bool) or not isinstance(into, int) or not queries.is_row_id(into):
        raise HTTPException(400, "into must be a group id")
    done = await _regroup(regroup.merge, state, group_id=request.path_params["group_id"], into=into,
                          actor=actor(request), project_id=await _triaged(request))
    return JSONResponse(_done(request.path_params["group_id"], into, done))


@requires("triage")
async def unmerge_endpoint(request: Request) -> Response:
    """POST /api/groups/<id>/unmerge ``{"signature": "..."}``, ``{"signatures": [...]}`` or
    ``{"crash_ids": [...]}`` (their signatures): those signatures are no longer merged into
    the group; their crashes go back to a group of their own. 200 with where they went."""
    state = state_of(request)
    body = _body(await request.body())
    signatures = _strings(body, "signatures") + ([body["signature"]] if isinstance(body.get("signature"), str) else [])
    crash_ids = _strings(body, "crash_ids")
    if "signature" in body and not isinstance(body["signature"], str):
        raise HTTPException(400, "signature must be a string")
    if not signatures and not crash_ids:
        raise HTTPException(400, "name a signature, signatures or crash_ids to unmerge")
    group_id = request.path_params["group_id"]
    done = await _regroup(regroup.unmerge, state, group_id=group_id, signatures=signatures, crash_ids=crash_ids,
                          actor=actor(request), project_id=await _triaged(request))
    return JSONResponse(_done(group_id, group_id, done))


def _body(raw: bytes) -> dict[str, Any]:
    try:
        return parse_json_object(raw)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _strings(body: dict[str, Any], key: str) -> list[str]:
    values = body.get(key)
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise HTTPException(400, f"{key} must be a list of strings")
    if len(values) > MAX_UNMERGE:
        raise HTTPException(400, f"{key}: at most {MAX_UNMERGE} in one request")
    return values


async def _triaged(request: Request) -> int:
    """The project of the path's group, which the caller may triage. Raises HTTPException: 404
    for no such group or one of a project the caller may not read, 403 where it only reads.
    Regrouping is then kept to that project (a group to merge into elsewhere is 404 too)."""
    project = await run_in_threadpool(group_project, state_of(request).ctx.engine,
                                      group_id=request.path_params["group_id"])
    if project is None:
        raise HTTPException(404, "group not found")
    check(request, project, "triage", "group")
    return project


async def _regroup(work: Any, state: ServerState, **kwargs: Any) -> Regrouped:
    try:
        return await run_in_threadpool(work, state.ctx, state.queue, **kwargs)
    except GroupNotFound:
        raise HTTPException(404, "group not found") from None
    except RegroupError as exc:
        raise HTTPException(400, str(exc)) from None


def _done(group_id: int, into: int, done: Regrouped) -> dict[str, Any]:
    return {"group_id": group_id, "into": into, "crashes_moved": done.crashes_moved, "groups": done.groups,
            "ticket_changes": [{"ticket_id": c.ticket_id, "action": c.action} for c in done.changes]}
