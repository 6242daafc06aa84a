"""Which project an ingest request is for: the project of the ingest key it carries
(server/auth.py finds the key in ``?key=``, ``?sentry_key=``, ``X-Sentry-Auth`` ...)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from schemas.tables import Project
from server.auth import ingest_key
from server.ingest.discard import Discarded
from server.state import ServerState


async def authenticate(state: ServerState, request: Request, project_ref: str | None) -> Project:
    """The project whose ingest key the request carries. Raises Discarded (401 missing_key / bad_key)."""
    return await project_of(state, ingest_key(request), project_ref)


async def project_of(state: ServerState, key: str | None, project_ref: str | None) -> Project:
    """project_for_key, answered on the event loop when the key's project is remembered (no
    database), else in a thread: a thread-pool hop costs an upload CPU (bench/ingest.py).
    Raises Discarded (401 missing_key / bad_key)."""
    if state.projects.cached(key) is not None:
        return project_for_key(state, key, project_ref)
    return await run_in_threadpool(project_for_key, state, key, project_ref)


def project_for_key(state: ServerState, key: str | None, project_ref: str | None) -> Project:
    """The project of ingest key (which must be project_ref's, an id or name, when given).
    Raises Discarded (401 missing_key / bad_key)."""
    if not key:
        raise Discarded(401, "missing_key")
    project = state.projects.get(key)
    if project is None:
        raise Discarded(401, "bad_key")
    if project_ref is not None and project_ref not in (str(project.id), project.name):
        raise Discarded(401, "bad_key")
    return project

