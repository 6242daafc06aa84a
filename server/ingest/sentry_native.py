"""sentry-native's Crashpad extras on the minidump endpoint, applied to a parsed upload.

The Crashpad backend uploads, besides ``upload_file_minidump`` (seen from sentry-native 0.4
to 0.7; Relay reads them the same way)::

    Content-Disposition: form-data; name="__sentry-event"; filename="__sentry-event"
    <MessagePack map: release, environment, user, tags, contexts, extra, sdk, debug_meta ...>
    Content-Disposition: form-data; name="__sentry-breadcrumb1"; filename="__sentry-breadcrumb1"
    <MessagePack maps back to back: {"timestamp", "type", "category", "message", "data"}>

Both are decoded: the event becomes ``sentry.*`` annotations (under the upload's own form
fields, which win) and is kept as a JSON attachment ``__sentry-event``; breadcrumbs become a
JSON list attachment of the same name. A part that does not decode is kept as sent, with the
annotation ``sentry.decode_error`` saying why: a bad extra never loses the crash (the client
would retry it forever). Bracket fields ``sentry[release]`` become ``sentry.release``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from server.ingest.sentry_event import (
    BREADCRUMB_PARTS,
    EVENT_PART,
    bracket_annotation,
    decode_msgpack_breadcrumbs,
    decode_msgpack_event,
    event_annotations,
)
from server.ingest.upload_parser import Budget, ParsedUpload, SpoolWriter, UploadPart

log = logging.getLogger(__name__)
MAX_EXTRA_PART = 8 * 1024 * 1024  # a bigger "event" is kept raw, not decoded into memory


def apply_native_parts(parsed: ParsedUpload, tmp_dir: Path | None, budget: Budget) -> ParsedUpload:
    """Decode ``__sentry-event`` and breadcrumb parts and rename bracket fields, in place."""
    from_event: dict[str, str] = {}
    errors: list[str] = []
    kept: list[UploadPart] = []
    for part in parsed.attachments:
        if part.name not in (EVENT_PART, *BREADCRUMB_PARTS) or part.size > MAX_EXTRA_PART:
            kept.append(part)
            continue
        data = part.file.read()
        try:
            if part.name == EVENT_PART:
                document: object = decode_msgpack_event(data)
                from_event = event_annotations(document)  # type: ignore[arg-type]
            else:
                document = decode_msgpack_breadcrumbs(data)
        except ValueError as exc:
            errors.append(f"{part.name}: {exc}")
            part.file.seek(0)
            kept.append(part)
            continue
        part.close()
        kept.append(_json_part(part.name, document, tmp_dir, budget))
    parsed.attachments = kept
    annotations = {bracket_annotation(k) or k: v for k, v in parsed.annotations.items()}
    if errors:
        annotations["sentry.decode_error"] = "; ".join(errors)[:1000]
        log.info("sentry-native parts not decoded: %s", errors)
    parsed.annotations = {**from_event, **annotations}
    return parsed


def _json_part(name: str, document: object, tmp_dir: Path | None, budget: Budget) -> UploadPart:
    """document as a JSON attachment part named name."""
    writer = SpoolWriter(tmp_dir, budget)
    writer.write(json.dumps(document, separators=(",", ":")).encode())
    return writer.finish(name, f"{name}.json", "application/json")
