"""Uploaded symbols in the object store (symbolicator/symbols/remote.py), against a real
S3-compatible server: published on upload, found by a worker that shares no disk with the web
process (whatever the case of the module's name), converted into its bounded local cache
(symbol servers' downloads included), evicted least recently used first; an upload another web
process took first is unchanged; abandoned symupload v2 uploads are swept."""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from test_symbol_sources import SymbolServer, server  # noqa: F401 - server: the symbol server fixture
from test_symbols_api import TINY_ID, tiny_sym

from schemas.settings import Settings
from schemas.stack import Module
from schemas.tables import utcnow
from storage import queries
from storage.blobs import make_blob_store
from symbolicator.symbols import remote
from symbolicator.symbols.provider import CachedSymbolProvider
from symbolicator.symbols.sources import LocalDirSource
from symbolicator.symbols.types import SymbolStatus
from workers.sweeper import delete_orphans

from conftest import Crashd, own_s3_crashd


def module(debug_id: str = TINY_ID, debug_file: str = "libtiny.so") -> Module:
    return Module(base_addr=0x400000, size=0x10000, code_file=debug_file, debug_file=debug_file, debug_id=debug_id)


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
    The retry finds the local copy unchanged and still puts it, `stored`: new to the object store
    and to the workers (our own SeaweedFS, killed)."""
    with own_s3_crashd(tmp_path, monkeypatch, "down") as (server, crashd):
        server.stop()
        headers = {"Authorization": f"Bearer {crashd.admin['Authorization'].split()[1]}"}
        refused = crashd.client.post("/api/_/symbols/", content=tiny_sym(), headers=headers)
        assert (refused.status_code, refused.json()) == (503, {"detail": "storage_unavailable"})
        assert refused.headers["Retry-After"]
        assert stored_rows(crashd) == 0  # not recorded: nobody is told it is there
        server.restart()
        retry = crashd.client.post("/api/_/symbols/", content=tiny_sym(), headers=headers)
        assert retry.status_code == 200, retry.text
        assert retry.json()["files"][0]["status"] == "stored"
        assert crashd.state.ctx.blobs.read_bytes(f"symbols/libtiny.so/{TINY_ID}/libtiny.so.sym") == tiny_sym()
        assert crashd.client.get(f"/api/symbols/libtiny.so/{TINY_ID}", headers=crashd.admin).status_code == 200
        assert stored_rows(crashd) == 1


def test_debug_file_names_match_ignoring_case_as_in_a_local_store(s3_crashd: Crashd, tmp_path: Path) -> None:
    """A crash names its module ``game.pdb`` or ``GAME.PDB``, the upload ``Game.PDB``: the local
    store finds it whatever the case (LocalDirSource), and so must the object store's workers,
    so that the same crash symbolicates the same on both."""
    stored = upload(s3_crashd, tiny_sym(debug_file="Game.PDB"))
    assert stored["stored_as"] == f"Game.PDB/{TINY_ID}/Game.sym"  # the upload's case is kept
    blobs = s3_crashd.state.ctx.blobs
    assert blobs.read_bytes(f"symbols/game.pdb/{TINY_ID}/Game.sym") == tiny_sym(debug_file="Game.PDB")
    assert s3_crashd.client.get(f"/api/symbols/GAME.pdb/{TINY_ID}?key={s3_crashd.key}").status_code == 200
    local = CachedSymbolProvider([LocalDirSource(s3_crashd.settings.symbols_dir)], tmp_path / "local-cache")
    settings = worker_settings(s3_crashd, tmp_path)
    remote_provider = CachedSymbolProvider.from_settings(settings, blobs=make_blob_store(settings))
    for name in ("game.pdb", "GAME.PDB", "Game.PDB"):
        for provider in (local, remote_provider):
            assert provider.status(module(debug_file=name)) is SymbolStatus.loaded, (name, provider.sources)
            assert provider.function_at(module(debug_file=name), 0x1000).name == "tiny_function"  # type: ignore[union-attr]
    # An object put before names were folded (under the upload's case) is still found by that name.
    old_id = TINY_ID[:-1] + "7"
    blobs.put_bytes(f"symbols/Old.PDB/{old_id}/Old.sym", tiny_sym(old_id, "Old.PDB"))
    assert remote_provider.status(module(old_id, "Old.PDB")) is SymbolStatus.loaded


def test_an_upload_another_web_process_took_first_is_unchanged(s3_crashd: Crashd) -> None:
    """Web processes share the object store, not a disk: whether an upload is new is decided by
    the object there (its size and sha256), not by this process's own symbols folder."""
    first = upload(s3_crashd, tiny_sym())
    assert first["status"] == "stored"
    local = s3_crashd.settings.symbols_dir / first["stored_as"]
    assert local.is_file()
    # This process becomes another one: a data folder of its own, the same object store.
    shutil.rmtree(s3_crashd.settings.symbols_dir)
    shutil.rmtree(s3_crashd.settings.symbol_cache_dir)
    again = upload(s3_crashd, tiny_sym())
    assert (again["status"], again["sha256"]) == ("unchanged", first["sha256"])
    assert not local.exists()  # neither converted nor put again
    # symupload v2 through it: DUPLICATE_DATA.
    base, token = "/api/_/symbols/v1", s3_crashd.admin["Authorization"].split()[1]
    upload_key = s3_crashd.client.post(f"{base}/uploads:create?key={token}").json()["uploadKey"]
    assert s3_crashd.client.put(f"{base}/uploads/{upload_key}", content=tiny_sym()).status_code == 200
    body = f'{{symbol_id: {{debug_file: "libtiny.so", debug_id: "{TINY_ID}"}}, symbol_upload_type: "BREAKPAD"}}'
    done = s3_crashd.client.post(f"{base}/uploads/{upload_key}:complete?key={token}", content=body)
    assert (done.status_code, done.json()) == (200, {"result": "DUPLICATE_DATA"}), done.text
    # New content at the same place is stored; so is a file the object store lost, even though
    # this process still has it (the retry of a put that failed): workers must be told.
    changed = upload(s3_crashd, tiny_sym(body="FILE 0 tiny.c\nFUNC 1000 20 0 renamed_function\n1000 20 3 0\n"))
    assert changed["status"] == "stored" and local.is_file()
    s3_crashd.state.ctx.blobs.delete(f"symbols/{changed['stored_as']}")
    assert upload(s3_crashd, tiny_sym(body="FILE 0 tiny.c\nFUNC 1000 20 0 renamed_function\n1000 20 3 0\n"))["status"] == "stored"
    info = s3_crashd.state.ctx.blobs.info(f"symbols/{changed['stored_as']}")
    assert (info.size, info.sha256) == (changed["size"], changed["sha256"])
    assert stored_rows(s3_crashd) == 1  # the replaced content lost its row


def test_abandoned_symupload_v2_uploads_are_swept_from_the_object_store(s3_crashd: Crashd) -> None:
    """An upload created and PUT but never completed waits under symbols/.staging/ in the object
    store; the sweeper's orphan pass deletes it once older than CRASHD_ORPHAN_BLOB_GRACE_SECONDS."""
    base, token = f"/api/{s3_crashd.project.id}/symbols/v1", s3_crashd.upload_token
    upload_key = s3_crashd.client.post(f"{base}/uploads:create?key={token}").json()["uploadKey"]
    assert s3_crashd.client.put(f"{base}/uploads/{upload_key}", content=tiny_sym()).status_code == 200
    blobs, ctx = s3_crashd.state.ctx.blobs, s3_crashd.state.ctx
    waiting = [f"symbols/.staging/v2-{upload_key}.json", f"symbols/.staging/v2-{upload_key}.upload"]
    assert [key for key, _ in blobs.iter_folder("symbols/.staging")] == waiting
    assert delete_orphans(ctx, utcnow()) == []  # young: its client may still complete it
    later = utcnow() + timedelta(seconds=s3_crashd.settings.orphan_blob_grace_seconds + 60)
    assert sorted(delete_orphans(ctx, later)) == waiting
    assert list(blobs.iter_folder("symbols/.staging")) == []
    body = f'{{symbol_id: {{debug_file: "libtiny.so", debug_id: "{TINY_ID}"}}, symbol_upload_type: "BREAKPAD"}}'
    assert s3_crashd.client.post(f"{base}/uploads/{upload_key}:complete?key={token}", content=body).status_code == 404


def server_sym(debug_id: str) -> bytes:
    funcs = "".join(f"FUNC {0x1000 + 0x10 * i:x} 10 0 function_{i}\n" for i in range(50))
    return f"MODULE windows x86 {debug_id} app.pdb\n{funcs}PUBLIC 2000 0 helper\n".encode()


def tree_bytes(root: Path) -> int:
    return sum(path.lstat().st_size for path in root.rglob("*") if path.is_file())


def test_symbol_server_downloads_are_held_under_the_cache_cap(s3_env: dict[str, str], server: SymbolServer,
                                                              tmp_path: Path) -> None:
    """CRASHD_SYMBOL_URLS downloads are kept in CRASHD_CACHE_DIR and count against
    CRASHD_CACHE_MAX_BYTES like the object store's modules: least recently used out first,
    with their caches, and downloaded again when needed."""
    ids = [TINY_ID[:-1] + str(i) for i in range(3)]
    paths = {i: f"/symbols/app.pdb/{i}/app.sym" for i in ids}
    for debug_id, path in paths.items():
        server.routes[path] = (200, server_sym(debug_id))
    settings = Settings(data_dir=tmp_path / "worker", blob_url=s3_env["CRASHD_BLOB_URL"],
                        s3_endpoint_url=s3_env["CRASHD_S3_ENDPOINT_URL"], symbol_urls=[server.url])
    provider = CachedSymbolProvider.from_settings(settings, blobs=make_blob_store(settings))
    source = provider.sources[-1]
    assert isinstance(source, remote.HttpCacheSource)
    assert provider.status(module(ids[0], "app.pdb")) is SymbolStatus.loaded
    one = tree_bytes(settings.local_cache_dir)  # a module: its download and its caches
    # Room for two modules and a half download: the third one's download pushes the first out.
    source.cache.max_bytes = 2 * one + len(server_sym(ids[0])) // 2
    for debug_id in ids[1:]:
        time.sleep(0.01)  # distinct last-use times
        assert provider.status(module(debug_id, "app.pdb")) is SymbolStatus.loaded
    downloads = settings.local_cache_dir / "symcache" / "_http"
    kept = {p.parent.name for p in downloads.glob("*/app.pdb/*/app.sym")}
    assert kept == set(ids[1:])
    assert not (settings.local_cache_dir / "symcache" / "app.pdb" / ids[0]).exists()  # its caches went too
    assert (settings.local_cache_dir / "symcache" / "app.pdb" / ids[2] / "symbols.symcache").is_file()
    assert tree_bytes(settings.local_cache_dir) <= source.cache.max_bytes
    provider.forget("app.pdb", ids[0])
    assert provider.status(module(ids[0], "app.pdb")) is SymbolStatus.loaded  # fetched again
    assert server.hits[paths[ids[0]]] == 2
