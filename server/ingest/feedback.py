"""Tester feedback in: ``POST /api/<project>/feedback/`` (JSON or multipart, the ingest key as on
every ingest path) and the Sentry envelope items ``feedback`` and ``user_report`` with their
screenshots (server/ingest/sentry_store.py hands them here). docs/feedback.md.

A report is stored as feedback, never as a crash (storage/feedback.py), its files as the
report's attachments (the crash attachments' code: sanitized names, the same size caps). Bad
input is refused with a reason and nothing is stored: ``feedback_empty_message``,
``feedback_too_long`` (413), ``feedback_bad_category``, ``feedback_bad_screenshot``,
``feedback_unknown_crash``. Persist, then acknowledge; then the threshold rules look at the
report's group (a failure there is logged: the report is safe).

Contact e-mail addresses and names (Sentry's ``contact_email``, ``email``, ``name``) are
personal data and are never stored: the tester is the studio's pseudonymous ``tester_id``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Mapping

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.tables import Project, utcnow
from server.ingest import security
from server.ingest.crashmover import delete_quietly, file_records, put_attachments
from server.ingest.discard import Discarded, StorageUnavailable
from server.ingest.envelope import Envelope, Item
from server.ingest.refusal import Flavor, refusing
from server.ingest.reports import Report, take_report, text_of
from server.ingest.scrubbing import project_rules
from server.ingest.sentry_event import tags_dict
from server.ingest.upload_parser import (
    Budget,
    SpoolWriter,
    UploadPart,
)
from server.state import ServerState
from storage import feedback as stored
from storage.blobs import BlobStoreError
from triage.feedback import CATEGORIES, DEFAULT_CATEGORY, MAX_MESSAGE_BYTES
from triage.scrub import scrub_fields
from workers import triage_jobs

log = logging.getLogger(__name__)

FEEDBACK = Flavor("feedback")  # answers {"detail": "<code>"}, counted under the code
TEXT_FIELDS = {"message": None, "category": 16, "tester_id": 200, "build": 200, "platform": 50, "crash_id": 40,
               "event_id": 64, "url": 500}  # field -> characters kept (None: the message, checked whole)
SENTRY_CATEGORY = "bug"  # a Sentry feedback or user report that names no category
# What a screenshot must start with: PNG, JPEG, GIF, WebP ("RIFF" <size> "WEBP").
IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"))
IMAGE_TYPES = frozenset(t for _, t in IMAGE_MAGIC) | {"image/webp"}
FEEDBACK_NAMESPACE = uuid.UUID("6f0b7c1e-4f5e-4b8e-9a53-0c1d2e3f4a5b")  # ids of Sentry feedback events


@refusing(FEEDBACK, outages=(SQLAlchemyError, BlobStoreError))
async def feedback_endpoint(request: Request) -> Response:
    """POST /api/<project>/feedback/: one report; answers ``{"id": "<feedback id>"}``."""
    return JSONResponse({"id": await take_report(request, TEXT_FIELDS, "feedback", save)})


def checked(fields: Mapping[str, str | None]) -> dict[str, str | None]:
    """The report's fields, checked and cut to their columns. Raises Discarded:
    400 feedback_empty_message, 413 feedback_too_long, 400 feedback_bad_category."""
    message = (fields.get("message") or "").strip()
    if not message:
        raise Discarded(400, "feedback_empty_message", "the message is empty")
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        raise Discarded(413, "feedback_too_long", f"the message is over {MAX_MESSAGE_BYTES} bytes")
    category = (fields.get("category") or "").strip().lower() or DEFAULT_CATEGORY
    if category not in CATEGORIES:
        raise Discarded(400, "feedback_bad_category", f"unknown category {category[:40]!r}")
    out = {name: (fields.get(name) or "").strip()[:size] or None for name, size in TEXT_FIELDS.items() if size}
    return out | {"message": message.replace("\x00", ""), "category": category}


def sniffed_image(part: UploadPart) -> str | None:
    """The image type the part's first bytes say (PNG, JPEG, GIF, WebP), else None."""
    head = part.head(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in IMAGE_MAGIC if head.startswith(magic)), None)


def check_screenshots(files: list[UploadPart]) -> None:
    """A file that says it is a screenshot (its field or file name) or an image (its content
    type) must be a PNG, JPEG, GIF or WebP; its content type becomes the sniffed one (served
    as that type, docs/feedback.md). Raises Discarded(400 feedback_bad_screenshot)."""
    for part in files:
        names = f"{part.name} {part.filename or ''}".lower()
        if "screenshot" in names or (part.content_type or "").strip().lower().startswith("image/"):
            kind = sniffed_image(part)
            if kind is None:
                raise Discarded(400, "feedback_bad_screenshot", f"{part.name!r} is not a PNG, JPEG, GIF or WebP")
            part.content_type = kind


def save(state: ServerState, project: Project, report: Report) -> str:
    """Check and store one report with its files, then run the threshold rules on its group.
    Returns the feedback id (a security report's id for category ``security``: it is stored
    as a restricted security report, server/ingest/security.py). Raises Discarded (bad input,
    feedback_unknown_crash), StorageUnavailable."""
    assert project.id is not None  # a stored project has its id
    if (report.fields.get("category") or "").strip().lower() == security.CATEGORY:  # never shown as feedback
        return security.save(state, project, report)
    rules = project_rules(state, project.name)  # the text and files are scrubbed (docs/privacy.md)
    fields = scrub_fields(rules, checked(report.fields))
    crash = _crash_of(state, project.id, fields)
    check_screenshots(report.files)
    feedback_id, now, written = report.feedback_id or str(uuid.uuid4()), utcnow(), list[str]()
    try:
        files = put_attachments(state, "feedback", feedback_id, now, report.files, written, rules)
        row = stored.store_feedback(
            state.ctx.engine, project_id=project.id, category=str(fields["category"]), message=str(fields["message"]),
            source=report.source, tester_id=fields["tester_id"] or (crash or {}).get("tester_id"),
            build=fields["build"] or (crash or {}).get("build"), platform=fields["platform"] or (crash or {}).get(
                "platform"), crash_id=(crash or {}).get("crash_id"), event_id=fields["event_id"], url=fields["url"],
            attachments=file_records(files), feedback_id=feedback_id, received_at=now)
    except (BlobStoreError, SQLAlchemyError) as exc:
        delete_quietly(state, written)
        raise StorageUnavailable(str(exc)) from exc
    evaluate_quietly(state, row.group_id)
    return row.id


def _crash_of(state: ServerState, project_id: int, fields: dict[str, str | None]) -> dict[str, Any] | None:
    """The crash the report is about: by crash_id (which must be one of the project's: else
    Discarded(400 feedback_unknown_crash)), else by Sentry event id (None until that crash
    arrives: the tie is then made when reading)."""
    if fields["crash_id"]:
        crash = stored.find_crash(state.ctx.engine, project_id=project_id, crash_id=fields["crash_id"])
        if crash is None:
            raise Discarded(400, "feedback_unknown_crash", "no such crash in this project")
        return crash
    event_id = stored.normal_event_id(fields["event_id"])
    return stored.find_crash(state.ctx.engine, project_id=project_id, event_id=event_id) if event_id else None


def evaluate_quietly(state: ServerState, group_id: int | None) -> None:
    """The threshold rules on the report's feedback group (open or escalate its ticket), then
    the notifications. The report is committed: a failure here is logged, never answered."""
    if group_id is None:
        return
    try:
        triage_jobs.notify(state.queue, triage_jobs.evaluate_group(state.ctx, group_id))
    except Exception as exc:  # noqa: BLE001 - the report is stored; the periodic run looks again
        log.warning("threshold rules on feedback group %s failed: %s", group_id, exc)


# -- Sentry envelope items -------------------------------------------------------------------


def envelope_reports(state: ServerState, project_id: int, envelope: Envelope) -> list[Report]:
    """The envelope's ``feedback`` and ``user_report`` items as reports; the envelope's
    attachments go with the first feedback item (a screenshot) and are taken out of the
    envelope, so that they never become a crash."""
    reports = [_sentry_feedback(item, project_id) for item in envelope.of_type("feedback")]
    reports += [_user_report(item) for item in envelope.of_type("user_report")]
    if reports and reports[0].source == "feedback":
        taken = envelope.of_type("attachment")
        envelope.items = [item for item in envelope.items if item not in taken]
        budget = Budget(state.settings.max_decompressed_bytes)
        reports[0].files = [_part(state, item, budget) for item in taken]
    return reports


def _part(state: ServerState, item: Item, budget: Budget) -> UploadPart:
    writer = SpoolWriter(state.tmp_dir, budget)
    writer.write(item.payload)
    name = str(item.headers.get("filename") or "attachment")
    content_type = item.headers.get("content_type")
    return writer.finish(name, name, str(content_type) if content_type else None)


def _sentry_feedback(item: Item, project_id: int) -> Report:
    """A ``feedback`` item: an event whose ``contexts.feedback`` holds the message (contact_email
    and name are left out: personal data). Category from ``tags.category`` or the context's
    ``category``, else SENTRY_CATEGORY; tester from ``user.id`` or ``tags.tester_id``; build
    from ``release``; platform from ``contexts.os.name``. Its id comes from the event id, so a
    retried envelope stores it once."""
    event = item.json or {}
    contexts = _object(event, "contexts")
    context, os_context, user = _object(contexts, "feedback"), _object(contexts, "os"), _object(event, "user")
    tags = tags_dict(event.get("tags"))
    fields = {"message": text_of(context.get("message")),
              "category": tags.get("category") or text_of(context.get("category")) or SENTRY_CATEGORY,
              "tester_id": text_of(user.get("id")) or tags.get("tester_id"), "build": text_of(event.get("release")),
              "platform": text_of(os_context.get("name")), "event_id": text_of(context.get("associated_event_id")),
              "url": text_of(context.get("url"))}
    own = stored.normal_event_id(text_of(event.get("event_id")))
    return Report(fields, "feedback", feedback_id=str(uuid.uuid5(FEEDBACK_NAMESPACE, f"{project_id}:{own}")) if own else None)


def _object(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    """parent[key] when it is a JSON object, else an empty one."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _user_report(item: Item) -> Report:
    """A ``user_report`` item (Sentry's older feedback): comments about the event event_id
    (name and email are left out: personal data)."""
    payload = item.json or {}
    return Report({"message": text_of(payload.get("comments")), "category": SENTRY_CATEGORY,
                   "event_id": text_of(payload.get("event_id"))}, "user_report")


def store_envelope_feedback(state: ServerState, project: Project, envelope: Envelope) -> Discarded | None:
    """Store the envelope's feedback and user reports (see envelope_reports). Returns the
    first refusal among them (the others are stored), else None. Raises StorageUnavailable."""
    assert project.id is not None  # a stored project has its id
    problem: Discarded | None = None
    for report in envelope_reports(state, project.id, envelope):
        try:
            save(state, project, report)
        except StorageUnavailable:
            raise
        except Discarded as exc:
            problem = problem or exc
        finally:
            report.close()
    return problem
