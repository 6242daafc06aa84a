"""Every real dump of the corpus through both endpoints, and real Crashpad request bodies
replayed byte for byte with chunked transfer encoding over a real socket."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

import pytest

from conftest import Crashd, LiveServer, corpus_params, require_corpus
from uploads import minidump_upload

CRASHPAD_CASES = ["linux-x64-generated-crashpad-segv-O0", "linux-x64-generated-crashpad-abort-O2"]


@pytest.mark.parametrize("dump_path", corpus_params())
def test_corpus_dump_through_both_endpoints(crashd: Crashd, dump_path: Path | None) -> None:
    require_corpus()
    assert dump_path is not None
    dump = dump_path.read_bytes()
    body, ctype = minidump_upload(dump, prod="corpus", ver="1.0", guid=dump_path.parent.name)
    sentry = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                                content=body, headers={"Content-Type": ctype})
    assert sentry.status_code == 200, sentry.text
    raw = crashd.client.post(f"/submit?key={crashd.key}", content=dump,
                             headers={"Content-Type": "application/octet-stream"})
    assert raw.status_code == 200, raw.text
    breakpad_id = raw.text.strip().removeprefix("CrashID=bp-")
    assert breakpad_id != sentry.text  # the raw upload has no client id: another crash
    for crash_id in (sentry.text, breakpad_id):
        got = crashd.client.get(f"/api/crashes/{crash_id}/minidump", headers=crashd.admin)
        assert got.content == dump
    crashd.drain()
    assert crashd.crash(sentry.text)["status"] == "processed"


def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def replay(live: LiveServer, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """Send body with Transfer-Encoding: chunked (no Content-Length), as Crashpad does."""
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        conn.request("POST", path, body=_chunks(body, 4096), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("case", CRASHPAD_CASES)
def test_captured_crashpad_request_replayed_chunked(crashd: Crashd, live: LiveServer, case: str) -> None:
    folder = require_corpus() / case
    recorded = json.loads((folder / "upload" / "request-headers.json").read_text())
    body = (folder / "upload" / "request-body.bin").read_bytes()
    headers = {k: v for k, v in recorded["headers"].items() if k.lower() not in ("host", "transfer-encoding")}
    query = recorded["path"].split("?", 1)[1]
    status, text = replay(live, f"/api/{crashd.project.id}/minidump/?{query}&sentry_key={crashd.key}", headers, body)
    assert status == 200, text
    crash = crashd.crash(text)
    assert crash["annotations"]["prod"] == "crashme" and crash["annotations"]["ver"] == "1.0.0"
    guid = query.split("guid=")[1]
    assert crash["annotations"]["guid"] == guid and crash["tester_id"] == guid
    assert crash["build"] == "1.0.0"
    stored = crashd.client.get(f"/api/crashes/{text}/minidump", headers=crashd.admin).content
    assert stored == (folder / f"{case}.dmp").read_bytes()
    # Crashpad retries the same report when it missed our answer: same id, stored once.
    again = replay(live, f"/submit?{query}&key={crashd.key}", headers, body)
    assert again == (200, f"CrashID=bp-{text}\n")
    assert crashd.crash_count() == 1


def test_concurrent_duplicate_uploads_store_one_crash(crashd: Crashd, live: LiveServer) -> None:
    from minidump_writer import small_dump

    body, ctype = minidump_upload(small_dump(77, size=100_000), guid="retrying-client")
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def upload() -> None:
        result = replay(live, f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}",
                        {"Content-Type": ctype}, body)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8 and {status for status, _ in results} == {200}
    assert len({text for _, text in results}) == 1
    assert crashd.crash_count() == 1
    assert len([p for p in crashd.blob_files() if p.suffix == ".dmp"]) == 1
    uploads = [p for p in crashd.blob_files() if "processed" not in p.parts]
    assert len(uploads) == 1  # the dump, nothing else (the annotations are in the row)
