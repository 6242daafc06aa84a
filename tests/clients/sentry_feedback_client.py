"""Send tester feedback to crashd with the real sentry-sdk: what docs/feedback.md shows a studio.

Usage: python sentry_feedback_client.py DSN

sentry-sdk 2.x for Python has no capture_feedback(), so the feedback event (Sentry's
``feedback`` envelope item: an event with ``contexts.feedback``) and its screenshot go into one
Envelope sent through the client's own transport (its DSN, auth header and retries).
Run as a subprocess by tests/test_feedback.py: sentry_sdk.init() is process-global.
"""

from __future__ import annotations

import sys
import uuid

import sentry_sdk
from sentry_sdk.envelope import Envelope, Item, PayloadRef

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32


def send_feedback(message: str, category: str, screenshot: bytes | None = None) -> None:
    """One feedback item (and a screenshot) through the SDK's transport."""
    client = sentry_sdk.get_client()
    assert client.transport is not None
    event_id = uuid.uuid4().hex
    event = {"event_id": event_id, "type": "feedback", "level": "info", "platform": "python",
             "release": client.options["release"], "user": {"id": "tester-sdk"}, "tags": {"category": category},
             "contexts": {"feedback": {"message": message, "source": "report-dialog"}, "os": {"name": "Linux"}}}
    envelope = Envelope(headers={"event_id": event_id})
    envelope.add_item(Item(payload=PayloadRef(json=event), type="feedback"))
    if screenshot is not None:
        envelope.add_item(Item(payload=PayloadRef(bytes=screenshot), type="attachment", filename="screenshot.png",
                               content_type="image/png"))
    client.transport.capture_envelope(envelope)


def main(dsn: str) -> None:
    sentry_sdk.init(dsn=dsn, release="game@4.2", default_integrations=False)
    send_feedback("The blacksmith repeats the same line forever", "nar_output", PNG)
    sentry_sdk.flush(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1])
