"""Symbol uploads on both backends: symupload's multipart, bare .sym bodies, zips of a symbol
tree, native ELF files compiled here; refusals; and the crash that needs them, before and after."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from storage import queries, users
from symbolicator.symbols.cache import open_caches
from symbolicator.symbols.sources import PROJECTS_DIR, store_root

from conftest import REPO, Crashd, LiveServer, require_corpus
from uploads import minidump_upload, multipart

SEGV = "linux-x64-generated-crashpad-segv-O0"
CRASHME_ID = "B19A4795B226ABBD7EE6DBD76B7952480"
TINY_ID = "0123456789ABCDEF0123456789ABCDEF0"
# gcc -Wl,--build-id=0x<BUILD_ID>: Breakpad's debug id is its first 16 bytes as a GUID (the
# first three fields little-endian) plus age 0; the code id is the whole build id.
BUILD_ID = "00112233445566778899aabbccddeeff00112233"
ELF_DEBUG_ID = "33221100554477668899AABBCCDDEEFF0"
TINY_C = "int tiny_function(int x) { return x * 3; }\nint main(int argc, char **argv) { return tiny_function(argc); }\n"


def tiny_sym(debug_id: str = TINY_ID, debug_file: str = "libtiny.so", body: str = "") -> bytes:
    """A small valid .sym: one function with line records, a PUBLIC and CFI."""
    body = body or ("FILE 0 tiny.c\nFUNC 1000 20 0 tiny_function\n1000 10 3 0\n1010 10 4 0\n"
                    "PUBLIC 2000 0 tiny_public\nSTACK CFI INIT 1000 20 .cfa: $rsp 8 + .ra: .cfa -8 + ^\n")
    return (f"MODULE Linux x86_64 {debug_id} {debug_file}\nINFO CODE_ID 8967452301EFCDAB\n" + body).encode()


def symupload_form(sym: bytes, filename: str, **override: str) -> tuple[bytes, str]:
    """What Breakpad's sym_upload_v1 sends: fields from the MODULE line (std::map order), then
    the file part ``symbol_file`` (libcurl: application/octet-stream)."""
    _, os_, cpu, debug_id, debug_file = sym.split(b"\n", 1)[0].decode().split(" ", 4)
    fields = {"code_file": debug_file, "cpu": cpu, "debug_file": debug_file,
              "debug_identifier": debug_id.replace("-", ""), "os": os_, **override}
    return multipart(fields, [("symbol_file", filename, sym, "application/octet-stream")],
                     boundary="------------------------d74496d66958873e")


def post(crashd: Crashd, content: bytes, ctype: str = "text/plain", *, project: str | None = None,
         query: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    project = project if project is not None else str(crashd.project.id)
    query = f"key={crashd.upload_token}" if query is None else query
    return crashd.client.post(f"/api/{project}/symbols/?{query}", content=content,
                              headers={"Content-Type": ctype, "User-Agent": "Breakpad/1.0 (Linux)", **(headers or {})})


def lookup(crashd: Crashd, debug_file: str, debug_id: str, query: str = "") -> httpx.Response:
    return crashd.client.get(f"/api/symbols/{debug_file}/{debug_id}?key={crashd.key}{query}")


def stored_files(crashd: Crashd, project_id: int | None = -1) -> list[str]:
    """Files in one symbol store (the project's by default; None: the shared one), relative to
    it; the staging folder must be empty (dot-files at the top, like the generation file and
    the projects' stores, are the store's own)."""
    root = store_root(crashd.settings.symbols_dir, crashd.project.id if project_id == -1 else project_id)
    staging = crashd.settings.symbols_dir / ".staging"
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []
    return [f for f in found if not f.startswith(".")]


def own(crashd: Crashd, path: str) -> str:
    """A path in the project's store as ``stored_as`` names it (relative to the symbols folder)."""
    return f"{PROJECTS_DIR}/{crashd.project.id}/{path}"


def own_caches(crashd: Crashd) -> Path:
    return store_root(crashd.settings.symbol_cache_dir, crashd.project.id)


def discards(crashd: Crashd) -> dict[str, int]:
    return crashd.client.get("/api/discards", headers=crashd.admin).json()["all_time"]


def corpus_syms() -> list[Path]:
    return sorted((require_corpus() / SEGV / "symbols").rglob("*.sym"))


# -- what is accepted -------------------------------------------------------------------------


def test_symupload_multipart_of_a_corpus_sym(crashd: Crashd) -> None:
    sym = next(p for p in corpus_syms() if p.name == "crashme.sym")
    response = post(crashd, *symupload_form(sym.read_bytes(), "crashme.sym"))
    assert response.status_code == 200, response.text
    (entry,) = response.json()["files"]
    assert entry == {"debug_file": "crashme", "debug_id": CRASHME_ID, "code_file": "crashme",
                     "code_id": "95479AB126B2BDAB7EE6DBD76B795248EC3681E3", "os": "Linux", "cpu": "x86_64",
                     "size": sym.stat().st_size, "sha256": entry["sha256"],
                     "stored_as": own(crashd, f"crashme/{CRASHME_ID}/crashme.sym"), "status": "stored"}
    assert stored_files(crashd) == [f"crashme/{CRASHME_ID}/crashme.sym"]
    # converted at upload: the first crash that needs it finds the caches ready
    assert (own_caches(crashd) / "crashme" / CRASHME_ID / "symbols.index").is_file()
    found = lookup(crashd, "crashme", CRASHME_ID)
    assert found.status_code == 200 and found.json()["files"][0]["project_id"] == crashd.project.id
    assert lookup(crashd, "crashme", CRASHME_ID, f"&sha256={entry['sha256']}").status_code == 200
    assert lookup(crashd, "crashme", CRASHME_ID, "&sha256=" + "0" * 64).status_code == 404


def test_plain_sym_body_named_by_its_module_line(crashd: Crashd) -> None:
    for ctype in ("text/plain", "application/octet-stream", "application/x-www-form-urlencoded"):  # curl --data-binary
        response = post(crashd, tiny_sym(), ctype, project="_")
        assert response.status_code == 200, response.text
    pdb = post(crashd, tiny_sym(debug_file="tiny.pdb").replace(b"Linux x86_64", b"windows x86"))
    assert pdb.json()["files"][0]["stored_as"] == own(crashd, f"tiny.pdb/{TINY_ID}/tiny.sym")
    assert stored_files(crashd) == [f"libtiny.so/{TINY_ID}/libtiny.so.sym", f"tiny.pdb/{TINY_ID}/tiny.sym"]
    symbols = open_caches(crashd.settings.symbols_dir / own(crashd, f"tiny.pdb/{TINY_ID}/tiny.sym"),
                          own_caches(crashd), "tiny.pdb", TINY_ID)
    assert symbols.function_at(0x1012).name == "tiny_function"


def test_debug_ids_match_case_insensitively(crashd: Crashd) -> None:
    response = post(crashd, tiny_sym(debug_id=TINY_ID.lower()))
    assert response.json()["files"][0]["debug_id"] == TINY_ID
    assert stored_files(crashd) == [f"libtiny.so/{TINY_ID}/libtiny.so.sym"]
    assert lookup(crashd, "libtiny.so", TINY_ID.lower()).status_code == 200
    assert lookup(crashd, "LIBTINY.SO", TINY_ID).status_code == 200
    # symupload names the id as the MODULE line does; any case and dashes agree
    again = post(crashd, *symupload_form(tiny_sym(), "libtiny.so.sym", debug_identifier=TINY_ID.lower()))
    assert again.status_code == 200, again.text


def test_reupload_is_unchanged_and_new_content_replaces(crashd: Crashd) -> None:
    first = post(crashd, tiny_sym()).json()["files"][0]
    path = crashd.settings.symbols_dir / first["stored_as"]
    mtime = path.stat().st_mtime_ns
    again = post(crashd, *symupload_form(tiny_sym(), "libtiny.so.sym")).json()["files"][0]
    assert again["status"] == "unchanged" and again["sha256"] == first["sha256"]
    assert path.stat().st_mtime_ns == mtime  # untouched: its caches stay valid
    newer = tiny_sym(body="FILE 0 tiny.c\nFUNC 1000 30 0 tiny_function_v2\n1000 30 3 0\n")
    replaced = post(crashd, newer).json()["files"][0]
    assert replaced["status"] == "stored" and path.read_bytes() == newer
    rows = lookup(crashd, "libtiny.so", TINY_ID).json()["files"]
    assert [row["sha256"] for row in rows] == [replaced["sha256"]]


def test_zip_of_a_symbol_tree(crashd: Crashd) -> None:
    root = require_corpus() / SEGV / "symbols"
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        for sym in corpus_syms():
            archive.write(sym, f"symbols/{sym.relative_to(root).as_posix()}")
        archive.writestr("__MACOSX/._crashme.sym", b"resource fork")
        archive.writestr("symbols/.DS_Store", b"finder")
    response = post(crashd, data.getvalue(), "application/zip")
    assert response.status_code == 200, response.text
    assert sorted(f["stored_as"] for f in response.json()["files"]) == [
        own(crashd, p.relative_to(root).as_posix()) for p in corpus_syms()]
    assert stored_files(crashd) == [p.relative_to(root).as_posix() for p in corpus_syms()]
    as_part = post(crashd, *multipart({}, [("symbol_file", "symbols.zip", data.getvalue(), "application/zip")]))
    assert {f["status"] for f in as_part.json()["files"]} == {"unchanged"}


def compile_tiny(tmp_path: Path) -> Path:
    """tinyprog: `gcc -g` with a fixed build id (so its debug id is known in advance)."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the native ELF test file (apt-get install gcc)")
    source = tmp_path / "tiny.c"
    source.write_text(TINY_C)
    binary = tmp_path / "tinyprog"
    subprocess.run(["gcc", "-g", "-O0", f"-Wl,--build-id=0x{BUILD_ID}", "-o", str(binary), str(source)],
                   check=True, capture_output=True)
    return binary


def test_native_elf_with_dwarf(crashd: Crashd, tmp_path: Path) -> None:
    binary = compile_tiny(tmp_path)
    as_file = [("symbol_file", "tinyprog", binary.read_bytes(), "application/octet-stream")]
    response = post(crashd, *multipart({}, as_file))
    assert response.status_code == 200, response.text
    (entry,) = response.json()["files"]
    assert (entry["debug_file"], entry["debug_id"], entry["code_id"]) == ("tinyprog", ELF_DEBUG_ID, BUILD_ID)
    assert (entry["stored_as"], entry["os"], entry["cpu"]) == (own(crashd, f"tinyprog/{ELF_DEBUG_ID}/tinyprog"),
                                                               "Linux", "x86_64")
    nm = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    address = int(next(line.split()[0] for line in nm.splitlines() if line.endswith(" tiny_function")), 16)
    symbols = open_caches(crashd.settings.symbols_dir / entry["stored_as"], own_caches(crashd),
                          "tinyprog", ELF_DEBUG_ID)
    assert symbols.function_at(address + 4).name == "tiny_function"
    assert symbols.symbolize(address + 4)[-1].file.endswith("tiny.c")
    # a bare body is named by ?debug_file=; without a name it cannot be placed
    named = post(crashd, binary.read_bytes(), "application/octet-stream", query=f"key={crashd.upload_token}&debug_file=tinyprog")
    assert named.json()["files"][0]["status"] == "unchanged"
    unnamed = post(crashd, binary.read_bytes(), "application/octet-stream")
    assert (unnamed.status_code, unnamed.json()["detail"]) == (400, "malformed_no_debug_file")
    wrong = post(crashd, *multipart({"debug_identifier": TINY_ID}, as_file))
    assert (wrong.status_code, wrong.json()["detail"]) == (400, "malformed_id_mismatch")


def test_admin_token_uploads_without_a_project(crashd: Crashd) -> None:
    response = post(crashd, tiny_sym(), project="_", query="", headers=crashd.admin)
    assert response.status_code == 200, response.text
    assert lookup(crashd, "libtiny.so", TINY_ID).json()["files"][0]["project_id"] is None
    named = post(crashd, tiny_sym(), project="game", query="", headers=crashd.admin)
    assert named.status_code == 200
    unknown = post(crashd, tiny_sym(), project="nope", query="", headers=crashd.admin)
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "unknown_project"})


# -- refusals ---------------------------------------------------------------------------------


def test_auth_failures_are_refused_and_counted(crashd: Crashd) -> None:
    assert post(crashd, tiny_sym(), query="").json() == {"detail": "missing_token"}
    assert post(crashd, tiny_sym(), query="key=wrong").json() == {"detail": "bad_token"}
    bearer = post(crashd, tiny_sym(), query="", headers={"Authorization": "Bearer crashd_wrong"})
    assert (bearer.status_code, bearer.json()) == (401, {"detail": "bad_token"})
    assert crashd.client.get(f"/api/symbols/libtiny.so/{TINY_ID}").status_code == 401
    assert crashd.client.get(f"/api/symbols/libtiny.so/{TINY_ID}?key=wrong").json() == {"detail": "bad_key"}
    assert stored_files(crashd) == []
    assert discards(crashd) == {"symbols_missing_token": 1, "symbols_bad_token": 2}


def test_the_ingest_key_never_uploads_symbols(crashd: Crashd) -> None:
    """Issue 11: the ingest key ships inside the game; with it anyone could replace the symbols
    every crash is read with. Every way a client can carry it is refused, for any store."""
    key, own_id = crashd.key, str(crashd.project.id)
    for project, query, headers in [(own_id, f"key={key}", {}), ("_", f"key={key}", {}),
                                    ("999", f"key={key}", {}), (own_id, f"sentry_key={key}", {}),
                                    (own_id, "", {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={key}"}),
                                    (own_id, "", {"Authorization": f"Bearer {key}"})]:
        response = post(crashd, *symupload_form(tiny_sym(), "libtiny.so.sym"), project=project, query=query,
                        headers=headers)
        assert (response.status_code, response.json()) == (403, {"detail": "symbols_need_token"}), (project, query)
    assert stored_files(crashd) == [] and stored_files(crashd, None) == []
    assert discards(crashd) == {"symbols_need_token": 6}
    assert lookup(crashd, "libtiny.so", TINY_ID).json() == {"detail": "not_found", "files": []}  # it still looks up


def test_uploader_token_uploads_to_its_own_project_only(crashd: Crashd) -> None:
    other = queries.create_project(crashd.state.ctx.engine, name="other-game")
    by_bearer = post(crashd, tiny_sym(), query="", headers={"Authorization": f"Bearer {crashd.upload_token}"})
    assert by_bearer.status_code == 200, by_bearer.text
    by_name = post(crashd, tiny_sym(debug_file="libname.so"), project=crashd.project.name)
    assert by_name.json()["files"][0]["stored_as"] == own(crashd, f"libname.so/{TINY_ID}/libname.so.sym")
    for project in (str(other.id), other.name, "999"):
        refused = post(crashd, tiny_sym(debug_file="libother.so"), project=project)
        assert (refused.status_code, refused.json()) == (403, {"detail": "wrong_project"}), project
    assert stored_files(crashd, other.id) == [] and stored_files(crashd, None) == []
    _, viewer = users.create_token(crashd.state.ctx.engine, name="grafana", role="viewer")
    as_viewer = post(crashd, tiny_sym(), query=f"key={viewer}")
    assert (as_viewer.status_code, as_viewer.json()) == (403, {"detail": "needs_admin_or_uploader"})
    # the lookup sees the token's own store and the shared one, not other projects'
    admin_to_other = post(crashd, tiny_sym(debug_file="libother.so"), project=str(other.id), query="",
                          headers=crashd.admin)
    assert admin_to_other.status_code == 200
    hidden = crashd.client.get(f"/api/symbols/libother.so/{TINY_ID}",
                               headers={"Authorization": f"Bearer {crashd.upload_token}"})
    assert hidden.status_code == 404
    assert lookup(crashd, "libother.so", TINY_ID).status_code == 404  # the ingest key: its project's too
    assert crashd.client.get(f"/api/symbols/libother.so/{TINY_ID}", headers=crashd.admin).status_code == 200


def test_uploader_token_reads_and_changes_nothing_else(crashd: Crashd) -> None:
    bearer = {"Authorization": f"Bearer {crashd.upload_token}"}
    for path in ("/api/groups", "/api/tickets", "/api/discards", f"/api/crashes/{'0' * 32}", "/api/symbols"):
        response = crashd.client.get(path, headers=bearer)
        assert response.status_code == 401, (path, response.status_code)
    ticket = crashd.client.post("/api/tickets/1/status", headers=bearer, json={"status": "fixed"})
    assert ticket.status_code == 401
    page = crashd.client.get("/", headers=bearer, follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2F")


def test_symbol_quota_per_store(crashd: Crashd) -> None:
    crashd.settings.symbol_quota_bytes = len(tiny_sym()) + 100
    assert post(crashd, tiny_sym()).status_code == 200
    assert post(crashd, tiny_sym()).json()["files"][0]["status"] == "unchanged"  # the same file: no more room
    full = post(crashd, tiny_sym(debug_file="libmore.so"))
    assert (full.status_code, full.json()) == (413, {"detail": "symbol_quota_exceeded"})
    assert stored_files(crashd) == [f"libtiny.so/{TINY_ID}/libtiny.so.sym"]
    shared = post(crashd, tiny_sym(debug_file="libmore.so"), project="_", query="", headers=crashd.admin)
    assert shared.status_code == 200, shared.text  # another store, another quota
    assert discards(crashd) == {"symbols_symbol_quota_exceeded": 1}


@pytest.mark.parametrize(("content", "code"), [
    (b"\x7fELF but not really", "malformed_not_symbols"),
    (b"MODULE Linux x86_64\nFUNC 1000 10 0 f\n", "malformed_no_module_record"),
    (b"MODULE Linux x86_64 NOT-HEX-AT-ALL libx.so\n", "malformed_bad_module_id"),
    (tiny_sym(debug_file="libx.so", body="FUNC zzz\n"), "malformed_symcache_failed"),
    (b"", "malformed_no_symbol_file"),
])
def test_malformed_files_are_refused_and_not_kept(crashd: Crashd, content: bytes, code: str) -> None:
    response = post(crashd, content, "application/octet-stream", query=f"key={crashd.upload_token}&debug_file=libx.so")
    assert (response.status_code, response.json()["detail"]) == (400, code)
    assert stored_files(crashd) == []
    assert discards(crashd) == {f"symbols_{code}": 1}


def test_failed_conversion_keeps_the_file_it_would_replace(crashd: Crashd) -> None:
    good = post(crashd, tiny_sym()).json()["files"][0]
    bad = post(crashd, tiny_sym(body="FUNC zzz\n"))
    assert bad.json()["detail"] == "malformed_symcache_failed"
    assert (crashd.settings.symbols_dir / good["stored_as"]).read_bytes() == tiny_sym()
    assert [own(crashd, f) for f in stored_files(crashd)] == [good["stored_as"]]
    module_cache = own_caches(crashd) / "libtiny.so" / TINY_ID
    assert not list(module_cache.glob("corrupt-*.json"))


def test_multipart_without_a_file_and_names_that_disagree(crashd: Crashd) -> None:
    empty = post(crashd, *multipart({"debug_file": "libtiny.so"}))
    assert empty.json() == {"detail": "malformed_no_symbol_file"}
    mismatch = post(crashd, *symupload_form(tiny_sym(), "libtiny.so.sym", debug_file="other.so"))
    assert (mismatch.status_code, mismatch.json()["detail"]) == (400, "malformed_id_mismatch")


def test_zip_bomb_stops_at_the_decompressed_cap(crashd: Crashd) -> None:
    crashd.settings.max_decompressed_bytes = 5 * 1024 * 1024
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"x.so/{TINY_ID}/x.so.sym", "w") as member:
            for _ in range(256):  # 256 MiB of zeros in a 250 KiB zip
                member.write(b"\0" * (1024 * 1024))
    assert len(data.getvalue()) < 1024 * 1024
    response = post(crashd, data.getvalue(), "application/zip")
    assert (response.status_code, response.json()["detail"]) == (413, "too_large_decompressed")
    assert stored_files(crashd) == []


def test_zip_member_larger_than_it_declares_is_refused(crashd: Crashd) -> None:
    """A forged directory declaring 100 bytes for a 1 MiB member: zipfile stops at 100 bytes
    and the CRC check fails."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"x.so/{TINY_ID}/x.so.sym", tiny_sym() + b"\n" * (1024 * 1024))
    raw = bytearray(data.getvalue())
    size = (len(tiny_sym()) + 1024 * 1024).to_bytes(4, "little")
    for at in (i for i in range(len(raw) - 4) if raw[i:i + 4] == size):
        raw[at:at + 4] = (100).to_bytes(4, "little")  # local header and central directory
    response = post(crashd, bytes(raw), "application/zip")
    assert (response.status_code, response.json()["detail"]) == (400, "malformed_bad_zip")
    assert stored_files(crashd) == []


def test_zip_paths_with_dot_dot_and_broken_zips(crashd: Crashd) -> None:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr(f"x.so/{TINY_ID}/x.so.sym", tiny_sym(debug_file="x.so"))
        archive.writestr("../../evil.sym", tiny_sym())
    response = post(crashd, data.getvalue(), "application/zip")
    assert (response.status_code, response.json()["detail"]) == (400, "malformed_zip_bad_path")
    broken = post(crashd, b"PK\x03\x04" + os.urandom(200), "application/zip")
    assert (broken.status_code, broken.json()["detail"]) == (400, "malformed_bad_zip")
    assert stored_files(crashd) == [] and not (crashd.settings.symbols_dir.parent / "evil.sym").exists()


def test_zip_with_a_bad_member_names_it_and_keeps_the_good_ones(crashd: Crashd) -> None:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr(f"libtiny.so/{TINY_ID}/libtiny.so.sym", tiny_sym())
        archive.writestr(f"libbad.so/{TINY_ID}/libbad.so.sym", tiny_sym(debug_file="libbad.so", body="FUNC zzz\n"))
        archive.writestr(f"libz.so/{TINY_ID}/libz.so.sym", tiny_sym(debug_file="libz.so"))
        archive.writestr(f"liby.so/{TINY_ID}/liby.so.sym", tiny_sym(debug_file="libOTHER.so"))
    response = post(crashd, data.getvalue(), "application/zip")
    assert (response.status_code, response.json()) == (
        400, {"detail": "malformed_symcache_failed", "file": f"libbad.so/{TINY_ID}/libbad.so.sym"})
    assert stored_files(crashd) == [f"libtiny.so/{TINY_ID}/libtiny.so.sym"]  # nothing left in .staging
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr(f"liby.so/{TINY_ID}/liby.so.sym", tiny_sym(debug_file="libOTHER.so"))
    mismatch = post(crashd, other.getvalue(), "application/zip")
    assert mismatch.json()["detail"] == "malformed_id_mismatch"  # the zip path names another module


def test_too_large_body(crashd: Crashd) -> None:
    crashd.settings.max_upload_bytes = 10_000
    response = post(crashd, tiny_sym() + b"\n" * 20_000)
    assert (response.status_code, response.json()) == (413, {"detail": "too_large"})
    chunked = crashd.client.post(f"/api/_/symbols/?key={crashd.upload_token}", content=iter([tiny_sym(), b"\n" * 20_000]))
    assert (chunked.status_code, chunked.json()) == (413, {"detail": "too_large"})
    assert discards(crashd) == {"symbols_too_large": 2}


# -- the crash that needs them ----------------------------------------------------------------


def upload_dump(crashd: Crashd, dump: bytes, guid: str) -> str:
    body, ctype = minidump_upload(dump, prod="crashme", ver="1.0.0", guid=guid)
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                  content=body, headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    return response.text


def test_symbols_uploaded_after_a_crash_symbolicate_the_next_one(crashd: Crashd) -> None:
    dump = (require_corpus() / SEGV / f"{SEGV}.dmp").read_bytes()
    first = upload_dump(crashd, dump, guid="tester-before")
    crashd.drain()
    before = crashd.crash(first)
    assert f"crashme/{CRASHME_ID}" in before["processed"]["missing_symbols"]
    assert before["stackwalk"]["crashing_thread"]["frames"][0]["function"] is None
    for sym in corpus_syms():
        response = post(crashd, *symupload_form(sym.read_bytes(), sym.name))
        assert response.json()["files"][0]["status"] == "stored"
    second = upload_dump(crashd, dump, guid="tester-after")
    assert second != first
    crashd.drain()
    after = crashd.crash(second)
    assert after["processed"]["top_frames"][0]["function"] == "crash_here"
    assert f"crashme/{CRASHME_ID}" in after["processed"]["loaded_symbols"]
    frame = after["stackwalk"]["crashing_thread"]["frames"][0]
    assert (frame["function"], frame["line"], frame["trust"]) == ("crash_here", 43, "context")


# -- clients: `crashd symbols upload` and Breakpad's own symupload -----------------------------


def cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHD_")}
    return subprocess.run([sys.executable, "-m", "server.cli", "symbols", "upload", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=120, env={**env, "CRASHD_DATA_DIR": str(tmp_path / "cli")})


def test_cli_uploads_a_symbol_tree_then_skips_it(crashd: Crashd, live: LiveServer, tmp_path: Path) -> None:
    tree = require_corpus() / SEGV / "symbols"
    ingest = cli(str(tree), "--url", live.url, "--token", crashd.key, tmp_path=tmp_path)
    assert ingest.returncode == 1 and "HTTP 403 symbols_need_token" in ingest.stderr
    first = cli(str(tree), "--url", live.url, "--token", crashd.upload_token, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "uploaded 3, skipped 0, failed 0"
    progress = first.stderr.splitlines()  # not a terminal: one line per file
    assert progress[-1].startswith("[########################] 3/3 ") and len(progress) == 3
    assert len(stored_files(crashd)) == 3
    second = cli(str(tree), "--url", live.url + "/", "--token", crashd.upload_token, "--json", tmp_path=tmp_path)
    summary = json.loads(second.stdout)
    assert (second.returncode, summary["uploaded"], summary["skipped"], summary["failed"]) == (0, 0, 3, 0)
    refused = cli(str(tree), "--url", live.url, "--token", "wrong", "--project", "game", tmp_path=tmp_path)
    assert refused.returncode == 1 and refused.stdout.strip() == "uploaded 0, skipped 0, failed 3"
    assert "HTTP 401 bad_key" in refused.stderr  # the lookup before the upload


def test_cli_uploads_loose_native_files_and_ignores_others(crashd: Crashd, live: LiveServer, tmp_path: Path) -> None:
    folder = tmp_path / "build"
    folder.mkdir()
    compile_tiny(folder)
    (folder / "notes.txt").write_text("not a debug file")
    (folder / "libtiny.so.sym").write_bytes(tiny_sym())
    done = cli(str(folder), "--url", live.url, "--token", crashd.upload_token, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "uploaded 2, skipped 0, failed 0, ignored 2 (not debug files)"  # tiny.c, notes.txt
    assert f"tinyprog/{ELF_DEBUG_ID}/tinyprog" in stored_files(crashd)


# `make test` fetches Breakpad's source into .tools/ (the Makefile's breakpad-src target) and
# passes it here; bench/install-tools.sh leaves another copy in /opt/crashd-bench-tools.
BREAKPAD_SRC = Path(os.environ.get("CRASHD_BREAKPAD_SRC",
                                   "/opt/crashd-bench-tools/breakpad/node_modules/minidump/deps/breakpad/src"))


@pytest.fixture(scope="session")
def symupload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Breakpad's Linux symupload built from source (it dlopens libcurl at run time)."""
    if not (BREAKPAD_SRC / "tools/linux/symupload/sym_upload.cc").is_file():
        pytest.skip(f"no Breakpad source at {BREAKPAD_SRC} (make breakpad-src, or set CRASHD_BREAKPAD_SRC)")
    out = tmp_path_factory.mktemp("symupload")
    (out / "config.h").write_text("")
    sources = ["tools/linux/symupload/sym_upload.cc", "common/linux/symbol_upload.cc", "common/linux/http_upload.cc",
               "common/linux/libcurl_wrapper.cc", "common/linux/symbol_collector_client.cc", "common/path_helper.cc"]
    subprocess.run(["g++", "-std=c++17", "-DHAVE_CONFIG_H", f"-I{out}", f"-I{BREAKPAD_SRC}",
                    "-o", str(out / "symupload"), *(str(BREAKPAD_SRC / s) for s in sources), "-ldl"],
                   check=True, capture_output=True)
    return out / "symupload"


def test_real_breakpad_symupload(crashd: Crashd, live: LiveServer, symupload: Path) -> None:
    sym = next(p for p in corpus_syms() if p.name == "crashme.sym")
    url = f"{live.url}/api/{crashd.project.id}/symbols/?key={crashd.upload_token}"
    done = subprocess.run([str(symupload), "-v", "1.0.0", str(sym), url], capture_output=True, text=True, timeout=60)
    assert "Successfully sent the symbol file." in done.stdout, done.stdout + done.stderr
    assert stored_files(crashd) == [f"crashme/{CRASHME_ID}/crashme.sym"]
    for wrong in ("wrong", crashd.key):  # the ingest key ships in the game: it never uploads symbols
        refused = subprocess.run([str(symupload), str(sym), url.replace(crashd.upload_token, wrong)],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "Successfully" not in refused.stdout


def test_real_breakpad_symupload_v2(crashd: Crashd, live: LiveServer, symupload: Path) -> None:
    """sym-upload-v2: ``-k`` puts the token in ``?key=`` of checkStatus, create and complete; the
    file is PUT to the URL create answered. The ingest key is refused there too."""
    sym = next(p for p in corpus_syms() if p.name == "crashme.sym")
    url = f"{live.url}/api/{crashd.project.id}/symbols"

    def v2(key: str, *flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(symupload), "-p", "sym-upload-v2", "-k", key, *flags, str(sym), url],
                              capture_output=True, text=True, timeout=60)

    refused = v2(crashd.key)
    assert "Successfully" not in refused.stdout and stored_files(crashd) == []
    done = v2(crashd.upload_token)
    assert "Successfully sent the symbol file." in done.stdout, done.stdout + done.stderr
    assert stored_files(crashd) == [f"crashme/{CRASHME_ID}/crashme.sym"]
    assert "already exists" in v2(crashd.upload_token).stdout  # checkStatus: FOUND
    assert "checksum matched" in v2(crashd.upload_token, "-f").stdout  # complete: DUPLICATE_DATA
    assert not list((crashd.settings.symbols_dir / ".staging").iterdir())  # nothing left waiting
    assert discards(crashd) == {"symbols_need_token": 1}


def test_a_crash_uses_its_projects_store_then_the_shared_one(crashd: Crashd) -> None:
    """Issue 11: symbols uploaded to another project never serve this project's crashes; the
    shared store (an admin's ``/api/_/symbols/``) does, after the project's own."""
    dump = (require_corpus() / SEGV / f"{SEGV}.dmp").read_bytes()
    sym = next(p for p in corpus_syms() if p.name == "crashme.sym").read_bytes()
    other = queries.create_project(crashd.state.ctx.engine, name="other-game")

    def upload(project: str, content: bytes, headers: dict[str, str]) -> None:
        response = post(crashd, *symupload_form(content, "crashme.sym"), project=project, query="", headers=headers)
        assert response.status_code == 200, response.text

    def top_function(guid: str) -> str | None:
        crash_id = upload_dump(crashd, dump, guid=guid)
        crashd.drain()
        return crashd.crash(crash_id)["stackwalk"]["crashing_thread"]["frames"][0]["function"]

    upload(str(other.id), sym.replace(b" crash_here\n", b" other_projects_crash_here\n"), crashd.admin)
    assert top_function("tester-1") is None  # the other project's file is not ours
    upload("_", sym.replace(b" crash_here\n", b" shared_crash_here\n"), crashd.admin)
    assert top_function("tester-2") == "shared_crash_here"
    upload(str(crashd.project.id), sym, {"Authorization": f"Bearer {crashd.upload_token}"})
    assert top_function("tester-3") == "crash_here"  # the project's own store comes first


def test_native_elf_uploaded_after_a_crash_symbolicates_the_next_one(crashd: Crashd) -> None:
    """The corpus program itself (ELF with DWARF), named as the dump names the module."""
    case = require_corpus() / SEGV
    dump = (case / f"{SEGV}.dmp").read_bytes()
    upload_dump(crashd, dump, guid="tester-before")
    crashd.drain()
    elf = [("symbol_file", "crashme.elf", (case / "crashme.elf").read_bytes(), "application/octet-stream")]
    (entry,) = post(crashd, *multipart({"debug_file": "crashme"}, elf)).json()["files"]
    assert entry["stored_as"] == own(crashd, f"crashme/{CRASHME_ID}/crashme.elf")
    second = upload_dump(crashd, dump, guid="tester-after")
    crashd.drain()
    after = crashd.crash(second)
    frame = after["stackwalk"]["crashing_thread"]["frames"][0]
    assert (frame["function"], frame["line"]) == ("crash_here", 43)
