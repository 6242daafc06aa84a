"""Ingest endpoints on both backends: accepted uploads, every bad input, dedupe, 503s."""

from __future__ import annotations

import contextlib
import gzip
import re
import resource
import signal
import uuid
from typing import Iterator
from urllib.parse import quote

import pytest
import zstandard

from storage.blobs import make_blob_store

from conftest import Crashd, own_s3_crashd
from minidump_writer import small_dump
from uploads import gzipped, minidump_upload, multipart

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def post_minidump(crashd: Crashd, body: bytes, content_type: str, *, key: str | None = None,
                  headers: dict[str, str] | None = None, query: str = "", project: str | None = None):
    url = f"/api/{project or crashd.project.id}/minidump/?sentry_key={key or crashd.key}{query}"
    return crashd.client.post(url, content=body, headers={"Content-Type": content_type, **(headers or {})})


def post_submit(crashd: Crashd, body: bytes, content_type: str, *, headers: dict[str, str] | None = None, query: str = ""):
    return crashd.client.post(f"/submit?key={crashd.key}{query}", content=body,
                              headers={"Content-Type": content_type, **(headers or {})})


def stored_dump(crashd: Crashd, crash_id: str) -> bytes:
    response = crashd.client.get(f"/api/crashes/{crash_id}/minidump", headers=crashd.admin)
    assert response.status_code == 200
    return response.content


# -- accepted uploads -----------------------------------------------------------------------


def test_minidump_endpoint_stores_dump_annotations_and_attachments(crashd: Crashd) -> None:
    dump = small_dump(1)
    log = b"[info] starting\nGGML_ASSERT(n > 0) failed\n"
    body, ctype = multipart(
        {"prod": "Game", "ver": "0.9.9-staging-beta2", "guid": "client-1", "tester_id": "tester-42"},
        [("upload_file_minidump", "crash.dmp", dump, "application/octet-stream"),
         ("game_log", "game.log", log, "text/plain")],
    )
    response = post_minidump(crashd, body, ctype)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    crash_id = response.text
    assert UUID_RE.match(crash_id)

    crash = crashd.crash(crash_id)
    assert crash["status"] in ("received", "processing", "processed")
    assert crash["project"] == "game"
    assert crash["annotations"] == {"prod": "Game", "ver": "0.9.9-staging-beta2", "guid": "client-1",
                                    "tester_id": "tester-42"}
    assert (crash["product"], crash["build"], crash["tester_id"]) == ("Game", "0.9.9-staging-beta2", "tester-42")
    assert crash["size"] == len(dump) and crash["submitted_via"] == "minidump"
    assert [(a["name"], a["filename"], a["size"]) for a in crash["attachments"]] == [("game_log", "game.log", len(log))]
    assert stored_dump(crashd, crash_id) == dump
    attachment = crashd.client.get(f"/api/crashes/{crash_id}/attachments/game_log", headers=crashd.admin)
    assert attachment.content == log

    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed"
    assert crash["processed"]["minidump"]["sha256"] == crash["sha256"]


def test_submit_endpoint_answers_breakpad_crash_id(crashd: Crashd) -> None:
    body, ctype = minidump_upload(small_dump(2), ProductName="Game", Version="1.0")
    response = post_submit(crashd, body, ctype)
    assert response.status_code == 200
    match = re.fullmatch(r"CrashID=bp-(\S+)\n", response.text)
    assert match and UUID_RE.match(match.group(1))
    crash = crashd.crash(f"bp-{match.group(1)}")
    assert crash["crash_id"] == match.group(1) and crash["submitted_via"] == "submit"
    assert crash["product"] == "Game"


@pytest.mark.parametrize("how", ["sentry_key", "key", "x-sentry-auth"])
def test_ingest_key_sources(crashd: Crashd, how: str) -> None:
    body, ctype = minidump_upload(small_dump(3))
    headers = {"Content-Type": ctype}
    url = f"/api/{crashd.project.id}/minidump/"
    if how == "x-sentry-auth":
        headers["X-Sentry-Auth"] = f"Sentry sentry_version=7, sentry_client=sentry.native/0.7.0, sentry_key={crashd.key}"
    else:
        url += f"?{how}={crashd.key}"
    response = crashd.client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert "sentry_key" not in crashd.crash(response.text)["annotations"]


def test_project_by_name_in_path(crashd: Crashd) -> None:
    dump = small_dump(4)
    body, ctype = minidump_upload(dump)
    response = post_minidump(crashd, body, ctype, project="game")
    assert response.status_code == 200, response.text
    crash = crashd.crash(response.text)
    assert (crash["project"], crash["submitted_via"], crash["size"]) == ("game", "minidump", len(dump))
    assert stored_dump(crashd, response.text) == dump and crashd.crash_count() == 1


def test_multipart_mixed_and_unknown_query_parameters(crashd: Crashd) -> None:
    body, ctype = multipart({"prod": "Game"}, [("upload_file_minidump", "x.dmp", small_dump(5), "application/x-dmp")],
                            subtype="mixed")
    response = post_minidump(crashd, body, ctype, query="&product=QP&version=2.0&guid=g-1&sentry_client=native")
    assert response.status_code == 200, response.text
    annotations = crashd.crash(response.text)["annotations"]
    assert annotations == {"product": "QP", "version": "2.0", "guid": "g-1", "sentry_client": "native", "prod": "Game"}
    assert crashd.crash(response.text)["build"] == "2.0"


def test_form_fields_win_over_query(crashd: Crashd) -> None:
    body, ctype = minidump_upload(small_dump(6), ver="form-ver", guid="form-guid")
    response = post_minidump(crashd, body, ctype, query="&ver=query-ver&guid=query-guid")
    crash = crashd.crash(response.text)
    assert crash["annotations"]["ver"] == "form-ver" and crash["tester_id"] == "form-guid"


@pytest.mark.parametrize("fields,tester", [
    ({"tester_id": "t", "guid": "g", "user_id": "u"}, "t"),
    ({"guid": "g", "user_id": "u"}, "g"),
    ({"user_id": "u"}, "u"),
    ({}, None),
])
def test_tester_identity_order(crashd: Crashd, fields: dict[str, str], tester: str | None) -> None:
    body, ctype = minidump_upload(small_dump(7), **fields)
    assert crashd.crash(post_submit(crashd, body, ctype).text.strip()[len("CrashID="):])["tester_id"] == tester


def test_raw_octet_stream_body(crashd: Crashd) -> None:
    dump = small_dump(8)
    response = post_minidump(crashd, dump, "application/octet-stream")
    assert response.status_code == 200, response.text
    assert stored_dump(crashd, response.text) == dump


def test_whole_body_gzip(crashd: Crashd) -> None:
    dump = small_dump(9, size=50_000)
    body, ctype = minidump_upload(dump, prod="Game")
    response = post_minidump(crashd, gzipped(body), ctype, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert stored_dump(crashd, response.text) == dump


def test_gzip_body_without_header_is_sniffed(crashd: Crashd) -> None:
    dump = small_dump(10)
    body, ctype = minidump_upload(dump)
    response = post_submit(crashd, gzipped(body), ctype)
    assert response.status_code == 200, response.text
    crash_id = response.text.strip().split("bp-")[1]
    crash = crashd.crash(crash_id)  # stored as the dump it was before gzip, not as the gzip bytes
    assert (crash["submitted_via"], crash["size"], crash["annotations"]) == ("submit", len(dump), {})
    assert stored_dump(crashd, crash_id) == dump and crashd.crash_count() == 1


def test_chunked_body_without_content_length(crashd: Crashd) -> None:
    dump = small_dump(11, size=200_000)
    body, ctype = minidump_upload(dump)
    chunks = (body[i:i + 7000] for i in range(0, len(body), 7000))
    response = crashd.client.post(f"/submit?key={crashd.key}", content=chunks, headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    assert stored_dump(crashd, response.text.strip().split("bp-")[1]) == dump


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compressed_minidump_part(crashd: Crashd, codec: str) -> None:
    dump = small_dump(12, size=30_000)
    packed = gzip.compress(dump) if codec == "gzip" else zstandard.ZstdCompressor().compress(dump)
    body, ctype = multipart({}, [("upload_file_minidump", f"crash.dmp.{codec}", packed, "application/octet-stream")])
    response = post_minidump(crashd, body, ctype)
    assert response.status_code == 200, response.text
    crash = crashd.crash(response.text)
    assert stored_dump(crashd, response.text) == dump and crash["size"] == len(dump)


def test_extra_json_and_sentry_field_are_flattened(crashd: Crashd) -> None:
    extra = b'{"ProductName": "Game", "Version": "3.1", "Throttleable": "0"}'
    sentry = '{"release": "game@3.1", "user": {"id": "tester-9"}, "tags": {"gpu": "rtx"}}'
    body, ctype = multipart({"sentry": sentry}, [
        ("upload_file_minidump", "c.dmp", small_dump(13), "application/octet-stream"),
        ("extra", "extra.json", extra, "application/json"),
    ])
    response = post_minidump(crashd, body, ctype)
    assert response.status_code == 200, response.text
    crash = crashd.crash(response.text)
    assert crash["annotations"] == {
        "ProductName": "Game", "Version": "3.1", "Throttleable": "0",
        "sentry.release": "game@3.1", "sentry.user.id": "tester-9", "sentry.tags.gpu": "rtx",
    }
    assert crash["tester_id"] == "tester-9" and crash["product"] == "Game" and crash["attachments"] == []


def test_repeated_part_names_are_all_kept(crashd: Crashd) -> None:
    body, ctype = multipart({}, [
        ("upload_file_minidump", "c.dmp", small_dump(14), "application/octet-stream"),
        ("log", "a.log", b"first", "text/plain"),
        ("log", "b.log", b"second", "text/plain"),
    ])
    crash = crashd.crash(post_minidump(crashd, body, ctype).text)
    assert sorted((a["filename"], a["size"]) for a in crash["attachments"]) == [("a.log", 5), ("b.log", 6)]


def test_utf8_field_names_and_file_names(crashd: Crashd) -> None:
    """Found by fuzzing /submit: a part named outside latin-1 ("名前") was a 500, since
    python-multipart's parse_options_header encodes a str as latin-1; "é" in a file name came
    back as U+FFFD."""
    body, ctype = multipart({"名前": "テスト"}, [
        ("upload_file_minidump", "crash.dmp", small_dump(15), "application/octet-stream"),
        ("log", "journal-é.log", b"entry", "text/plain"),
    ])
    response = post_submit(crashd, body, ctype)
    assert response.status_code == 200, response.text
    crash = crashd.crash(response.text.strip().removeprefix("CrashID="))
    assert crash["annotations"]["名前"] == "テスト"
    assert [a["filename"] for a in crash["attachments"]] == ["journal-é.log"]


# -- rejected uploads: status, reason, nothing stored, counted ------------------------------


def _bad_gzip_body() -> tuple[bytes, str, dict[str, str]]:
    body, ctype = minidump_upload(small_dump(20))
    packed = bytearray(gzipped(body))
    packed[20:40] = b"\xff" * 20
    return bytes(packed), ctype, {"Content-Encoding": "gzip"}


def _truncated_gzip_body() -> tuple[bytes, str, dict[str, str]]:
    body, ctype = minidump_upload(small_dump(21, size=20_000))
    return gzipped(body)[:-200], ctype, {"Content-Encoding": "gzip"}


def _bad_cases() -> dict[str, tuple[bytes, str, dict[str, str], str]]:
    no_dump = multipart({"prod": "Game"}, [("log", "a.log", b"x", "text/plain")])
    not_dump = minidump_upload(b"PK\x03\x04 this is a zip, not a minidump")
    bad_json = multipart({"sentry": "{not json"}, [("upload_file_minidump", "c.dmp", small_dump(22), "application/octet-stream")])
    bad_extra = multipart({}, [("upload_file_minidump", "c.dmp", small_dump(23), "application/octet-stream"),
                               ("extra", "extra.json", b"{broken", "application/json")])
    unterminated, ctype = minidump_upload(small_dump(24))
    bad_part_gzip = multipart({}, [("upload_file_minidump", "c.dmp.gz", b"\x1f\x8b\x08\x00garbage", "application/gzip")])
    bad_part_zstd = multipart({}, [("upload_file_minidump", "c.dmp.zst", b"\x28\xb5\x2f\xfd\x00\x00broken", "application/zstd")])
    empty_dump = multipart({}, [("upload_file_minidump", "c.dmp", b"", "application/octet-stream")])
    # Issue 11, item 10: these three were 500s (RecursionError, python-multipart's FormParserError).
    deep = '{"a":' * 995 + "1" + "}" * 995
    deep_extra = multipart({}, [("upload_file_minidump", "c.dmp", small_dump(25), "application/octet-stream"),
                                ("extra", "extra.json", deep.encode(), "application/json")])
    deep_sentry = multipart({"sentry": deep}, [("upload_file_minidump", "c.dmp", small_dump(26), "application/octet-stream")])
    long_boundary = multipart({}, [("upload_file_minidump", "c.dmp", small_dump(27), "application/octet-stream")],
                              boundary="b" * 300)
    return {
        "no_minidump": (*no_dump, {}, "malformed_no_minidump"),
        "empty_minidump": (*empty_dump, {}, "malformed_no_minidump"),
        "not_minidump": (*not_dump, {}, "malformed_not_minidump"),
        "raw_not_minidump": (b"hello", "application/octet-stream", {}, "malformed_not_minidump"),
        "invalid_json_sentry": (*bad_json, {}, "malformed_invalid_json"),
        "invalid_json_extra": (*bad_extra, {}, "malformed_invalid_json"),
        "bad_gzip": (*_bad_gzip_body(), "malformed_bad_gzip"),
        "truncated_gzip": (*_truncated_gzip_body(), "malformed_bad_gzip"),
        "bad_gzip_part": (*bad_part_gzip, {}, "malformed_bad_gzip"),
        "bad_zstd_part": (*bad_part_zstd, {}, "malformed_bad_zstd"),
        "unterminated_multipart": (unterminated[:-40], ctype, {}, "malformed_bad_multipart"),
        "no_boundary": (unterminated, "multipart/form-data", {}, "malformed_bad_multipart"),
        "unknown_encoding": (unterminated, ctype, {"Content-Encoding": "snappy"}, "malformed_unsupported_encoding"),
        "deep_extra": (*deep_extra, {}, "malformed_invalid_json"),
        "deep_sentry": (*deep_sentry, {}, "malformed_invalid_json"),
        "boundary_over_256": (*long_boundary, {}, "malformed_bad_multipart"),
    }


BAD_CASES = _bad_cases()


def assert_nothing_stored(crashd: Crashd) -> None:
    assert crashd.crash_count() == 0
    assert crashd.blob_files() == []


def discards(crashd: Crashd) -> dict[str, int]:
    return crashd.client.get("/api/discards", headers=crashd.admin).json()["all_time"]


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_on_submit(crashd: Crashd, case: str) -> None:
    body, ctype, headers, code = BAD_CASES[case]
    response = post_submit(crashd, body, ctype, headers=headers)
    assert response.status_code == 400
    assert response.text == f"Discarded={code}\n"
    assert_nothing_stored(crashd)
    assert discards(crashd) == {code.removeprefix("malformed_"): 1}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_on_minidump_endpoint(crashd: Crashd, case: str) -> None:
    body, ctype, headers, code = BAD_CASES[case]
    response = post_minidump(crashd, body, ctype, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"detail": code}
    assert_nothing_stored(crashd)


@pytest.mark.parametrize("key,code", [(None, "missing_key"), ("0" * 32, "bad_key")])
def test_missing_or_wrong_key(crashd: Crashd, key: str | None, code: str) -> None:
    body, ctype = minidump_upload(small_dump(30))
    url = "/submit" + (f"?key={key}" if key else "")
    response = crashd.client.post(url, content=body, headers={"Content-Type": ctype})
    assert (response.status_code, response.text) == (401, f"Discarded={code}\n")
    url = f"/api/{crashd.project.id}/minidump/" + (f"?sentry_key={key}" if key else "")
    response = crashd.client.post(url, content=body, headers={"Content-Type": ctype})
    assert (response.status_code, response.json()) == (401, {"detail": code})
    assert_nothing_stored(crashd)
    assert discards(crashd) == {code: 2}


def test_key_of_another_project(crashd: Crashd) -> None:
    from storage import queries

    other = queries.create_project(crashd.state.ctx.engine, name="other")
    body, ctype = minidump_upload(small_dump(31))
    response = post_minidump(crashd, body, ctype, key=other.ingest_key)  # path names project "game"
    assert response.status_code == 401
    assert_nothing_stored(crashd)


def test_too_large_by_content_length(crashd: Crashd, tmp_path) -> None:
    crashd.settings.max_upload_bytes = 10_000
    body, ctype = minidump_upload(small_dump(32, size=20_000))
    response = post_submit(crashd, body, ctype)
    assert (response.status_code, response.text) == (413, "Discarded=too_large\n")
    assert_nothing_stored(crashd)


def test_too_large_while_streaming_chunked(crashd: Crashd) -> None:
    crashd.settings.max_upload_bytes = 10_000
    body, ctype = minidump_upload(small_dump(33, size=20_000))
    chunks = (body[i:i + 1000] for i in range(0, len(body), 1000))
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                  content=chunks, headers={"Content-Type": ctype})
    assert (response.status_code, response.json()) == (413, {"detail": "too_large"})
    assert_nothing_stored(crashd)


def test_gzip_bomb_stops_at_the_cap(crashd: Crashd) -> None:
    """1 GiB of zeros gzipped to ~1 MiB: refused once the decompressed cap is passed."""
    crashd.settings.max_decompressed_bytes = 5 * 1024 * 1024
    compressor = zlib_gzip_stream()
    boundary = "bomb"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"upload_file_minidump\"; "
            f"filename=\"c.dmp\"\r\n\r\nMDMP").encode()
    packed = bytearray(compressor.compress(head))
    zeros = b"\0" * (1024 * 1024)
    for _ in range(1024):
        packed += compressor.compress(zeros)
    packed += compressor.flush()
    assert len(packed) < 2 * 1024 * 1024
    response = post_submit(crashd, bytes(packed), f"multipart/form-data; boundary={boundary}",
                           headers={"Content-Encoding": "gzip"})
    assert (response.status_code, response.text) == (413, "Discarded=too_large_decompressed\n")
    assert_nothing_stored(crashd)
    assert list(crashd.state.tmp_dir.iterdir()) == []


def test_zstd_part_bomb_stops_at_the_cap(crashd: Crashd) -> None:
    crashd.settings.max_decompressed_bytes = 5 * 1024 * 1024
    packed = zstandard.ZstdCompressor(level=19).compress(b"MDMP" + b"\0" * (200 * 1024 * 1024))
    body, ctype = multipart({}, [("upload_file_minidump", "c.dmp.zst", packed, "application/zstd")])
    response = post_submit(crashd, body, ctype)
    assert (response.status_code, response.text) == (413, "Discarded=too_large_decompressed\n")
    assert_nothing_stored(crashd)


def zlib_gzip_stream():
    import zlib

    return zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)


# -- retries, dedupe, storage failures ------------------------------------------------------


def test_same_dump_same_client_is_stored_once(crashd: Crashd) -> None:
    body, ctype = minidump_upload(small_dump(40), guid="client-A", ver="1.0")
    first = post_minidump(crashd, body, ctype).text
    second = post_minidump(crashd, body, ctype).text
    assert first == second
    assert crashd.crash_count() == 1
    assert len([p for p in crashd.blob_files() if p.suffix == ".dmp"]) == 1
    other_client, ctype = minidump_upload(small_dump(40), guid="client-B", ver="1.0")
    assert post_minidump(crashd, other_client, ctype).text != first
    assert crashd.crash_count() == 2


def test_retry_after_window_is_a_new_crash(crashd: Crashd) -> None:
    from sqlalchemy import text

    body, ctype = minidump_upload(small_dump(41), guid="client-A")
    first = post_minidump(crashd, body, ctype).text
    with crashd.state.ctx.engine.begin() as conn:
        conn.execute(text("UPDATE upload_fingerprints SET created_at = created_at - INTERVAL '25 hours'")
                     if crashd.state.ctx.engine.dialect.name == "postgresql" else
                     text("UPDATE upload_fingerprints SET created_at = datetime(created_at, '-25 hours')"))
    second = post_minidump(crashd, body, ctype).text
    assert second != first and crashd.crash_count() == 2


def test_storage_failure_answers_503_then_retry_succeeds(crashd: Crashd) -> None:
    import shutil

    blob_root = crashd.settings.blob_dir
    shutil.rmtree(blob_root, ignore_errors=True)
    blob_root.write_text("not a directory")  # a real failure: the store cannot create folders
    body, ctype = minidump_upload(small_dump(42), guid="c")
    response = post_submit(crashd, body, ctype)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.text == "Discarded=storage_unavailable\n"
    assert crashd.crash_count() == 0
    blob_root.unlink()
    retry = post_submit(crashd, body, ctype)
    assert retry.status_code == 200
    assert crashd.crash_count() == 1


def test_admin_api_requires_token(crashd: Crashd) -> None:
    body, ctype = minidump_upload(small_dump(43))
    crash_id = post_minidump(crashd, body, ctype).text
    for path in (f"/api/crashes/{crash_id}", f"/api/crashes/{crash_id}/minidump", "/api/discards"):
        assert crashd.client.get(path).status_code == 401
        assert crashd.client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert crashd.client.get(f"/api/crashes/{uuid.uuid4()}", headers=crashd.admin).status_code == 404


def test_health_and_version(crashd: Crashd) -> None:
    assert crashd.client.get("/__lbheartbeat__").status_code == 200
    heartbeat = crashd.client.get("/__heartbeat__")
    assert heartbeat.status_code == 200
    assert heartbeat.json()["checks"] == {"database": "ok", "blob_store": "ok", "queue": "ok"}
    version = crashd.client.get("/__version__").json()
    assert version["name"] == "crashd"
    assert version["queue"] == ("rq" if crashd.backend == "postgres-rq" else "in-process")
    assert version["database"] == ("postgresql" if crashd.backend == "postgres-rq" else "sqlite")


def test_concatenated_gzip_members(crashd: Crashd) -> None:
    dump = small_dump(50, size=10_000)
    body, ctype = minidump_upload(dump, ver="1")
    packed = gzip.compress(body[:5000]) + gzip.compress(body[5000:])
    response = post_minidump(crashd, packed, ctype, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert stored_dump(crashd, response.text) == dump


def test_gzip_sniffed_from_one_byte_chunks(crashd: Crashd) -> None:
    dump = small_dump(51)
    body, ctype = minidump_upload(dump)
    packed = gzipped(body)
    chunks = [packed[:1], packed[1:2], packed[2:]]
    response = crashd.client.post(f"/submit?key={crashd.key}", content=iter(chunks), headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    crash_id = response.text.strip().split("bp-")[1]
    crash = crashd.crash(crash_id)
    assert (crash["submitted_via"], crash["size"], crash["annotations"]) == ("submit", len(dump), {})
    assert stored_dump(crashd, crash_id) == dump and crashd.crash_count() == 1


def test_client_disconnect_mid_upload_is_counted_not_crashed(crashd: Crashd, live) -> None:
    import socket
    import time

    body, ctype = minidump_upload(small_dump(52, size=50_000))
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        head = (f"POST /submit?key={crashd.key} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n").encode()
        sock.sendall(head + f"{20000:x}\r\n".encode() + body[:20000] + b"\r\n")
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while discards(crashd) != {"client_disconnected": 1}:
        assert time.monotonic() < deadline, discards(crashd)
        time.sleep(0.05)
    assert_nothing_stored(crashd)
    assert list(crashd.state.tmp_dir.iterdir()) == []


# -- issue 11: malformed inputs that were 500s, attachments that could not be downloaded ----


def test_json_fields_nested_past_the_depth_limit_are_refused(crashd: Crashd) -> None:
    """101 levels parse fine but are past MAX_JSON_DEPTH; 100 are taken."""
    dump = small_dump(28)
    for depth, status in ((100, 200), (101, 400)):
        nested = '{"a":' * depth + "1" + "}" * depth  # depth objects, one in the other
        body, ctype = multipart({"sentry": nested}, [("upload_file_minidump", "c.dmp", dump, "application/octet-stream")])
        assert post_submit(crashd, body, ctype).status_code == status


def test_multipart_preamble_is_accepted(crashd: Crashd) -> None:
    """RFC 2046: text before the first boundary is a preamble, to be ignored (it was a 400)."""
    body, ctype = minidump_upload(small_dump(34), prod="Game")
    preamble = b"This is a multi-part message in MIME format.\r\n"
    for sent in (preamble + body, b"\r\n" + body):
        response = post_minidump(crashd, sent, ctype)
        assert response.status_code == 200, response.text
        assert crashd.crash(response.text)["annotations"]["prod"] == "Game"
    response = post_minidump(crashd, b"x" * 70_000 + body, ctype)  # past MAX_PREAMBLE
    assert (response.status_code, response.json()) == (400, {"detail": "malformed_bad_multipart"})


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past limit bytes fail with EFBIG (SIGXFSZ ignored), as a full spool disk would
    with ENOSPC; for this process, while the block runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_full_spool_folder_answers_503_with_retry_after(crashd: Crashd) -> None:
    """A dump past SPOOL_IN_MEMORY goes to <data_dir>/tmp; a failing write there was a 500."""
    body, ctype = minidump_upload(small_dump(35, size=3 * 1024 * 1024))
    with file_size_limit(2 * 1024 * 1024):
        submit = post_submit(crashd, body, ctype)
        sentry = post_minidump(crashd, body, ctype)
    assert (submit.status_code, submit.text) == (503, "Discarded=spool_full\n")
    assert (sentry.status_code, sentry.json()) == (503, {"detail": "spool_full"})
    assert submit.headers["retry-after"] and sentry.headers["retry-after"]
    assert_nothing_stored(crashd)
    assert list(crashd.state.tmp_dir.iterdir()) == []
    assert post_submit(crashd, body, ctype).status_code == 200  # space again: the retry is stored


def test_attachment_names_outside_latin1_and_with_slashes_download(crashd: Crashd) -> None:
    """A non-Latin-1 file name was a 500 on download (a header is Latin-1); a field name with
    "/" had no route. Content-Disposition carries RFC 5987's filename*."""
    body, ctype = multipart({}, [
        ("upload_file_minidump", "crash.dmp", small_dump(36), "application/octet-stream"),
        ("logs/game", "журнал-🎮.log", b"entry", "text/plain"),
        ("..", "dots.txt", b"dots", "text/plain"),
    ])
    crash_id = post_minidump(crashd, body, ctype).text
    names = [a["name"] for a in crashd.crash(crash_id)["attachments"]]
    assert names == ["logs/game", "attachment-1"]  # ".." would resolve to the crash's page
    response = crashd.client.get(f"/api/crashes/{crash_id}/attachments/{quote('logs/game', safe='')}",
                                 headers=crashd.admin)
    assert (response.status_code, response.content) == (200, b"entry")
    disposition = response.headers["content-disposition"]
    assert disposition == ("attachment; filename=\"______-_.log\"; "
                           f"filename*=UTF-8''{quote('журнал-🎮.log', safe='')}")
    assert crashd.client.get(f"/api/crashes/{crash_id}/attachments/logs/game", headers=crashd.admin).content == b"entry"


def test_dashboard_links_to_an_attachment_named_with_a_slash(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash page linked /attachments/logs/game, which no route matched (a dead link)."""
    from test_dashboard_pages import signed_in

    body, ctype = multipart({}, [("upload_file_minidump", "crash.dmp", small_dump(37), "application/octet-stream"),
                                 ("logs/game", "game.log", b"entry", "text/plain")])
    crash_id = post_minidump(crashd, body, ctype).text
    viewer = signed_in(crashd, "victor", "viewer", monkeypatch)
    [href] = re.findall(r'href="(/crashes/[^"]+/attachments/[^"]+)"', viewer.get(f"/crashes/{crash_id}").text)
    assert href == f"/crashes/{crash_id}/attachments/logs%2Fgame"
    download = viewer.get(href)
    assert (download.status_code, download.content) == (200, b"entry")


def test_an_attachment_stored_before_sanitizing_still_downloads(crashd: Crashd) -> None:
    """Rows written before ingest sanitized names keep CR/LF in their content type; the
    download must not put them in a header (the connection was dropped)."""
    from sqlalchemy import update

    from schemas.tables import Attachment

    body, ctype = multipart({}, [("upload_file_minidump", "crash.dmp", small_dump(38), "application/octet-stream"),
                                 ("log", "game.log", b"entry", "text/plain")])
    crash_id = post_minidump(crashd, body, ctype).text
    with crashd.state.ctx.engine.begin() as conn:
        conn.execute(update(Attachment).values(content_type="text/plain\r\nSet-Cookie: a=b",
                                               filename="game\r\n.log"))
    response = crashd.client.get(f"/api/crashes/{crash_id}/attachments/log", headers=crashd.admin)
    assert (response.status_code, response.content) == (200, b"entry")
    assert response.headers["content-type"] == "application/octet-stream" and "set-cookie" not in response.headers
    assert response.headers["content-disposition"].startswith('attachment; filename="game__.log"')


def test_object_store_down_answers_503_and_the_retry_is_kept(tmp_path, monkeypatch) -> None:
    """Persist, then acknowledge, on S3: the 200 comes once the object store holds the dump; with
    the store down (our own SeaweedFS killed mid-test) the upload is a 503 + Retry-After, no row is
    left, and the client's retry once it is back is stored and processed."""
    with own_s3_crashd(tmp_path, monkeypatch, "ack") as (server, crashd):
        body, ctype = minidump_upload(small_dump(44), guid="s3-a")
        first = post_minidump(crashd, body, ctype)
        assert first.status_code == 200
        store = make_blob_store(crashd.settings)
        dumps = [key for key, _ in store.iter_keys() if key.startswith("minidumps/")]
        assert dumps == [dumps[0]] and dumps[0].endswith(f"/{first.text}.dmp")
        assert store.read_bytes(dumps[0]) == small_dump(44)
        server.stop()
        body, ctype = minidump_upload(small_dump(45), guid="s3-b")
        for refused in (post_minidump(crashd, body, ctype), post_submit(crashd, body, ctype)):
            assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
        assert crashd.crash_count() == 1
        server.restart()
        retry = post_minidump(crashd, body, ctype)
        assert retry.status_code == 200 and crashd.crash_count() == 2
        crashd.drain()
        assert crashd.crash(retry.text)["status"] == "processed"
