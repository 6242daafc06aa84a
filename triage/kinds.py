"""Kinds of events: what a stored event is (a crash, a hang, a handled error or a log message)
and its Sentry level. Pure functions on the event dict; odd shapes never raise.

Decided once, at ingest (server/ingest/crashmover.py), for every upload path:

- a minidump (Breakpad, Crashpad, sentry-native, an envelope's ``event.minidump``) is a
  ``crash`` at level ``fatal``, or a ``hang`` when a watchdog wrote it: the annotations the
  signature's hang form reads (``hang=1``, ``hang_reason=...``; triage/signature/special.py)
  or a Sentry event that is a hang;
- a Sentry event without a minidump: ``hang`` (an app hang, ANR or watchdog termination),
  else ``crash`` (level ``fatal``, or an exception the program did not handle:
  ``exception.values[].mechanism.handled == false``), else ``error`` (a handled exception),
  else ``message`` (``capture_message``: no exception).

A group's kind is the most severe kind of its events (KINDS order). Threshold rules look at
groups of some kinds only (triage/thresholds.py), and crash rates count crashes only.
"""

from __future__ import annotations

from typing import Any, Mapping

from triage.signature.special import hang_reason

CRASH, HANG, ERROR, MESSAGE = "crash", "hang", "error", "message"
FEEDBACK = "feedback"  # a tester's report in words (docs/feedback.md): only feedback groups have it
KINDS = (CRASH, HANG, ERROR, MESSAGE, FEEDBACK)  # most severe first
RULE_KINDS = (CRASH, HANG)  # what a threshold rule looks at unless it says otherwise
# What a tester's feedback is about (docs/feedback.md); a feedback group's component is one.
FEEDBACK_CATEGORIES = ("bug", "nar_output", "performance", "ui", "install", "login", "economy", "other")
RATE_KINDS = (CRASH,)  # what crash rates count
LEVELS = ("fatal", "error", "warning", "info", "debug")  # Sentry's, most severe first
MINIDUMP_LEVEL = "fatal"
DEFAULT_LEVEL = "error"  # Sentry's level of an event that names none
# Other spellings SDKs send: Python's logging names, sentry-native's enum (SENTRY_LEVEL_DEBUG = -1
# ... SENTRY_LEVEL_FATAL = 3) as msgpack integers from older versions.
LEVEL_ALIASES: dict[Any, str] = {"warn": "warning", "critical": "fatal", "log": "info", "trace": "debug",
                                 -1: "debug", 0: "info", 1: "warning", 2: "error", 3: "fatal"}
# Mechanism and exception types of hangs, lower-cased: sentry-cocoa's app hangs (mechanism
# "AppHang", exception "App Hanging") and watchdog terminations ("watchdog_termination",
# "WatchdogTermination"), sentry-android's ANRs (mechanism "ANR", exception
# "ApplicationNotResponding"), and a game's own watchdog ("watchdog").
HANG_TYPES = frozenset({"apphang", "app hanging", "anr", "applicationnotresponding", "watchdog",
                        "watchdog_termination", "watchdogtermination"})


def level_of(event: Mapping[str, Any]) -> str:
    """The event's level as one of LEVELS; DEFAULT_LEVEL when it names none we know."""
    raw = event.get("level")
    if isinstance(raw, str):
        raw = raw.strip().lower()
    if isinstance(raw, bool):
        return DEFAULT_LEVEL
    if raw in LEVELS:
        return str(raw)
    return LEVEL_ALIASES.get(raw, DEFAULT_LEVEL) if isinstance(raw, (str, int)) else DEFAULT_LEVEL


def _exceptions(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every exception of the event (``exception.values`` or a bare list), dicts only."""
    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else exception
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _mechanism(exception: Mapping[str, Any]) -> dict[str, Any]:
    mechanism = exception.get("mechanism")
    return mechanism if isinstance(mechanism, dict) else {}


def _is_hang(event: Mapping[str, Any], exceptions: list[dict[str, Any]]) -> bool:
    """A hang: an exception or mechanism of a HANG_TYPES type, or the hang tags/extras."""
    for exception in exceptions:
        for value in (exception.get("type"), _mechanism(exception).get("type")):
            if isinstance(value, str) and value.strip().lower() in HANG_TYPES:
                return True
    flags: dict[str, str] = {}
    for key in ("tags", "extra"):
        if isinstance(event.get(key), dict):
            flags.update({str(k): str(v) for k, v in event[key].items() if isinstance(v, (str, int, float))})
    return hang_reason(flags) is not None


def kind_of_event(event: Mapping[str, Any]) -> str:
    """The kind of a Sentry event without a minidump: HANG, CRASH, ERROR or MESSAGE (see the
    module docstring)."""
    exceptions = _exceptions(event)
    if _is_hang(event, exceptions):
        return HANG
    if level_of(event) == "fatal" or any(_mechanism(e).get("handled") is False for e in exceptions):
        return CRASH
    return ERROR if exceptions else MESSAGE


def kind_of_minidump(annotations: Mapping[str, str], event: Mapping[str, Any] | None = None) -> str:
    """The kind of a minidump upload: HANG when its annotations carry a hang flag or reason
    (triage/signature/special.hang_reason) or its Sentry event (envelopes) is a hang, else
    CRASH."""
    if hang_reason(dict(annotations)) is not None:
        return HANG
    return HANG if event is not None and _is_hang(event, _exceptions(event)) else CRASH


def severity(kind: str) -> int:
    """The rank of a kind: 0 for the most severe (crash); an unknown kind ranks last."""
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def most_severe(a: str, b: str) -> str:
    """The more severe of two kinds (crash > hang > error > message)."""
    return a if severity(a) <= severity(b) else b
