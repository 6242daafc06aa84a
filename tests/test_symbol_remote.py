"""Uploaded symbols in the object store (symbolicator/symbols/remote.py), against a real
S3-compatible server: published on upload, found by a worker that shares no disk with the web
process, converted into its bounded local cache, evicted least recently used first."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from test_symbols_api import TINY_ID, tiny_sym

from schemas.settings import Settings
from schemas.stack import Module
from storage import queries
from storage.blobs import make_blob_store
from symbolicator.symbols import remote
from symbolicator.symbols.provider import CachedSymbolProvider
from symbolicator.symbols.types import SymbolStatus

from conftest import Crashd, _crashd, make_settings
from s3_server import S3Server


def module(debug_id: str = TINY_ID) -> Module:
    return Module(base_addr=0x400000, size=0x10000, code_file="libtiny.so", debug_file="libtiny.so", debug_id=debug_id)


def upload(crashd: Crashd, sym: bytes, project: str = "_") -> dict:
    token = crashd.upload_token if project != "_" else crashd.admin["Authorization"].split()[1]
    response = crashd.client.post(f"/api/{project}/symbols/", content=sym, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()["files"][0]


def stored_rows(crashd: Crashd) -> int:
    return len(queries.symbol_files(crashd.state.ctx.engine, debug_file="libtiny.so", debug_id=TINY_ID))


def worker_settings(crashd: Crashd, tmp_path: Path, **extra) -> Settings:
    """A worker's settings on another machine: its own data dir, the same object store."""
    fields = {"blob_url": crashd.settings.blob_url, "s3_endpoint_url": crashd.settings.s3_endpoint_url, **extra}
    return Settings(data_dir=tmp_path / "worker", **fields)


def test_an_upload_is_published_and_a_worker_elsewhere_loads_it(s3_crashd: Crashd, tmp_path: Path) -> None:
    shared = upload(s3_crashd, tiny_sym())
    own = upload(s3_crashd, tiny_sym(TINY_ID[:-1] + "1"), project=str(s3_crashd.project.id))
    blobs = s3_crashd.state.ctx.blobs
    assert blobs.read_bytes(f"symbols/libtiny.so/{TINY_ID}/libtiny.so.sym") == tiny_sym()
    assert own["stored_as"].startswith(f".projects/{s3_crashd.project.id}/") and blobs.exists(f"symbols/{own['stored_as']}")
    # Another web process has none of it on disk: the lookup answers from the object store.
    shutil.rmtree(s3_crashd.settings.symbols_dir)
    found = s3_crashd.client.get(f"/api/symbols/libtiny.so/{TINY_ID}?key={s3_crashd.key}")
    assert found.status_code == 200 and found.json()["files"][0]["sha256"] == shared["sha256"]
    settings = worker_settings(s3_crashd, tmp_path)
    provider = CachedSymbolProvider.from_settings(settings, blobs=make_blob_store(settings))
    assert provider.status(module()) is SymbolStatus.loaded
    assert provider.function_at(module(), 0x1000).name == "tiny_function"  # type: ignore[union-attr]
    project = provider.for_project(s3_crashd.project.id)
    assert project.status(module(TINY_ID[:-1] + "1")) is SymbolStatus.loaded
    assert provider.status(module(TINY_ID[:-1] + "1")) is SymbolStatus.missing  # not in the shared store
    cache = settings.data_dir / "cache"
    assert (cache / "symbols" / "libtiny.so" / TINY_ID / "libtiny.so.sym").read_bytes() == tiny_sym()
    assert (cache / "symcache" / "libtiny.so" / TINY_ID / "symbols.symcache").is_file()
    assert (cache / "symbols" / ".projects" / str(s3_crashd.project.id) / "libtiny.so").is_dir()


def test_a_late_upload_reaches_a_worker_through_the_shared_generation(s3_crashd: Crashd, tmp_path: Path) -> None:
    settings = worker_settings(s3_crashd, tmp_path)
    provider = CachedSymbolProvider.from_settings(settings, blobs=make_blob_store(settings), recheck_seconds=3600)
    provider.generation_poll_seconds = 0
    assert provider.status(module()) is SymbolStatus.missing  # remembered for an hour...
    upload(s3_crashd, tiny_sym())
    assert provider.status(module()) is SymbolStatus.loaded  # ...unless the store's generation moves
    # New content under the same name replaces the local copy.
    upload(s3_crashd, tiny_sym(body="FILE 0 tiny.c\nFUNC 1000 20 0 renamed_function\n1000 20 3 0\n"))
    provider.forget("libtiny.so", TINY_ID)
    assert provider.function_at(module(), 0x1000).name == "renamed_function"  # type: ignore[union-attr]


def test_the_object_store_down_is_unavailable_not_missing(s3_crashd: Crashd, tmp_path: Path) -> None:
    settings = worker_settings(s3_crashd, tmp_path, s3_endpoint_url="http://127.0.0.1:9")
    provider = CachedSymbolProvider.from_settings(settings, blobs=make_blob_store(settings))
    assert provider.status(module()) is SymbolStatus.unavailable
    assert provider.reason(module()) == "object_store"


def test_local_cache_evicts_least_recently_used_modules(tmp_path: Path) -> None:
    cache = remote.LocalCache(tmp_path / "cache", max_bytes=2500)
    folders = []
    for i, name in enumerate(("a.so", "b.so", "c.so")):
        folder = cache.files / name / TINY_ID
        folder.mkdir(parents=True)
        (folder / f"{name}.sym").write_bytes(b"x" * 1000)
        (cache.caches / name / TINY_ID).mkdir(parents=True)
        (cache.caches / name / TINY_ID / "symbols.symcache").write_bytes(b"y" * 100)
        os.utime(folder, (time.time() - 100 + i, time.time() - 100 + i))
        folders.append(folder)
    os.utime(folders[0])  # a.so used just now: b.so is the oldest
    assert cache.evict(keep=folders[2]) == 1100
    assert [f.exists() for f in folders] == [True, False, True]
    assert not (cache.caches / "b.so" / TINY_ID).exists()
    assert cache.evict() == 0  # under the cap


def test_symupload_v2_steps_may_each_reach_another_web_process(s3_crashd: Crashd) -> None:
    """create, PUT and complete go to three web processes that share no disk: between the steps
    this process's staging folder is wiped, as if another one had answered."""
    base, token = f"/api/{s3_crashd.project.id}/symbols/v1", s3_crashd.upload_token
    staging = s3_crashd.settings.symbols_dir / ".staging"
    created = s3_crashd.client.post(f"{base}/uploads:create?key={token}")
    assert created.status_code == 200, created.text
    upload_key = created.json()["uploadKey"]
    shutil.rmtree(staging, ignore_errors=True)
    put = s3_crashd.client.put(f"{base}/uploads/{upload_key}", content=tiny_sym())
    assert put.status_code == 200, put.text
    shutil.rmtree(staging, ignore_errors=True)
    body = f'{{symbol_id: {{debug_file: "libtiny.so", debug_id: "{TINY_ID}"}}, symbol_upload_type: "BREAKPAD"}}'
    done = s3_crashd.client.post(f"{base}/uploads/{upload_key}:complete?key={token}", content=body)
    assert (done.status_code, done.json()) == (200, {"result": "OK"}), done.text
    blobs = s3_crashd.state.ctx.blobs
    assert blobs.read_bytes(f"symbols/.projects/{s3_crashd.project.id}/libtiny.so/{TINY_ID}/libtiny.so.sym") == tiny_sym()
    assert [key for key, _ in blobs.iter_folder("symbols/.staging")] == []  # nothing left waiting
    status = s3_crashd.client.get(f"{base}/symbols/libtiny.so/{TINY_ID}:checkStatus?key={token}")
    assert status.json() == {"status": "FOUND"}
    again = s3_crashd.client.post(f"{base}/uploads/{upload_key}:complete?key={token}", content=body)
    assert again.status_code == 404  # the key was used up


def test_a_web_process_keeps_its_local_symbol_copies_under_the_cap(s3_crashd: Crashd, tmp_path: Path) -> None:
    """With an object store, the web process's symbols folder is only where uploads are converted:
    past CRASHD_CACHE_MAX_BYTES its least recently stored modules go, and stay findable."""
    s3_crashd.settings.cache_max_bytes = 1500
    ids = [TINY_ID[:-1] + str(i) for i in range(3)]
    for debug_id in ids:
        upload(s3_crashd, tiny_sym(debug_id))
    local = [s3_crashd.settings.symbols_dir / "libtiny.so" / debug_id for debug_id in ids]
    assert local[-1].is_dir() and not local[0].exists()
    assert s3_crashd.client.get(f"/api/symbols/libtiny.so/{ids[0]}?key={s3_crashd.key}").status_code == 200
    settings = worker_settings(s3_crashd, tmp_path)
    provider = CachedSymbolProvider.from_settings(settings, blobs=make_blob_store(settings))
    assert provider.status(module(ids[0])) is SymbolStatus.loaded


def test_a_symbol_upload_while_the_object_store_is_down_is_503_and_its_retry_publishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file converts and is kept locally, but the put fails: 503 + Retry-After and no row.
    The retry finds the local copy unchanged and still puts it (our own SeaweedFS, killed)."""
    server = S3Server.start(tmp_path / "s3")
    try:
        for name, value in server.env(prefix="down").items():
            monkeypatch.setenv(name, value)
        settings = make_settings("sqlite-inprocess", tmp_path, None, None, blob_url="s3://crashd/down",
                                 s3_endpoint_url=server.endpoint)
        for crashd in _crashd("sqlite-s3", settings):
            server.stop()
            headers = {"Authorization": f"Bearer {crashd.admin['Authorization'].split()[1]}"}
            refused = crashd.client.post("/api/_/symbols/", content=tiny_sym(), headers=headers)
            assert (refused.status_code, refused.json()) == (503, {"detail": "storage_unavailable"})
            assert refused.headers["Retry-After"]
            assert stored_rows(crashd) == 0  # not recorded: nobody is told it is there
            server.restart()
            retry = crashd.client.post("/api/_/symbols/", content=tiny_sym(), headers=headers)
            assert retry.status_code == 200, retry.text
            assert crashd.state.ctx.blobs.read_bytes(f"symbols/libtiny.so/{TINY_ID}/libtiny.so.sym") == tiny_sym()
            assert crashd.client.get(f"/api/symbols/libtiny.so/{TINY_ID}", headers=crashd.admin).status_code == 200
            assert stored_rows(crashd) == 1
    finally:
        server.stop()
