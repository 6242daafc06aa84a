"""A program that reports to crashd with the real sentry-sdk, one scenario per run.

Usage: python sentry_sdk_client.py SCENARIO DSN [ARG]
  exception   capture_exception() of a ZeroDivisionError raised in nested functions
  burst       three capture_exception() calls, each flushed (rate limits)
  message     capture_message()
  minidump    an Envelope (sentry-sdk's own Envelope/Item/PayloadRef) holding an event and an
              attachment with attachment_type event.minidump (the dump read from ARG), sent
              through the client's transport: add_attachment() takes no attachment type
  sessions    a session in application mode around some work, then three requests through
              SentryWsgiMiddleware (request mode: aggregated sessions)
  record      capture_exception() through a transport that writes the envelope the SDK
              serialized to ARG instead of sending it (tests/clients/*.envelope fixtures)

Run as a subprocess by tests/test_sentry_client.py: sentry_sdk.init() is process-global.
Every scenario sets release game@4.2, user tester-sdk and a tag, and flushes before exiting.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sentry_sdk
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.transport import Transport

RELEASE = "game@4.2"


def load_level(name: str) -> float:
    return len(name) / 0  # ZeroDivisionError: the crash every scenario reports


def start_game() -> float:
    return load_level("dust")


def init(dsn: str, **options: object) -> None:
    sentry_sdk.init(dsn=dsn, release=RELEASE, environment="qa", default_integrations=False, **options)
    sentry_sdk.set_user({"id": "tester-sdk"})
    sentry_sdk.set_tag("map", "dust")


def exception(dsn: str) -> None:
    init(dsn)
    try:
        start_game()
    except ZeroDivisionError:
        sentry_sdk.capture_exception()


def burst(dsn: str) -> None:
    """Three exceptions, each flushed before the next: after a 429 the SDK stops sending."""
    init(dsn)
    for _ in range(3):
        try:
            start_game()
        except ZeroDivisionError:
            sentry_sdk.capture_exception()
        sentry_sdk.flush(timeout=10)


def message(dsn: str) -> None:
    init(dsn)
    sentry_sdk.capture_message("the level took more than 30 s to load", level="warning")


def minidump(dsn: str, dump_path: str) -> None:
    init(dsn)
    event = {"event_id": "0123456789abcdef0123456789abcdef", "level": "fatal", "platform": "native",
             "release": RELEASE, "user": {"id": "tester-sdk"}, "tags": {"map": "dust"},
             "contexts": {"os": {"name": "Linux"}}}
    envelope = Envelope(headers={"event_id": event["event_id"]})
    envelope.add_event(event)
    envelope.add_item(Item(payload=PayloadRef(bytes=Path(dump_path).read_bytes()), type="attachment",
                           filename="crash.dmp", headers={"attachment_type": "event.minidump"}))
    envelope.add_item(Item(payload=PayloadRef(bytes=b"[info] loading dust\n"), type="attachment",
                           filename="game.log", content_type="text/plain"))
    client = sentry_sdk.get_client()
    assert client.transport is not None
    client.transport.capture_envelope(envelope)


def sessions(dsn: str) -> None:
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware
    from sentry_sdk.sessions import track_session

    init(dsn, auto_session_tracking=True)
    with track_session(sentry_sdk.get_isolation_scope(), session_mode="application"):
        sum(range(1000))  # a played level

    def app(environ: dict, start_response) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = SentryWsgiMiddleware(app)
    for _ in range(3):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "game", "SERVER_PORT": "80",
                   "wsgi.url_scheme": "http", "wsgi.input": None}
        list(wrapped(environ, lambda status, headers, exc_info=None: None))


class RecordingTransport(Transport):
    """Writes each envelope, as the SDK serializes it, to a file instead of sending it."""

    path = ""

    def capture_envelope(self, envelope: Envelope) -> None:
        if envelope.get_event() is not None:
            Path(self.path).write_bytes(envelope.serialize())


def record(dsn: str, out_path: str) -> None:
    RecordingTransport.path = out_path
    init(dsn, transport=RecordingTransport)
    try:
        start_game()
    except ZeroDivisionError:
        sentry_sdk.capture_exception()


def main() -> None:
    scenario, dsn, *rest = sys.argv[1:]
    {"exception": exception, "burst": burst, "message": message, "minidump": minidump, "sessions": sessions,
     "record": record}[scenario](dsn, *rest)
    sentry_sdk.flush(timeout=10)


if __name__ == "__main__":
    main()
