"""Security reports in: ``POST /api/<project>/security/`` (the ingest key, JSON or multipart:
``summary``, ``details``, ``tester_id``, ``build``, files) and feedback of category
``security`` (the feedback endpoint and Sentry ``feedback`` items hand it here).
docs/security-reports.md.

A report is stored with its files and opens a restricted P0 ticket at once (storage/security.py);
the answer is its id and a receipt the game can show. Refusals: ``security_empty_summary``,
``security_too_long`` (413). The summary is the first line of the text when only a text came
(feedback).
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.tables import Project, utcnow
from server.ingest.crashmover import delete_quietly, file_records, put_attachments
from server.ingest.discard import Discarded, StorageUnavailable
from server.ingest.refusal import Flavor, refusing
from server.ingest.reports import Report, take_report
from server.ingest.scrubbing import project_rules
from server.state import ServerState
from storage import security
from storage.blobs import BlobStoreError
from triage.feedback import MAX_MESSAGE_BYTES
from triage.scrub import scrub_fields
from workers import triage_jobs

SECURITY = Flavor("security")
CATEGORY = "security"  # feedback of this category is a security report
SUMMARY_CHARS = 500
TEXT_FIELDS = {"summary": SUMMARY_CHARS, "details": None, "tester_id": 200, "build": 200}


@refusing(SECURITY, outages=(SQLAlchemyError, BlobStoreError))
async def security_endpoint(request: Request) -> Response:
    """POST /api/<project>/security/: one report; answers ``{"id", "receipt"}``."""
    report_id = await take_report(request, TEXT_FIELDS, "security", save)
    return JSONResponse({"id": report_id, "receipt": security.RECEIPT.format(id=report_id)})


def save(state: ServerState, project: Project, report: Report) -> str:
    """Check and store one report with its files and open its restricted ticket; then enqueue
    the notifications. Returns the report id. Raises Discarded, StorageUnavailable."""
    assert project.id is not None  # a stored project has its id
    # restricted or not, a report is scrubbed like any text before it is stored (docs/privacy.md)
    rules = project_rules(state, project.name)
    fields = scrub_fields(rules, dict(report.fields))
    details = (fields.get("details") or fields.get("message") or "").strip().replace("\x00", "")
    summary = (fields.get("summary") or details.split("\n", 1)[0]).strip()[:SUMMARY_CHARS]
    if not summary:
        raise Discarded(400, "security_empty_summary", "the report has no summary")
    if len(details.encode()) > MAX_MESSAGE_BYTES:
        raise Discarded(413, "security_too_long", f"the details are over {MAX_MESSAGE_BYTES} bytes")
    report_id, written = report.feedback_id or str(uuid.uuid4()), list[str]()
    try:
        files = put_attachments(state, "security", report_id, utcnow(), report.files, written, rules)
        _, change = security.store_report(
            state.ctx.engine, state.settings, project_id=project.id, summary=summary, details=details,
            tester_id=(fields.get("tester_id") or "").strip()[:200] or None,
            build=(fields.get("build") or "").strip()[:200] or None, source=report.source,
            attachments=file_records(files), report_id=report_id)
    except (BlobStoreError, SQLAlchemyError) as exc:
        delete_quietly(state, written)
        raise StorageUnavailable(str(exc)) from exc
    triage_jobs.notify(state.queue, [change])
    return report_id
