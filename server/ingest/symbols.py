"""Symbol upload: ``POST /api/<project>/symbols/`` (the lookup, ``GET /api/symbols/<debug_file>/<debug_id>``,
is server/api/symbols.py).

An upload is one of (docs/symbols.md):
- Breakpad ``symupload`` (sym_upload_v1): multipart with the file part ``symbol_file`` and text
  fields ``debug_file``, ``debug_identifier``, ``code_file``, ``os``, ``cpu`` (and ``version``);
  it authenticates with an API token in ``?key=``, the only thing it lets us set;
- a bare body: a ``.sym`` (names from its MODULE line), a native debug file (name it with
  ``?debug_file=`` or ``?filename=``), or a zip of a ``<debug_file>/<debug_id>/<file>`` tree;
- multipart with any file parts (``curl -F symbol_file=@libfoo.so``); a part may be a zip.
Uploading takes an API token, never an ingest key (which ships inside the game and is public):
the admin's, or an ``uploader`` token of the project (docs/auth.md). Each project has its own
store, which only its crashes use; an admin may also upload to the shared store (``/api/_/``)
that every project falls back to. Each store holds at most ``symbol_quota_bytes``.
Files are stored and converted (symbolicator.symbols.store) and recorded in ``symbol_files``
before the 200, like crashes (persist, then acknowledge). Refusals answer ``{"detail": code}``
and are counted as discards under ``symbols_<code>`` (server/ingest/refusal.py).
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from typing import Mapping

from python_multipart.multipart import parse_options_header
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.tables import Project, SymbolFile
from server.auth import Principal, bearer_token, can_read, ingest_key, symbol_uploader, token_principal
from server.ingest.discard import Discarded, MalformedUpload, UploadTooLarge
from server.ingest.refusal import SYMBOLS, refusing
from server.ingest.upload_parser import (
    GZIP_MAGIC,
    MAX_FIELD_CHARS,
    ZSTD_MAGIC,
    Budget,
    SpoolWriter,
    UploadPart,
    decoded_body,
    decompress_part,
    parse_multipart,
)
from server.state import ServerState, state_of
from storage import queries, symbol_use
from storage.blobs import BlobStoreError
from symbolicator.symbols import remote, store
from symbolicator.symbols.cache import MalformedSymbols
from symbolicator.symbols.sources import bump_generation
from symbolicator.symbols.ziptree import is_zip, unpack_zip
from workers.reprocess import reprocess_for_symbols

log = logging.getLogger(__name__)

SHARED = "_"  # /api/_/symbols/: the shared store for an admin, an uploader token's own project
FILE_FIELD = "symbol_file"
# Form fields (and query parameters of a bare body) naming the module, by store.Names field.
NAME_FIELDS = {"debug_file": ("debug_file",), "debug_id": ("debug_identifier", "debug_id"),
               "code_file": ("code_file",), "code_id": ("code_id", "code_identifier"), "os": ("os",),
               "cpu": ("cpu", "arch")}


STORE_ERRORS = (OSError, SQLAlchemyError, BlobStoreError)  # the symbols folder, database or object store failed: 503


@refusing(SYMBOLS, outages=STORE_ERRORS)
async def upload_endpoint(request: Request) -> Response:
    """POST /api/<project>/symbols/: store the uploaded debug files; 200 ``{"files": [...]}``.
    Raises Discarded, OSError or SQLAlchemyError (@refusing answers them)."""
    state = state_of(request)
    project = await run_in_threadpool(authenticate_upload, state, request)
    parts, names, budget = await read_files(request, state)
    try:
        stored = await run_in_threadpool(store_parts, state, project, parts, names, budget)
    finally:
        for part in parts:
            part.close()
    return JSONResponse({"files": stored})


def authenticate_upload(state: ServerState, request: Request) -> Project | None:
    """The project whose store the upload goes to (None: the shared store). Raises Discarded:
    401 without a token or with a wrong one, 403 ``symbols_need_token`` for an ingest key,
    403 for a viewer or another project's uploader token, 404 for an unknown project."""
    who = symbol_uploader(request, state)
    if who is None:
        raise _why_not(state, request)
    return store_project(state, who, request.path_params["project"])


def store_project(state: ServerState, who: Principal, ref: str) -> Project | None:
    """The project whose store ref names for who (None: the shared store). Raises Discarded."""
    if who.is_admin:
        if ref == SHARED:
            return None
        project = queries.find_project(state.ctx.engine, ref=ref)
        if project is None:
            raise Discarded(404, "unknown_project", ref)
        return project
    project = queries.find_project(state.ctx.engine, ref=str(who.project_id))
    if project is None or (ref != SHARED and ref not in (str(project.id), project.name)):
        raise Discarded(403, "wrong_project", f"token {who.name!r} uploads to project {who.project_id} only")
    return project


def _why_not(state: ServerState, request: Request) -> Discarded:
    """Why a request without an upload token is refused: an ingest key (valid or not) never
    writes symbols; a viewer's credentials are not enough."""
    key = ingest_key(request) or bearer_token(request)  # ``Authorization: Bearer <ingest key>`` too
    if key and state.projects.get(key) is not None:
        return Discarded(403, "symbols_need_token", "symbol uploads take an API token, not an ingest key")
    token = bearer_token(request) or request.query_params.get("key")
    if can_read(request, state) or (token and token_principal(state, token)):
        return Discarded(403, "needs_admin_or_uploader", "a viewer may not upload symbols")
    if key or token:
        return Discarded(401, "bad_token", "unknown token")
    return Discarded(401, "missing_token", "no API token")


async def read_files(request: Request, state: ServerState) -> tuple[list[UploadPart], store.Names, Budget]:
    """Stream the body under the caps into file parts, plus the names given beside them."""
    settings = state.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise UploadTooLarge("too_large", f"Content-Length {declared}")
    budget = Budget(settings.max_decompressed_bytes)
    body = decoded_body(request.stream(), content_encoding=request.headers.get("content-encoding", "").strip().lower(),
                        max_upload_bytes=settings.max_upload_bytes)
    media_type, params = parse_options_header(request.headers.get("content-type", ""))
    if media_type.startswith(b"multipart/"):
        if not params.get(b"boundary"):
            raise MalformedUpload("bad_multipart", "multipart Content-Type without a boundary")
        parsed = await parse_multipart(body, boundary=params[b"boundary"], tmp_dir=state.tmp_dir, budget=budget)
        return (*_sort_parts(parsed), budget)
    writer = SpoolWriter(state.tmp_dir, budget)
    try:
        async for chunk in body:
            writer.write(chunk)
    except BaseException:
        writer.file.close()
        raise
    query = request.query_params
    part = writer.finish(FILE_FIELD, query.get("filename") or query.get("debug_file"), media_type.decode() or None)
    return [part], names_from(query), budget


def _sort_parts(parsed: list[tuple[dict[str, str], UploadPart]]) -> tuple[list[UploadPart], store.Names]:
    """File parts (``symbol_file`` or any with a file name) and the text fields' names."""
    files, text = [], {}
    for _, part in parsed:
        if part.name == FILE_FIELD or part.filename is not None or part.size > MAX_FIELD_CHARS:
            files.append(part)
        else:
            text[part.name] = part.file.read().decode("utf-8", "replace").strip()
            part.close()
    return files, names_from(text)


def names_from(values: Mapping[str, str]) -> store.Names:
    """store.Names from form fields or query parameters (first non-empty alias wins)."""
    found = {}
    for field in fields(store.Names):
        given = (values.get(alias, "").strip() for alias in NAME_FIELDS[field.name])
        found[field.name] = next((value[:300] for value in given if value), None)
    return store.Names(**found)


def store_parts(state: ServerState, project: Project | None, parts: list[UploadPart], names: store.Names,
                budget: Budget) -> list[dict[str, object]]:
    """Stage, identify, store, convert and record every file of the upload, in order.
    A file refused stops the upload; the files stored before it stay (a retry finds them
    ``unchanged``). Raises Discarded, MalformedUpload, OSError, SQLAlchemyError."""
    symbols_dir = state.settings.symbols_dir
    if not parts or all(part.size == 0 for part in parts):
        raise Discarded(400, "malformed_no_symbol_file", "no file in the upload")
    results: list[dict[str, object]] = []
    for part in parts:
        part = _decompressed(part, state, budget)
        try:
            if is_zip(part.head(4)):
                members = unpack_zip(part.file, symbols_dir, max_bytes=budget.left)
                try:
                    for member, staged in members:
                        results += _store_staged(state, project, staged, member, store.layout_names(member))
                finally:  # the members after a refused one
                    for _, staged in members:
                        staged.path.unlink(missing_ok=True)
            else:
                staged = store.stage(part.file, symbols_dir)
                part.close()  # the spooled copy goes before converting: the disk holds the file once
                results += _store_staged(state, project, staged, part.filename or names.debug_file, names)
        except store.TooLarge as exc:
            raise Discarded(413, exc.reason, str(exc), part.filename) from exc
        except MalformedSymbols as exc:
            raise Discarded(400, f"malformed_{exc.reason}", str(exc), getattr(exc, "file", part.filename)) from exc
        finally:
            part.close()
    return results


def _decompressed(part: UploadPart, state: ServerState, budget: Budget) -> UploadPart:
    """A gzip- or zstd-compressed file (``libc.so.6.sym.gz``) replaced by its content."""
    head = part.head(4)
    if head.startswith(GZIP_MAGIC):
        return decompress_part(part, "gzip", state.tmp_dir, budget)
    if head == ZSTD_MAGIC:
        return decompress_part(part, "zstd", state.tmp_dir, budget)
    return part


def _store_staged(state: ServerState, project: Project | None, staged: store.StagedFile, name: str | None,
                  names: store.Names) -> list[dict[str, object]]:
    """Store one staged file under each module it serves; the staged copy is removed."""
    settings = state.settings
    project_id = project.id if project else None
    try:
        out = []
        for identity in store.identify(staged.path, name=name, names=names):
            stored = _store_module(state, project_id, staged, identity, store.stored_name(identity, name))
            queries.record_symbol_file(state.ctx.engine, row=symbol_row(stored, project))
            if stored.status == "stored":
                if settings.blobs_on_s3:  # the local copy is a cache now: keep it under CRASHD_CACHE_MAX_BYTES
                    remote.LocalCache.of_web(settings).evict(keep=(settings.symbols_dir / stored.stored_as).parent)
                forget(state, identity)
            log.info("symbols %s: %s (%d bytes)", stored.status, stored.stored_as, stored.size)
            out.append(stored.as_dict())
        return out
    except MalformedSymbols as exc:
        exc.file = name  # type: ignore[attr-defined]  # which file of a zip, for the refusal
        raise
    finally:
        staged.path.unlink(missing_ok=True)


def _store_module(state: ServerState, project_id: int | None, staged: store.StagedFile, identity: store.Identity,
                  name: str) -> store.StoredFile:
    """Store and convert staged as identity's file called name in project_id's store.

    On an object store, whether the content is new is for the object store to say, not this
    process's own folder (any web process may have taken the first upload): the same size and
    sha256 there is ``unchanged``, neither converted nor put again; anything else is converted
    here and put, ``stored`` even when this folder had it (the retry of a failed put).
    Raises store.TooLarge, MalformedSymbols, OSError, BlobStoreError."""
    settings = state.settings
    if settings.blobs_on_s3:
        stored_as = store.stored_path(identity, name, project_id)
        if remote.holds(state.ctx.blobs, stored_as, size=staged.size, sha256=staged.sha256):
            return store.StoredFile(identity, staged.size, staged.sha256, stored_as, "unchanged")
    # The store's quota, counted again for each file (a zip's files are stored one by one).
    # A file replacing another of its path is counted whole, like the old one.
    room = settings.symbol_quota_bytes - symbol_use.store_bytes(state.ctx.engine, project_id=project_id)
    stored = store.store_file(staged, identity, name=name, symbols_dir=settings.symbols_dir,
                              cache_dir=settings.symbol_cache_dir, project_id=project_id, room=room)
    if not settings.blobs_on_s3:
        return stored
    # workers on other machines read it from there (symbols/remote.py)
    remote.publish(state.ctx.blobs, settings.symbols_dir, stored.stored_as, sha256=stored.sha256)
    return replace(stored, status="stored")


def symbol_row(stored: store.StoredFile, project: Project | None) -> SymbolFile:
    """The symbol_files row of a stored file."""
    i = stored.identity
    return SymbolFile(project_id=project.id if project else None, debug_file=i.debug_file, debug_id=i.debug_id,
                      code_file=i.code_file and i.code_file[:300], code_id=i.code_id and i.code_id[:200],
                      os=i.os and i.os[:50], cpu=i.cpu and i.cpu[:50], size=stored.size, sha256=stored.sha256,
                      path=stored.stored_as, uploaded_at=queries.utcnow())


def forget(state: ServerState, identity: store.Identity) -> None:
    """Tell symbol providers that the module changed: the in-process worker's at once (if it
    has one: one is never built here), those of other processes (RQ workers) through the
    store's generation file (on an object store, its generation blob), which they poll."""
    provider = state.ctx._symbols
    if provider is not None:
        provider.forget(identity.debug_file, identity.debug_id)
    bump_generation(state.settings.symbols_dir)
    if state.settings.blobs_on_s3:
        remote.bump_shared_generation(state.ctx.blobs)
    # Crashes processed without these symbols go through processing again by themselves,
    # and move to the group of their symbolicated signature.
    reprocess_for_symbols(state.ctx, state.queue, debug_file=identity.debug_file, debug_id=identity.debug_id)
