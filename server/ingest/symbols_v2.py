"""Breakpad's sym-upload-v2 protocol under ``/api/<project>/symbols/`` (``symupload -p sym-upload-v2
-k <token> game.sym http://HOST/api/<project>/symbols``), as Breakpad's symbol_collector_client.cc
speaks it:

1. ``GET  .../v1/symbols/<debug_file>/<debug_id>:checkStatus?key=`` -> ``{"status": "FOUND"|"MISSING"}``
   (skipped with ``-f``);
2. ``POST .../v1/uploads:create?key=`` -> ``{"uploadUrl": ..., "uploadKey": ...}``;
3. ``PUT  <uploadUrl>`` with the file as the body (the URL's upload key is its only credential);
4. ``POST .../v1/uploads/<uploadKey>:complete?key=`` with ``{symbol_id: {debug_file, debug_id},
   symbol_upload_type}`` (not JSON: its keys are unquoted) -> ``{"result": "OK"|"DUPLICATE_DATA"}``.

``-k`` puts the API token in ``?key=``: the same tokens, stores, refusals and quota as a v1
upload (server/ingest/symbols.py). Between 2 and 4 the upload waits in the staging folder as
``v2-<uploadKey>.json`` (who may complete it) and its file. With an object store
(``CRASHD_BLOB_URL=s3://...``) both wait there instead, under ``symbols/.staging/``: the
create, the PUT and the complete may each reach another web process. An upload never completed
is deleted by the sweeper (workers/sweeper.py) once older than CRASHD_ORPHAN_BLOB_GRACE_SECONDS. The client matches the
answers with regexes that expect ``"name": "value"``, as json.dumps writes them.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.ingest.discard import Discarded
from server.ingest.refusal import SYMBOLS, refusing
from server.ingest.symbols import STORE_ERRORS, _store_staged, authenticate_upload, read_files
from server.state import ServerState, state_of
from storage import queries
from storage.blobs import BlobNotFound
from symbolicator.symbols import remote, store
from symbolicator.symbols.sources import breakpad_layout

_UPLOAD_KEY = re.compile(r"[A-Za-z0-9_-]{43}")
# {symbol_id: {debug_file: "game.pdb", debug_id: "5A98..." }, symbol_upload_type: "BREAKPAD" }
_COMPLETE_FIELD = re.compile(r'(debug_file|debug_id)\s*:\s*"([^"]*)"')


@refusing(SYMBOLS, outages=STORE_ERRORS)
async def check_status_endpoint(request: Request) -> Response:
    """GET .../v1/symbols/<debug_file>/<debug_id>:checkStatus: whether the upload's store has the module."""
    state = state_of(request)
    debug_id, _, verb = request.path_params["debug_id"].partition(":")
    module = breakpad_layout(request.path_params["debug_file"], debug_id)
    if verb != "checkStatus" or module is None:
        return JSONResponse({"detail": "not_found"}, status_code=404)
    return await _answer(lambda: {"status": "FOUND" if _has(state, request, module) else "MISSING"})


@refusing(SYMBOLS, outages=STORE_ERRORS)
async def create_endpoint(request: Request) -> Response:
    """POST .../v1/uploads:create: a new upload key and the URL to PUT the file to."""
    state = state_of(request)

    def create() -> dict[str, str]:
        project = authenticate_upload(state, request)
        key = secrets.token_urlsafe(32)
        _write_record(state, key, {"project_id": project.id if project else None})
        url = request.url.replace(path=f"{request.url.path.rsplit('/', 1)[0]}/uploads/{key}", query="")
        return {"uploadUrl": str(url), "uploadKey": key}

    return await _answer(create)


@refusing(SYMBOLS, outages=STORE_ERRORS)
async def upload_endpoint(request: Request) -> Response:
    """PUT .../v1/uploads/<key> (the file) or POST .../v1/uploads/<key>:complete (store it)."""
    state = state_of(request)
    key, _, verb = request.path_params["upload"].partition(":")
    if not _UPLOAD_KEY.fullmatch(key) or await run_in_threadpool(_read_record, state, key) is None:
        return JSONResponse({"detail": "unknown_upload"}, status_code=404)
    if request.method == "PUT" and not verb:
        return await _receive(state, request, key)
    if request.method == "POST" and verb == "complete":
        body = (await request.body())[:4096].decode("utf-8", "replace")
        return await _answer(lambda: _complete(state, request, key, body))
    return JSONResponse({"detail": "not_found"}, status_code=404)


async def _receive(state: ServerState, request: Request, key: str) -> Response:
    """Stage the PUT body as the upload's file (a second PUT replaces the first)."""
    parts, _, _ = await read_files(request, state)
    try:
        staged = await run_in_threadpool(store.stage, parts[0].file, state.settings.symbols_dir)
    finally:
        for part in parts:
            part.close()
    await run_in_threadpool(_keep_staged, state, key, staged)
    return _json({})


def _keep_staged(state: ServerState, key: str, staged: store.StagedFile) -> None:
    """Record staged as the upload's file; on an object store, the file goes there too."""
    record = _read_record(state, key) or {}
    if record.get("path"):
        Path(record["path"]).unlink(missing_ok=True)
    if state.settings.blobs_on_s3:
        with open(staged.path, "rb") as source:
            state.ctx.blobs.put_file(_blob(key, ".upload"), source)
        staged.path.unlink(missing_ok=True)
        record.update(path=None, in_blobs=True)
    else:
        record.update(path=str(staged.path))
    record.update(sha256=staged.sha256, size=staged.size)
    _write_record(state, key, record)


def _complete(state: ServerState, request: Request, key: str, body: str) -> dict[str, str]:
    """Store the PUT file for the module the body names; ``DUPLICATE_DATA`` when it was there."""
    project = authenticate_upload(state, request)
    record = _read_record(state, key) or {}
    if record.get("project_id") != (project.id if project else None):
        raise Discarded(403, "wrong_project", "the upload was created for another store")
    if not record.get("path") and not record.get("in_blobs"):
        raise Discarded(400, "malformed_no_symbol_file", "nothing was PUT to the upload URL")
    names = dict(_COMPLETE_FIELD.findall(body))
    if record.get("in_blobs"):  # PUT to another web process: fetch it into this one's staging
        with state.ctx.blobs.open(_blob(key, ".upload")) as source:
            staged = store.stage(source, state.settings.symbols_dir)
    else:
        staged = store.StagedFile(Path(record["path"]), record["sha256"], record["size"])
    _drop_record(state, key)  # done, whatever the outcome: the client starts over
    try:
        stored = _store_staged(state, project, staged, names.get("debug_file"),
                               store.Names(debug_file=names.get("debug_file"), debug_id=names.get("debug_id")))
    except store.TooLarge as exc:
        raise Discarded(413, exc.reason, str(exc)) from exc
    except store.MalformedSymbols as exc:
        raise Discarded(400, f"malformed_{exc.reason}", str(exc)) from exc
    return {"result": "DUPLICATE_DATA" if all(f["status"] == "unchanged" for f in stored) else "OK"}


def _has(state: ServerState, request: Request, module: tuple[str, str]) -> bool:
    """Whether the store an upload of request goes to holds a file of module."""
    project = authenticate_upload(state, request)
    rows = queries.symbol_files(state.ctx.engine, debug_file=module[0], debug_id=module[1])
    wanted = project.id if project else None
    return any(row.project_id == wanted and remote.is_stored(state.settings, state.ctx.blobs, row.path) for row in rows)


def _json(body: dict[str, str]) -> Response:
    """JSON with ``": "`` between name and value: symupload finds its fields with regexes such as
    ``"status": "([^"]+)"`` (Starlette's JSONResponse writes ``"status":"FOUND"``)."""
    return Response(json.dumps(body), media_type="application/json")


def _record_path(state: ServerState, key: str) -> Path:
    folder = state.settings.symbols_dir / store.STAGING
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"v2-{key}.json"


def _blob(key: str, suffix: str) -> str:
    """The object of an upload key's record (``.json``) or file (``.upload``) on an object store."""
    return f"{remote.PREFIX}{store.STAGING}/v2-{key}{suffix}"


def _read_record(state: ServerState, key: str) -> dict | None:
    """The upload's record (None: no such upload). Raises BlobStoreError, OSError."""
    try:
        if state.settings.blobs_on_s3:
            return dict(json.loads(state.ctx.blobs.read_bytes(_blob(key, ".json"))))
        return dict(json.loads(_record_path(state, key).read_text()))
    except (BlobNotFound, FileNotFoundError):
        return None


def _write_record(state: ServerState, key: str, record: dict) -> None:
    if state.settings.blobs_on_s3:
        state.ctx.blobs.put_bytes(_blob(key, ".json"), json.dumps(record).encode())
    else:
        _record_path(state, key).write_text(json.dumps(record))


def _drop_record(state: ServerState, key: str) -> None:
    if state.settings.blobs_on_s3:
        state.ctx.blobs.delete(_blob(key, ".json"))
        state.ctx.blobs.delete(_blob(key, ".upload"))
    else:
        _record_path(state, key).unlink(missing_ok=True)


async def _answer(work: Callable[[], dict[str, str]]) -> Response:
    """work() in a thread as JSON (its refusals and outages go to @refusing)."""
    return _json(await run_in_threadpool(work))

