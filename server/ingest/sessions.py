"""Session upload: ``POST /api/<project>/sessions/`` (the denominator of crash rates).

The body is JSON: one session object, a list of them, or ``{"sessions": [...]}``; each is
``{"session_id", "tester_id", "build", "started", "duration", "status"}`` (docs/rates.md).
Authentication is the crash endpoints' ingest key. A request is all or nothing: the first
invalid session refuses it with ``400 {"detail": "malformed_<reason>"}``, counted as the
discard ``sessions_malformed_<reason>``. Sessions are committed before the 200
``{"accepted": n}`` (persist, then acknowledge); posting a session again updates it.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.ingest.discard import MalformedUpload
from server.ingest.keys import authenticate
from server.ingest.refusal import SESSIONS, refusing
from server.ingest.upload_parser import read_whole_body
from server.state import ServerState, state_of
from storage import sessions

log = logging.getLogger(__name__)

MAX_SESSION_ID = 100  # the sessions.session_id column
MAX_TEXT = 200  # tester_id and build columns; longer values are cut, as crash annotations are
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)  # a start before this is a broken clock


@refusing(SESSIONS, outages=(SQLAlchemyError,))
async def upload_endpoint(request: Request) -> Response:
    """POST /api/<project>/sessions/: store the sessions; 200 ``{"accepted": n}``. Raises
    Discarded (UploadTooLarge too: 413 too_large), SQLAlchemyError (503 storage_unavailable)."""
    state = state_of(request)
    project = await authenticate(state, request, request.path_params["project"])
    payload = parse_json(await read_body(request, state))
    reports = parse_sessions(payload)
    assert project.id is not None  # a stored project has its id
    accepted = await run_in_threadpool(
        sessions.upsert_sessions, state.ctx.engine, project_id=project.id, sessions=reports)
    return JSONResponse({"accepted": accepted})


async def read_body(request: Request, state: ServerState) -> bytes:
    """The body, gunzipped when sent so, within the configured caps. Raises UploadTooLarge."""
    settings = state.settings
    return bytes(await read_whole_body(request, max_upload_bytes=settings.max_upload_bytes,
                                       max_decompressed_bytes=settings.max_decompressed_bytes))


def parse_json(body: bytes) -> Any:
    """The JSON document of body. Raises MalformedUpload("bad_json")."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedUpload("bad_json", str(exc)[:200]) from exc


def parse_sessions(payload: Any) -> list[dict[str, Any]]:
    """The session reports of a request body, ready for storage.upsert_sessions.

    Raises MalformedUpload with the reasons ``bad_json`` (not an object or a list),
    ``bad_session`` (an item is not an object), ``missing_session_id``, ``bad_session_id``,
    ``bad_status``, ``bad_started``, ``bad_duration``, ``bad_tester_id``, ``bad_build``.
    """
    if isinstance(payload, dict) and "sessions" in payload and "session_id" not in payload:
        items = payload["sessions"]
    else:
        items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise MalformedUpload("bad_json", "expected a session object or a list of them")
    return [parse_session(item) for item in items]


def parse_session(item: Any) -> dict[str, Any]:
    """One validated session report. Raises MalformedUpload (see parse_sessions)."""
    if not isinstance(item, dict):
        raise MalformedUpload("bad_session", "a session must be a JSON object")
    session_id = item.get("session_id")
    if isinstance(session_id, int) and not isinstance(session_id, bool):
        session_id = str(session_id)
    if not isinstance(session_id, str) or not session_id.strip():
        raise MalformedUpload("missing_session_id")
    if len(session_id.strip()) > MAX_SESSION_ID:
        raise MalformedUpload("bad_session_id", f"longer than {MAX_SESSION_ID} characters")
    status = item.get("status", "ok")
    if status not in sessions.STATUSES:
        raise MalformedUpload("bad_status", f"{str(status)[:50]!r} is not one of {', '.join(sessions.STATUSES)}")
    return {
        "session_id": session_id.strip(), "status": status, "started": parse_started(item.get("started")),
        "duration": _duration(item.get("duration")),
        "tester_id": _text(item.get("tester_id"), "bad_tester_id"), "build": _text(item.get("build"), "bad_build"),
    }


def parse_started(value: Any) -> datetime:
    """An ISO 8601 time (UTC when it has no zone; ``Z`` accepted) or epoch seconds (a number
    or a string of one), as aware UTC. Raises MalformedUpload("bad_started")."""
    try:
        if isinstance(value, str) and not _is_number(value):
            parsed = datetime.fromisoformat(value.strip())
            parsed = parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(float(value), tz=timezone.utc)
        else:
            raise MalformedUpload("bad_started", "missing, or neither ISO 8601 nor epoch seconds")
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedUpload("bad_started", str(exc)[:200]) from exc
    if parsed < EARLIEST:
        raise MalformedUpload("bad_started", f"{parsed.isoformat()} is before {EARLIEST.year}")
    return parsed


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _duration(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MalformedUpload("bad_duration", "duration must be a number of seconds >= 0")
    return float(value)


def _text(value: Any, reason: str) -> str | None:
    """A tester id or build: a string (an integer is taken as its text; a float is refused,
    as 1.10 would become "1.1"), stripped and cut to the column size; empty means none, as
    for crash annotations."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise MalformedUpload(reason, "expected a string")
    return value.strip()[:MAX_TEXT] or None
