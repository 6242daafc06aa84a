"""Sentry envelopes: split a body into its header and items (pure: bytes in, items out).

The format (https://develop.sentry.dev/sdk/envelopes/, Relay's ``envelope.rs``)::

    {"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://key@host/42"}\\n
    {"type":"event","length":41}\\n
    {"message":"hello","level":"error"}....\\n
    {"type":"attachment","length":4,"filename":"a.log"}\\n
    abcd\\n
    {"type":"session"}\\n
    {"sid":"...","status":"exited"}

An item's payload is ``length`` bytes (then an optional newline) or, without ``length``, the
rest of the line. The last line may lack its newline; blank lines between items are skipped.

Errors are reason codes (``envelope_bad_header``, ``envelope_bad_item``, ``envelope_length``,
``envelope_json``) carried by ``MalformedEnvelope`` together with every item parsed before the
bad one, so that the caller can still store them ("lose nothing valid that came before").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from server.ingest.discard import MalformedUpload
from server.ingest.upload_parser import MAX_JSON_DEPTH, too_deep

# Item types whose payload must be one JSON object (checked while parsing).
JSON_ITEMS = frozenset({"event", "transaction", "session", "sessions", "user_report", "client_report",
                        "feedback"})
MAX_ITEMS = 1000  # Relay caps items too; a body of empty items must not cost unbounded work
MAX_JSON_BYTES = 1024 * 1024  # one JSON item (Settings.max_event_bytes); Relay's max_event_size
JSON_ITEMS_BUDGET = 4  # all JSON items of one envelope together: 4 x max_json_bytes (an event,
# a session, a client report fit many times over; 100 MiB of `[[],[],...]` sessions took GBs)


class MalformedEnvelope(MalformedUpload):
    """A bad envelope; ``items`` are the valid ones that came before the problem."""

    def __init__(self, reason: str, detail: str, envelope: "Envelope") -> None:
        super().__init__(reason, detail)
        self.envelope = envelope


class EnvelopeItemTooLarge(MalformedEnvelope):
    """A JSON item (or a /store/ event, once inflated) over the event cap: 413 too_large_event."""

    status_code = 413

    def __init__(self, detail: str, envelope: "Envelope") -> None:
        super().__init__("too_large_event", detail, envelope)

    @property
    def discard_code(self) -> str:
        return self.reason


@dataclass
class Item:
    """One envelope item: its JSON header, raw payload and (for JSON types) the parsed payload."""

    headers: dict[str, Any]
    payload: bytes | bytearray | memoryview  # a view into the body: a 100 MiB minidump is not copied
    json: dict[str, Any] | None = None

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))


@dataclass
class Envelope:
    """The envelope header (``event_id``, ``dsn``, ``sent_at`` ...) and its items in order."""

    headers: dict[str, Any] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)

    @property
    def event_id(self) -> str | None:
        value = self.headers.get("event_id")
        return value if isinstance(value, str) and value else None

    def of_type(self, *types: str) -> list[Item]:
        """The items of the given types, in order."""
        return [item for item in self.items if item.type in types]


def _json_object(line: bytes | bytearray | memoryview, reason: str, what: str, envelope: Envelope) -> dict[str, Any]:
    """line parsed as a JSON object at most MAX_JSON_DEPTH deep. Raises MalformedEnvelope(reason)."""
    try:
        value = json.loads(bytes(line).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedEnvelope(reason, f"{what}: {str(exc)[:200]}", envelope) from exc
    if not isinstance(value, dict):
        raise MalformedEnvelope(reason, f"{what}: expected a JSON object", envelope)
    if too_deep(value):  # the event's annotations and blob are written by recursive code
        raise MalformedEnvelope(reason, f"{what}: nested deeper than {MAX_JSON_DEPTH}", envelope)
    return value


def _line(data: bytes | bytearray, pos: int) -> tuple[bytes | bytearray, int]:
    """The line starting at pos (without its newline) and the position after the newline."""
    end = data.find(b"\n", pos)
    if end < 0:
        return data[pos:], len(data)
    return data[pos:end], end + 1


def parse_envelope(data: bytes | bytearray, max_json_bytes: int = MAX_JSON_BYTES) -> Envelope:
    """The envelope in data; a JSON item over max_json_bytes, or JSON items together over
    JSON_ITEMS_BUDGET times that, are refused before they are parsed (parsed JSON takes up to
    ~20 times its size). Raises MalformedEnvelope (with the items parsed so far),
    EnvelopeItemTooLarge."""
    envelope = Envelope()
    header, pos = _line(data, 0)
    if not header.strip():
        raise MalformedEnvelope("envelope_bad_header", "the body does not start with an envelope header", envelope)
    envelope.headers = _json_object(header.strip(), "envelope_bad_header", "envelope header", envelope)
    view = memoryview(data)
    json_left = JSON_ITEMS_BUDGET * max_json_bytes
    while pos < len(data):
        line, after = _line(data, pos)
        if not line.strip():  # a blank line between items (or the final newline)
            pos = after
            continue
        if len(envelope.items) >= MAX_ITEMS:
            raise MalformedEnvelope("envelope_bad_item", f"more than {MAX_ITEMS} items", envelope)
        item, pos = _item(data, view, line.strip(), after, envelope, min(max_json_bytes, json_left))
        envelope.items.append(item)
        json_left -= len(item.payload) if item.json is not None else 0
    return envelope


def _item(data: bytes | bytearray, view: memoryview, line: bytes | bytearray, pos: int,
          envelope: Envelope, max_json_bytes: int) -> tuple[Item, int]:
    """The item whose header is line and whose payload starts at pos; the position after it."""
    number = len(envelope.items) + 1
    headers = _json_object(line, "envelope_bad_item", f"item {number} header", envelope)
    kind = headers.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedEnvelope("envelope_bad_item", f"item {number} header has no type", envelope)
    length = headers.get("length")
    payload: bytes | bytearray | memoryview
    if length is None:
        payload, pos = _line(data, pos)
    else:
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise MalformedEnvelope("envelope_length", f"item {number}: bad length {length!r}", envelope)
        if pos + length > len(data):
            raise MalformedEnvelope(
                "envelope_length", f"item {number} ({kind}): length {length} goes past the end of the body "
                f"({len(data) - pos} bytes left)", envelope)
        payload, pos = view[pos:pos + length], pos + length
        if data[pos:pos + 1] == b"\n":
            pos += 1
    item = Item(headers, payload)
    if kind in JSON_ITEMS:
        if len(payload) > max_json_bytes:
            raise EnvelopeItemTooLarge(f"item {number} ({kind}): {len(payload)} bytes", envelope)
        item.json = _json_object(payload, "envelope_json", f"item {number} ({kind}) payload", envelope)
    return item, pos
