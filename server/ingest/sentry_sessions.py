"""Sentry session items as crashd sessions (the denominator of crash rates, docs/rates.md).

- ``session``: one session, ``{"sid", "did", "status", "started", "duration", "init",
  "attrs": {"release", "environment"}}``; sent when it starts and again when it ends.
- ``sessions``: aggregates from request-mode SDKs, ``{"attrs": {"release"}, "aggregates":
  [{"started", "did", "exited", "errored", "abnormal", "crashed"}]}``; each counted session
  becomes a row of its own, with an id derived from the item so a retried envelope is
  counted once.

The build is ``attrs.release``, the tester ``did``. Sentry's ``errored`` (ended, but an error
was captured) is an ``exited`` session here: errors are not crashes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from server.ingest.discard import MalformedUpload
from server.ingest.envelope import Envelope
from server.ingest.sessions import parse_session

STATUS = {"ok": "ok", "exited": "exited", "crashed": "crashed", "abnormal": "abnormal", "errored": "exited"}
AGGREGATE_COUNTS = (("exited", "exited"), ("errored", "exited"), ("abnormal", "abnormal"), ("crashed", "crashed"))
MAX_AGGREGATED = 10_000  # sessions one aggregate bucket may stand for


def envelope_sessions(envelope: Envelope) -> tuple[list[dict[str, Any]], list[str]]:
    """The session reports of the envelope's ``session`` and ``sessions`` items, and the
    reasons of those refused (``missing_session_id``, ``bad_started`` ...)."""
    reports: list[dict[str, Any]] = []
    problems: list[str] = []
    sent_at = str(envelope.headers.get("sent_at", ""))
    for number, item in enumerate(envelope.items):
        try:
            if item.type == "session":
                reports.append(parse_session(session_report(item.json or {})))
            elif item.type == "sessions":
                reports += [parse_session(r) for r in aggregate_reports(item.json or {}, f"{sent_at}/{number}",
                                                                        item.payload)]
        except MalformedUpload as exc:
            problems.append(exc.reason)
    return reports, problems


def _attrs(payload: dict[str, Any]) -> dict[str, Any]:
    attrs = payload.get("attrs")
    return attrs if isinstance(attrs, dict) else {}


def session_report(payload: dict[str, Any]) -> dict[str, Any]:
    """One ``session`` item as the fields of server/ingest/sessions.parse_session."""
    status = payload.get("status", "ok")
    return {
        "session_id": payload.get("sid"), "tester_id": payload.get("did"), "build": _attrs(payload).get("release"),
        "started": payload.get("started"), "duration": payload.get("duration"),
        "status": STATUS.get(status, status) if isinstance(status, str) else status,
    }


def aggregate_reports(payload: dict[str, Any], salt: str, raw: bytes | bytearray | memoryview) -> list[dict[str, Any]]:
    """One report per session counted in a ``sessions`` item. Raises MalformedUpload."""
    buckets = payload.get("aggregates")
    if not isinstance(buckets, list):
        raise MalformedUpload("bad_session", "sessions item without an aggregates list")
    hasher = hashlib.sha256(salt.encode() + b"\0")
    hasher.update(raw)
    digest = hasher.hexdigest()[:24]
    release = _attrs(payload).get("release")
    out: list[dict[str, Any]] = []
    for index, bucket in enumerate(buckets):
        if not isinstance(bucket, dict):
            raise MalformedUpload("bad_session", "an aggregate is not an object")
        for field, status in AGGREGATE_COUNTS:
            count = bucket.get(field, 0)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_AGGREGATED:
                raise MalformedUpload("bad_session", f"aggregate {field} is not a count")
            out += [{"session_id": f"agg-{digest}-{index}-{field}-{n}", "tester_id": bucket.get("did"),
                     "build": release, "started": bucket.get("started"), "status": status} for n in range(count)]
    return out
