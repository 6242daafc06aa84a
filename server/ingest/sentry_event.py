"""A Sentry event as crash annotations, and sentry-native's Crashpad extras (pure functions).

Every source of a Sentry event ends up as the same ``sentry.``-prefixed annotations, so that
ingest resolves build, tester and product the same way (``sentry.release``, ``sentry.user.id``):

- an envelope's ``event`` item or a ``/store/`` body (JSON);
- sentry-native's Crashpad upload: the file part ``__sentry-event`` (MessagePack, written by
  ``sentry_value_to_msgpack`` when the crash handler starts) and ``__sentry-breadcrumb1`` /
  ``__sentry-breadcrumb2`` (MessagePack breadcrumbs written back to back, the two files taking
  turns as each fills up);
- the form field ``sentry`` (JSON) and bracket fields ``sentry[release]=1.0``,
  ``sentry[tags][level]=3`` (Electron's crashReporter, older sentry-native).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgpack

from schemas.sentry_event import event_frames, event_message, primary_exception
from server.ingest.upload_parser import MAX_JSON_DEPTH, flatten_json, too_deep

EVENT_PART = "__sentry-event"
BREADCRUMB_PARTS = ("__sentry-breadcrumb1", "__sentry-breadcrumb2")
# The parts of an event kept as annotations; debug_meta (every loaded image), threads and
# breadcrumbs would be thousands of annotations and are kept in the event blob instead.
SCALAR_KEYS = ("event_id", "release", "dist", "environment", "platform", "level", "logger",
               "server_name", "transaction")
OBJECT_KEYS = ("user", "contexts", "extra", "sdk")
MAX_VALUE = 16 * 1024  # one annotation's characters
MAX_FRAMES = 50  # frames of the exception's stack trace kept in the annotation
BRACKET = re.compile(r"^sentry((?:\[[^\[\]]*\])+)$")


def event_annotations(event: dict[str, Any]) -> dict[str, str]:
    """The event's release, user, tags, contexts, extra, message and exception (with its stack
    trace, crashing frame first) as ``sentry.*`` annotations."""
    out: dict[str, str] = {}
    for key in SCALAR_KEYS:
        if isinstance(event.get(key), (str, int, float)) and event.get(key) != "":
            out[f"sentry.{key}"] = str(event[key])
    for key in OBJECT_KEYS:
        if isinstance(event.get(key), dict):
            flatten_json(event[key], f"sentry.{key}", out)
    tags = tags_dict(event.get("tags"))
    if tags:
        flatten_json(tags, "sentry.tags", out)
    message = event_message(event)
    if message:
        out["sentry.message"] = message
    exception = primary_exception(event)
    if exception:
        _exception_annotations(exception, out)
    return {k: v[:MAX_VALUE] for k, v in out.items()}


def tags_dict(tags: Any) -> dict[str, str]:
    """Tags as a dict: SDKs send ``{"k": "v"}`` or ``[["k", "v"], ...]``."""
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    if isinstance(tags, list):
        return {str(p[0]): str(p[1]) for p in tags if isinstance(p, (list, tuple)) and len(p) == 2}
    return {}


def _exception_annotations(exception: dict[str, Any], out: dict[str, str]) -> None:
    for key in ("type", "value", "module"):
        if isinstance(exception.get(key), str):
            out[f"sentry.exception.{key}"] = exception[key]
    mechanism = exception.get("mechanism")
    if isinstance(mechanism, dict):
        flatten_json({k: v for k, v in mechanism.items() if k in ("type", "handled", "synthetic")},
                     "sentry.exception.mechanism", out)
    frames = event_frames({"exception": {"values": [exception]}})
    if frames:
        kept = [{k: f[k] for k in ("function", "module", "package", "filename", "lineno", "instruction_addr",
                                   "in_app") if f.get(k) is not None} for f in frames[:MAX_FRAMES]]
        out["sentry.exception.stacktrace"] = json.dumps(kept, separators=(",", ":"))


# -- sentry-native's Crashpad parts and form fields ------------------------------------------


def decode_msgpack_event(data: bytes) -> dict[str, Any]:
    """The event of a ``__sentry-event`` part. Raises ValueError when it is not one MessagePack
    map at most MAX_JSON_DEPTH deep. A JSON object is taken too: ``{`` is the MessagePack
    integer 123, never an event."""
    if data[:1] == b"{":
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"neither MessagePack nor JSON: {str(exc)[:200]}") from exc
        if isinstance(value, dict):
            if too_deep(value):
                raise ValueError(f"the event is nested deeper than {MAX_JSON_DEPTH}")
            return value
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"not MessagePack: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("the event is not a MessagePack map")
    if too_deep(value):  # msgpack itself stops at 1024 levels (StackError, a ValueError)
        raise ValueError(f"the event is nested deeper than {MAX_JSON_DEPTH}")
    return _jsonable(value)


def decode_msgpack_breadcrumbs(data: bytes) -> list[dict[str, Any]]:
    """The breadcrumbs of a ``__sentry-breadcrumb<n>`` part: MessagePack maps back to back.
    A torn last one (the process died while appending) ends the list. Raises ValueError when
    the part holds nothing readable."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(data) + 1)
    unpacker.feed(data)
    crumbs: list[dict[str, Any]] = []
    try:
        for value in unpacker:
            if isinstance(value, dict) and not too_deep(value):
                crumbs.append(_jsonable(value))
    except (msgpack.UnpackException, ValueError, TypeError):
        pass  # keep the breadcrumbs read before the damage
    if data and not crumbs:
        raise ValueError("no MessagePack breadcrumb in the part")
    return crumbs


def _jsonable(value: Any) -> Any:
    """MessagePack values as JSON ones (bytes become text, map keys strings, a Timestamp
    (ext type -1) ISO 8601 text)."""
    if isinstance(value, msgpack.Timestamp):
        return _timestamp(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, msgpack.ExtType):
        return None
    return value


def _timestamp(value: msgpack.Timestamp) -> str | float:
    """A MessagePack Timestamp as ``2026-03-01T12:00:00.5+00:00``; seconds since 1970 when
    it is outside datetime's years 1-9999 (the format allows +-292 billion years)."""
    try:
        return value.to_datetime().isoformat()
    except (OverflowError, ValueError, OSError):
        return value.to_unix()


def bracket_annotation(name: str) -> str | None:
    """``sentry[tags][level]`` -> ``sentry.tags.level``; None for any other field name."""
    match = BRACKET.match(name)
    if not match:
        return None
    keys = [k for k in match.group(1)[1:-1].split("][")]
    return "sentry." + ".".join(keys) if all(keys) else None
