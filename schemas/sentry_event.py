"""Reading a Sentry event (the JSON of an envelope's ``event`` item, a ``/store/`` body or
sentry-native's ``__sentry-event``): its message, the exception that ended the program and
its stack trace. Pure functions on the event dict; odd shapes give None or [], never raise.

Used by server/ingest/sentry_event.py (the event as annotations) and workers/event_stack.py (the
event as a processed report).
"""

from __future__ import annotations

from typing import Any


def event_message(event: dict[str, Any]) -> str | None:
    """The event's message: ``logentry``/``message`` (a string or ``{"formatted", "message"}``)."""
    for key in ("logentry", "message"):
        value = event.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict):
            for inner in ("formatted", "message"):
                if isinstance(value.get(inner), str) and value[inner].strip():
                    return value[inner].strip()
    return None


def primary_exception(event: dict[str, Any]) -> dict[str, Any] | None:
    """The exception that ended the program: the last of ``exception.values`` (Sentry lists a
    chain oldest cause first), or None."""
    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else exception
    if isinstance(values, list):
        found = [v for v in values if isinstance(v, dict)]
        return found[-1] if found else None
    return None


def event_frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The stack trace of the event, crashing frame first: the primary exception's, else the
    crashing thread's (``threads.values[].crashed``), else the event's own ``stacktrace``.
    Sentry frames are oldest call first, so the list is reversed."""
    candidates: list[Any] = []
    exception = primary_exception(event)
    if exception:
        candidates.append(exception.get("stacktrace"))
    threads = event.get("threads")
    values = threads.get("values") if isinstance(threads, dict) else threads
    if isinstance(values, list):
        candidates += [t.get("stacktrace") for t in values if isinstance(t, dict) and t.get("crashed")]
    candidates.append(event.get("stacktrace"))
    for stacktrace in candidates:
        frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
        if isinstance(frames, list) and any(isinstance(f, dict) for f in frames):
            return [f for f in reversed(frames) if isinstance(f, dict)]
    return []
