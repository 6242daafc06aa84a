"""``POST /api/<project>/releases/``: CI says a version was deployed (docs/releases.md).

Body ``{"version", "environment" (default staging), "deployed_at" (ISO, default now),
"commits": [{"id", "message", "author"}] (at most 10,000), "url"}``; answer ``{"release",
"created", "resolved", "already_resolved", "unknown", "skipped", "patch_notes"}`` (200; a
second post of the same (project, version, environment) changes nothing: ``created: false``).

Who: a global admin (admin token, admin API token, admin session with X-CSRF-Token) or a
``deployer`` token of the project (``crashd token create ci --role deployer --project P``).
An ingest key is 403 (it ships inside the game); other credentials 403; none 401; another
project's deployer token 403; an unknown project 404. ``_`` as the project: a deployer
token's own project.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.tables import Project
from server.api.access import BEARER
from server.api.tickets import parse_json_object
from server.auth import Principal, bearer_token, caller, ingest_key, release_deployer, token_principal
from server.state import ServerState, state_of
from storage import queries
from triage.releases import BadRelease, parse_release
from workers.releases import deploy

MAX_BODY_BYTES = 16 * 1024 * 1024  # 10,000 commits with 1,000-character messages fit
OWN_PROJECT = "_"


async def releases_endpoint(request: Request) -> Response:
    """POST /api/<project>/releases/: record a deploy; 200 with what it did."""
    state = state_of(request)
    who = release_deployer(request, state)
    if who is None:
        raise await run_in_threadpool(_why_not, state, request)
    project = await run_in_threadpool(_project, state, who, request.path_params["project"])
    raw = await _body(request)
    try:
        release = parse_release(parse_json_object(raw))
    except BadRelease as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    assert project.id is not None  # a stored project has its id
    answer = await run_in_threadpool(deploy, state.ctx, state.queue, project_id=project.id, release=release)
    return JSONResponse(answer)


def _why_not(state: ServerState, request: Request) -> HTTPException:
    """Why a caller who may not post releases is refused: 403 for an ingest key (valid) or
    any other credentials, 401 for an unknown token or none."""
    token = bearer_token(request)
    key = ingest_key(request) or token
    if key and state.projects.get(key) is not None:
        return HTTPException(403, "releases take a deployer or admin API token, not an ingest key")
    if token is not None and token_principal(state, token) is None:
        return HTTPException(401, "unknown token", headers=BEARER)
    if token is not None or caller(request, state) is not None:
        return HTTPException(403, "a deployer token of the project or an admin is required")
    return HTTPException(401, "admin bearer token required", headers=BEARER)


def _project(state: ServerState, who: Principal, ref: str) -> Project:
    """The project ref names, for who. Raises HTTPException: 404 unknown, 403 another
    project than a deployer token's."""
    if not who.is_admin:
        own = queries.find_project(state.ctx.engine, ref=str(who.project_id))
        if own is None or ref not in (OWN_PROJECT, str(own.id), own.name):
            raise HTTPException(403, f"token {who.name!r} deploys to project {who.project_id} only")
        return own
    project = queries.find_project(state.ctx.engine, ref=ref)
    if project is None:
        raise HTTPException(404, f"unknown project {ref!r}")
    return project


async def _body(request: Request) -> bytes:
    """The request body, at most MAX_BODY_BYTES. Raises HTTPException(413)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
