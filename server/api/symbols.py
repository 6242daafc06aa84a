"""JSON reads of symbols:

- ``GET /api/symbols/<debug_file>/<debug_id>``: the files stored for a module (docs/symbols.md).
  Split from the upload endpoint (server/ingest/symbols.py), which shares its stores and their
  rules (store_project). Readers, uploader tokens and ingest keys may call it (visible_stores).
- ``GET /api/symbols?project=&limit=``: the debug files uploaded and the symbols missing, the
  JSON twin of the dashboard's symbols page (issue 6), for any signed-in reader
  (storage.dashboard_queries.symbols_page). docs/dashboard.md has the shape.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.tables import SymbolFile
from server.access_rules import projects_visible
from server.api.access import requires
from server.api.documents import jsonable
from server.api.params import MAX_LIMIT, int_param, project_scope, query
from server.auth import bearer_token, caller, ingest_key, symbol_uploader
from server.ingest.discard import Discarded
from server.ingest.symbols import store_project
from server.state import ServerState, state_of
from storage import dashboard_queries, queries
from symbolicator.symbols import remote
from symbolicator.symbols.sources import breakpad_layout


async def lookup_endpoint(request: Request) -> Response:
    """GET /api/symbols/<debug_file>/<debug_id>[?sha256=][&project=]: the stored files of a
    module (200), or 404. An admin sees every store, a reader its projects' stores (a global
    viewer every store: server/access_rules.projects_visible), an uploader token or an ingest
    key its project's and the shared one. ``project`` keeps to one store (``_``: as an upload names it)."""
    state = state_of(request)
    stores = await run_in_threadpool(visible_stores, state, request)
    if isinstance(stores, Discarded):
        raise HTTPException(stores.status_code, stores.discard_code)
    module = breakpad_layout(request.path_params["debug_file"], request.path_params["debug_id"])
    if module is None:
        raise HTTPException(400, "malformed_bad_module_id")
    rows = await run_in_threadpool(queries.symbol_files, state.ctx.engine, debug_file=module[0],
                                   debug_id=module[1], sha256=request.query_params.get("sha256"))
    # A row whose file is gone (a wiped symbols folder) is not "stored": the CLI uploads again.
    files = [row_dict(row) for row in rows if (stores is None or row.project_id in stores)
             and remote.is_stored(state.settings, state.ctx.blobs, row.path)]
    if not files:  # an answer, not an HTTPException: the body carries the empty list too
        return JSONResponse({"detail": "not_found", "files": []}, status_code=404)
    return JSONResponse({"files": files})


def visible_stores(state: ServerState, request: Request) -> set[int | None] | None | Discarded:
    """The stores (project ids, None for the shared one) whose files request may list; None for
    all of them. A Discarded (401) without credentials."""
    ref = request.query_params.get("project")
    who = symbol_uploader(request, state)
    if who is not None and ref is not None:
        try:
            project = store_project(state, who, ref)
        except Discarded as exc:
            return exc
        return {project.id if project else None}
    if who is not None and not who.is_admin:
        return {who.project_id, None}
    reader = caller(request, state)
    if who is not None or reader is not None:
        visible = projects_visible(who or reader)
        return None if visible is None else set(visible)  # a per-project reader: not the shared store
    key = ingest_key(request) or bearer_token(request)
    project = state.projects.get(key) if key else None
    if project is None:
        return Discarded(401, "bad_key" if key else "missing_key")
    return {project.id, None}


def row_dict(row: SymbolFile) -> dict[str, object]:
    """A symbol_files row as the lookup answers it."""
    uploaded = queries.as_utc(row.uploaded_at)
    return {"debug_file": row.debug_file, "debug_id": row.debug_id, "code_file": row.code_file,
            "code_id": row.code_id, "os": row.os, "cpu": row.cpu, "size": row.size, "sha256": row.sha256,
            "stored_as": row.path, "project_id": row.project_id,
            "uploaded_at": uploaded.isoformat() if uploaded else None}


@requires("read")
async def symbols_endpoint(request: Request) -> Response:
    """GET /api/symbols?project=&limit=: uploaded debug files (newest first) and missing
    symbols ranked by the crashes they would fix."""
    state = state_of(request)
    limit = query(int_param, request.query_params, "limit", 200, 1, MAX_LIMIT)
    page = await run_in_threadpool(dashboard_queries.symbols_page, state.ctx.engine,
                                   project_id=await project_scope(request), limit=limit)
    return JSONResponse(jsonable(page))
