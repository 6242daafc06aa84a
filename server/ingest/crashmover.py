"""Persist, then acknowledge (Antenna's ``crashmover.py``): save an upload (its primary blob,
attachments, annotations document and rows) and enqueue its processing. Saving must succeed
before the client gets its 200 (else StorageUnavailable, a 503); enqueueing may fail without
failing the upload: the sweeper re-enqueues what is stuck in ``received``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy.exc import SQLAlchemyError

from schemas.tables import Attachment, Project, utcnow
from server.ingest.discard import StorageUnavailable
from server.ingest.scrubbing import project_rules, scrubbed_reader
from server.ingest.upload_parser import ParsedUpload, UploadPart
from server.state import ServerState
from storage import queries
from storage.blobs import BlobStoreError, day_key
from triage.kinds import HANG, MINIDUMP_LEVEL, kind_of_minidump
from triage.scrub import Rules, scrub_fields, scrub_text

log = logging.getLogger(__name__)

# Annotation names that carry the build, the product and the tester, in order of preference.
BUILD_KEYS = ("ver", "version", "release", "sentry.release")
PRODUCT_KEYS = ("prod", "product", "ProductName", "sentry.extra.product")
TESTER_KEYS = ("tester_id", "guid", "user_id", "sentry.user.id")
# The client (installation) that retries an upload: Crashpad's guid first.
CLIENT_KEYS = ("guid", "tester_id", "user_id", "sentry.user.id")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A hang report's duration and hung thread (docs/hangs.md): a watchdog's Crashpad annotations,
# or a Sentry event's tags or extra.
HANG_SECONDS_KEYS = ("hang_seconds", "sentry.tags.hang_seconds", "sentry.extra.hang_seconds")
HANG_THREAD_KEYS = ("hang_thread", "sentry.tags.hang_thread", "sentry.extra.hang_thread")


def persist_and_enqueue(state: ServerState, project: Project, parsed: ParsedUpload, via: str,
                        from_query: dict[str, str]) -> str:
    """persist_upload, then enqueue a new crash (one thread-pool hop for both)."""
    crash_id, created = persist_upload(state, project, parsed, via, from_query)
    if created:
        enqueue_quietly(state, crash_id)
    return crash_id


def first_of(annotations: dict[str, str], keys: tuple[str, ...]) -> str | None:
    """The first non-empty annotation among keys, truncated to the column size."""
    for key in keys:
        value = annotations.get(key, "").strip()
        if value:
            return value[:200]
    return None


def hang_details(annotations: dict[str, str]) -> tuple[float | None, str | None]:
    """(hang_seconds, hang_thread) of a hang report. A duration that is not a finite number
    of seconds >= 0 ("soon", "-3", "nan") is left out, never refused; the thread is cut to 200
    characters."""
    raw = first_of(annotations, HANG_SECONDS_KEYS)
    try:
        seconds: float | None = float(raw) if raw is not None else None
    except ValueError:
        seconds = None
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        seconds = None
    return seconds, first_of(annotations, HANG_THREAD_KEYS)


def fingerprint(project: Project, client_id: str | None, dump_sha256: str) -> str:
    """Dedupe key of a client retry: the same dump from the same client of one project."""
    raw = f"{project.id}\0{client_id or ''}\0{dump_sha256}".encode()
    return hashlib.sha256(raw).hexdigest()


def persist_upload(
    state: ServerState, project: Project, parsed: ParsedUpload, via: str, from_query: dict[str, str],
    event: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """Store blobs and rows for an upload (event: the Sentry event of an envelope that carried
    the dump). Its kind is a crash or a hang (triage/kinds.kind_of_minidump), level fatal.
    Returns (crash_id, created); created is False when this is a retry of an upload stored
    within the dedupe window. Raises StorageUnavailable."""
    annotations = {**from_query, **parsed.annotations}  # form fields win over the query
    key = fingerprint(project, first_of(annotations, CLIENT_KEYS), parsed.minidump.sha256)

    def put_minidump(crash: dict[str, Any]) -> str:
        key = crash["minidump_key"] = day_key("minidumps", crash["received_at"], f"{crash['crash_id']}.dmp")
        crash["minidump_size"], crash["minidump_sha256"] = parsed.minidump.size, parsed.minidump.sha256
        state.ctx.blobs.put_file(key, parsed.minidump.file)
        return key

    kind = (kind_of_minidump(annotations, event), MINIDUMP_LEVEL)
    return store_crash(state, project, annotations, parsed.attachments, via, key, put_minidump, kind)


def store_crash(state: ServerState, project: Project, annotations: dict[str, str], parts: list[UploadPart],
                via: str, key: str, put_primary: Callable[[dict[str, Any]], str],
                kind: tuple[str, str | None]) -> tuple[str, bool]:
    """Store one crash: its primary blob (put_primary fills the crash row's key fields, writes
    the blob and returns its key: the minidump, or a Sentry event's JSON), attachments and
    the rows (the annotations are in the crash row); kind is the crash's (kind, level) (triage/kinds.py).
    A retry with the same dedupe key within the window returns the first crash (its blobs,
    written before insert_crash told, are deleted again: retries are rare, and a read of the
    fingerprints before every upload cost each upload a query).
    Annotations and text attachments are scrubbed first (docs/privacy.md): the dedupe key,
    made by the caller from what was received, is not. Returns (crash_id, created). Raises
    StorageUnavailable."""
    rules = project_rules(state, project.name)
    annotations = {k: str(v) for k, v in scrub_fields(rules, annotations).items()}
    window = timedelta(hours=state.settings.dedupe_window_hours)
    engine = state.ctx.engine
    written: list[str] = []
    try:  # a retry is found by insert_crash, which answers the first crash: no read before
        now, crash_id = utcnow(), str(uuid.uuid4())
        crash = queries.crash_row(
            crash_id=crash_id, project_id=project.id, received_at=now, updated_at=now,
            submitted_via=via, product=first_of(annotations, PRODUCT_KEYS),
            build=first_of(annotations, BUILD_KEYS), tester_id=first_of(annotations, TESTER_KEYS),
            annotations_key="", annotations=annotations,  # in the row only (schemas/tables.Crash)
            kind=kind[0], level=kind[1],
        )
        if kind[0] == HANG:
            crash["hang_seconds"], crash["hang_thread"] = hang_details(annotations)
        written.append(put_primary(crash))
        attachments = put_attachments(state, "attachments", crash_id, now, parts, written, rules)
        stored_id, created = queries.insert_crash(
            engine, crash=crash, attachments=attachments, fingerprint=key, window=window
        )
    except (BlobStoreError, SQLAlchemyError) as exc:
        delete_quietly(state, written)
        raise StorageUnavailable(str(exc)) from exc
    if not created:  # a concurrent retry won the race: keep one copy only
        delete_quietly(state, written)
    return stored_id, created


FILE_FIELDS = {"name", "filename", "content_type", "size", "sha256", "blob_key"}  # what a report keeps of a file


def file_records(files: list[Attachment]) -> list[dict[str, Any]]:
    """Stored files as a feedback or security report keeps them (its ``attachments`` JSON)."""
    return [a.model_dump(include=FILE_FIELDS) for a in files]


def put_attachments(state: ServerState, folder: str, owner_id: str, at: datetime, parts: list[UploadPart],
                    written: list[str], rules: Rules | None = None) -> list[Attachment]:
    """Put each part in the blob store under ``<folder>/<day>/<owner_id>/<n>-<name>`` (its key
    appended to written), its name and content type sanitized, a text part scrubbed with
    rules (the default project's when None: server/ingest/scrubbing.py); the rows
    (crash_id: owner_id; size and sha256 of what was stored). Feedback
    (server/ingest/feedback.py) keeps its files this way too."""
    rules = project_rules(state, None) if rules is None else rules
    attachments = []
    seen: set[str] = set()
    for index, part in enumerate(parts):
        name = scrub_text(rules, printable(part.name))
        if not name.strip("."):  # "" or "..": a link to it would resolve to another page
            name = f"attachment-{index}"
        while name in seen:  # two parts with one field name are both kept
            name = f"{name}-{index}"
        seen.add(name)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]
        key = day_key(folder, at, f"{owner_id}/{index:02d}-{safe}")
        reader = scrubbed_reader(rules, part)
        state.ctx.blobs.put_file(key, reader.as_file() if reader else part.file)
        written.append(key)
        attachments.append(Attachment(
            crash_id=owner_id, name=name[:200],
            filename=scrub_text(rules, printable(part.filename or ""))[:300] or None,
            content_type=CONTROL.split(part.content_type or "")[0].strip()[:200] or None,
            size=reader.size if reader else part.size, sha256=reader.sha256 if reader else part.sha256, blob_key=key,
        ))
    return attachments


def printable(text: str) -> str:
    """text with control characters (CR, LF, NUL ...) as ``_``: an envelope item's
    ``filename`` "a\\r\\nb" would otherwise end up in a Content-Disposition header (and NUL
    is refused by PostgreSQL)."""
    return CONTROL.sub("_", text)


def delete_quietly(state: ServerState, keys: list[str]) -> None:
    for key in keys:
        try:
            state.ctx.blobs.delete(key)
        except BlobStoreError as exc:
            log.warning("could not remove %s: %s", key, exc)


def enqueue_quietly(state: ServerState, crash_id: str) -> None:
    """Enqueue the processing of a new crash; a failure is logged and left to the sweeper,
    never raised. Nothing to do when the worker takes `received` crashes from the database
    itself (workers/db_queue.py)."""
    if state.queue.polls_received:
        return
    try:
        state.queue.enqueue(crash_id)
    except Exception as exc:  # noqa: BLE001 - the upload is safe; the sweeper retries
        log.warning("enqueue of %s failed, the sweeper will retry: %s", crash_id, exc)
