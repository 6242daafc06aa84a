"""Store what a Sentry envelope carries: crashes (with or without a minidump), attachments and
sessions. Persist, then acknowledge: everything here is committed before the endpoint answers.

- ``event`` + ``attachment`` with ``attachment_type: event.minidump``: a crash exactly like an
  uploaded minidump (``server/ingest/crashmover.persist_upload``), the event's release, user, tags and
  contexts as its ``sentry.*`` annotations and the event itself as the attachment
  ``__sentry-event``.
- ``event`` without a minidump: a crash without a dump whose event JSON is in the blob store
  (``events/<day>/<crash_id>.json``); the pipeline builds its stack from the event.
- other attachments (logs ...): attachments of that crash.
- ``session`` / ``sessions``: rows of the sessions table (release = build, ``did`` = tester).
- ``feedback`` / ``user_report``: tester feedback, never a crash; the attachments of an envelope
  with a ``feedback`` item are its screenshots (server/ingest/feedback.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from schemas.tables import Project
from server.ingest.crashmover import enqueue_quietly, fingerprint, persist_upload, store_crash
from server.ingest.discard import Discarded, MalformedUpload, StorageUnavailable
from server.ingest.envelope import Envelope, Item
from server.ingest.feedback import store_envelope_feedback
from server.ingest.refusal import count
from server.ingest.scrubbing import project_rules
from server.ingest.sentry_event import event_annotations
from server.ingest.sentry_sessions import envelope_sessions
from server.ingest.upload_parser import Budget, ParsedUpload, SpoolWriter, UploadPart, prepare_minidump
from server.state import ServerState
from storage import sessions
from storage.blobs import day_key
from triage.kinds import kind_of_event, level_of
from triage.scrub import scrub_fields

log = logging.getLogger(__name__)
MINIDUMP_TYPE = "event.minidump"


def event_id_of(envelope: Envelope) -> str:
    """The envelope's event id (header, else the event's), as 32 hex digits; a new one if none."""
    events = envelope.of_type("event")
    for candidate in (envelope.event_id, (events[0].json or {}).get("event_id") if events else None):
        try:
            return uuid.UUID(str(candidate)).hex
        except ValueError:
            continue
    return uuid.uuid4().hex


def store_envelope(state: ServerState, project: Project, envelope: Envelope, via: str) -> Discarded | None:
    """Store the envelope's sessions, its feedback and its crash, then enqueue the crash. The
    envelope header's ``event_id`` is set to the id answered to the client (event_id_of).
    Returns the problem of a bad minidump attachment (the event is then stored without it) or
    of a refused feedback item (server/ingest/feedback.py), else None.
    Raises StorageUnavailable."""
    envelope.headers["event_id"] = event_id = event_id_of(envelope)
    reports, problems = envelope_sessions(envelope)
    for reason in problems:
        count(state, f"sessions_malformed_{reason}")
    try:
        if reports:
            sessions.upsert_sessions(state.ctx.engine, project_id=project.id,  # type: ignore[arg-type]
                                     sessions=reports)
    except SQLAlchemyError as exc:
        raise StorageUnavailable(str(exc)) from exc
    feedback_problem = store_envelope_feedback(state, project, envelope)  # takes a feedback's screenshots
    event_items = envelope.of_type("event")
    event = dict(event_items[0].json or {}) if event_items else None
    attachments = envelope.of_type("attachment")
    if event is None and not attachments:
        return feedback_problem
    if event is None:  # Sentry would wait for the event; an envelope of attachments alone has none
        event = {"event_id": event_id, "level": "fatal", "message": "attachments without an event"}
    event.setdefault("event_id", event_id)
    crash_id, created, problem = _store_crash(state, project, envelope, event, via)
    if created:
        enqueue_quietly(state, crash_id)
    return problem or feedback_problem


def _store_crash(state: ServerState, project: Project, envelope: Envelope, event: dict[str, Any],
                 via: str) -> tuple[str, bool, MalformedUpload | None]:
    """Store one crash for the envelope; (crash_id, created, problem with the minidump).
    The event is scrubbed first (docs/privacy.md), its event_id kept for dedupe."""
    event = {**scrub_fields(project_rules(state, project.name), event), "event_id": event["event_id"]}
    budget = Budget(state.settings.max_decompressed_bytes)
    dumps = [a for a in envelope.of_type("attachment") if a.headers.get("attachment_type") == MINIDUMP_TYPE]
    others = [a for a in envelope.of_type("attachment") if not dumps or a is not dumps[0]]
    event_part = _part("__sentry-event", "__sentry-event.json", "application/json",
                       json.dumps(event, separators=(",", ":")).encode(), state, budget)
    parts = [_part(_name(a), _name(a), a.headers.get("content_type"), a.payload, state, budget) for a in others]
    annotations = event_annotations(event)
    problem: MalformedUpload | None = None
    try:
        if dumps:
            try:
                crash_id, created = _store_with_minidump(state, project, dumps[0], [event_part, *parts],
                                                         annotations, via, budget, event)
                return crash_id, created, None
            except MalformedUpload as exc:  # not a dump: keep the event, say what was wrong
                if exc.status_code >= 500:  # spool_full: nothing is wrong with the dump, retry it all
                    raise
                problem = exc
        crash_id, created = persist_event(state, project, event, annotations, parts, via)
        return crash_id, created, problem
    finally:
        for part in [event_part, *parts]:
            part.close()


def _store_with_minidump(state: ServerState, project: Project, dump_item: Item, parts: list[UploadPart],
                         annotations: dict[str, str], via: str, budget: Budget,
                         event: dict[str, Any]) -> tuple[str, bool]:
    """The minidump attachment through ingest's own path. Raises MalformedUpload (not a
    dump, bad compression), StorageUnavailable."""
    raw = _part("upload_file_minidump", _name(dump_item), None, dump_item.payload, state, budget)
    try:
        dump = prepare_minidump(raw, "", state.tmp_dir, budget)  # gunzipped, MDMP checked
        try:
            return persist_upload(state, project, ParsedUpload(dump, parts, annotations), via, {}, event)
        finally:
            dump.close()
    finally:
        raw.close()


def _name(item: Item) -> str:
    name = item.headers.get("filename")
    return str(name) if name else "attachment"


def _part(name: str, filename: str | None, content_type: Any, data: bytes | bytearray | memoryview, state: ServerState,
          budget: Budget) -> UploadPart:
    writer = SpoolWriter(state.tmp_dir, budget)
    writer.write(data)
    return writer.finish(name, filename, str(content_type) if content_type else None)


def persist_event(state: ServerState, project: Project, event: dict[str, Any], annotations: dict[str, str],
                  parts: list[UploadPart], via: str) -> tuple[str, bool]:
    """Store a crash without a minidump: the event JSON, attachments, annotations document
    and rows; its kind and level are the event's (triage/kinds.kind_of_event). Retries of one
    event id within the dedupe window are one crash. Returns (crash_id, created). Raises
    StorageUnavailable."""
    key = fingerprint(project, f"sentry-event:{event['event_id']}", hashlib.sha256(b"event").hexdigest())

    def put_event(crash: dict[str, Any]) -> str:
        key = crash["event_key"] = day_key("events", crash["received_at"], f"{crash['crash_id']}.json")
        state.ctx.blobs.put_bytes(key, json.dumps(event, separators=(",", ":")).encode())
        return key

    return store_crash(state, project, annotations, parts, via, key, put_event, (kind_of_event(event), level_of(event)))

