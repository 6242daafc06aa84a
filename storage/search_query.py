"""The crash search's query language (docs/search.md), parsed from query parameters into
conditions: no database here. A leaf of storage: storage/search.py turns conditions into SQL,
server/api/search.py and the dashboard's search page read parameters with ``parse``.

A parameter is a field, its value an optional operator and a value (Socorro's Super Search
operators)::

    build=1.4.2              equals (the default; signature: contains)
    build==^odd              equals, the rest taken literally (here "^odd")
    annotations.gpu=^RTX     starts with (case-sensitive)
    signature=~nar_ffi       contains (case-insensitive)
    annotations.gpu=!RTX 3060   not (also !^, !~); a crash without the field is "not" too
    received=>=2026-12-01    ranges: > >= < <= on received (ISO time or 24h/7d/2w ago) and
    hang_seconds=>30         hang_seconds (a number)

The same field twice is OR (``build=1.4&build=1.5``), except negations, which all hold;
different fields are AND.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping

from schemas.tables import CrashStatus
from triage.kinds import KINDS

ANNOTATION_PREFIX = "annotations."
ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9_.\-:]{1,87}$")
# Fields searched as columns (storage/search.py): ``crashes``' status and hang_seconds, and
# received and group, which crash_fields rows carry too; their kind of value.
COLUMN_FIELDS = {"status": "text", "received": "time", "hang_seconds": "number", "group": "id"}
# Fields written to crash_fields with the processing result (storage/search_index.py).
INDEXED_FIELDS = ("build", "tester_id", "kind", "signature", "platform", "component", "os_version", "cpu",
                  "cpu_info", "module")
RANGE_KINDS = ("time", "number")
OPERATORS = ("eq", "prefix", "contains", "gt", "ge", "lt", "le")
RANGES = {">=": "ge", "<=": "le", ">": "gt", "<": "lt"}
MAX_VALUE = 300
MAX_CONDITIONS = 20  # per query: each is a subquery
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CHOICES = {"kind": KINDS, "status": tuple(s.value for s in CrashStatus)}
RELATIVE = re.compile(r"^(\d+)([hdw])$")
UNITS = {"h": "hours", "d": "days", "w": "weeks"}


class SearchError(ValueError):
    """A parameter the search cannot take; the message names it."""


@dataclass(frozen=True)
class Condition:
    """One ``field=value``: op is one of OPERATORS; value a str, an aware datetime (received)
    or a number (hang_seconds, group); negate for ``!``."""

    field: str
    op: str
    value: str | float | int | datetime
    negate: bool = False


def is_field(name: str) -> bool:
    """Whether name is a search field: a built-in or ``annotations.<key>``."""
    if name.startswith(ANNOTATION_PREFIX):
        return bool(ANNOTATION_KEY.match(name[len(ANNOTATION_PREFIX):]))
    return name in COLUMN_FIELDS or name in INDEXED_FIELDS


def field_names() -> list[str]:
    """The built-in fields, for documentation and the search page's field list."""
    return sorted([*COLUMN_FIELDS, *INDEXED_FIELDS])


def configured_facets(configured: str) -> list[str]:
    """CRASHD_FACET_FIELDS (a comma list) as fields, each once, without those a facet cannot
    count (unknown names, ranges): the pages show what they can rather than fail."""
    return list(dict.fromkeys(f for f in (f.strip() for f in configured.split(",")) if facetable(f)))


def is_indexed(field: str) -> bool:
    """Whether the field's values are rows of crash_fields (else a column of crashes)."""
    return field not in COLUMN_FIELDS


def facetable(field: str) -> bool:
    """Whether a facet can count the field's values: the indexed fields."""
    return is_field(field) and is_indexed(field)


def parse_condition(field: str, raw: str, now: datetime | None = None) -> Condition:
    """One parameter as a Condition. Raises SearchError naming the field."""
    if not is_field(field):
        raise SearchError(f"unknown search field {field!r} (an annotation is annotations.<key>; docs/search.md)")
    text, negate = raw, False
    if text.startswith("!"):
        text, negate = text[1:], True
    kind = COLUMN_FIELDS.get(field, "text")
    op, text = _operator(field, text)
    if not text:
        raise SearchError(f"{field}: empty value")
    if len(text) > MAX_VALUE:
        raise SearchError(f"{field}: value longer than {MAX_VALUE} characters")
    if op in ("gt", "ge", "lt", "le") and kind not in RANGE_KINDS:
        raise SearchError(f"{field}: ranges (> >= < <=) apply to received and hang_seconds only")
    if kind != "text" and op in ("prefix", "contains"):
        raise SearchError(f"{field}: ^ and ~ apply to text fields only")
    if kind == "time" and op == "eq" and not DATE.match(text):
        raise SearchError(f"{field}: = takes a date (2026-12-01: that UTC day); use > >= < <= for times")
    if field in CHOICES and op == "eq" and text not in CHOICES[field]:
        raise SearchError(f"{field} must be one of {', '.join(CHOICES[field])}")
    return Condition(field, op, _value(field, kind, text, now), negate)


def _operator(field: str, text: str) -> tuple[str, str]:
    for sign, op in RANGES.items():
        if text.startswith(sign):
            return op, text[len(sign):]
    if text.startswith("="):
        return "eq", text[1:]
    if text.startswith("^"):
        return "prefix", text[1:]
    if text.startswith("~"):
        return "contains", text[1:]
    return ("contains" if field == "signature" else "eq"), text


def _value(field: str, kind: str, text: str, now: datetime | None) -> str | float | int | datetime:
    if kind == "time":
        return parse_time(field, text, now)
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise SearchError(f"{field} must be a number, not {text!r}") from None
        if not math.isfinite(number):
            raise SearchError(f"{field} must be a finite number")
        return number
    if kind == "id":
        if not text.isdigit() or int(text) >= 2**63:
            raise SearchError(f"{field} must be a group id, not {text!r}")
        return int(text)
    return text


def parse_time(field: str, text: str, now: datetime | None = None) -> datetime:
    """An ISO date/time (UTC without a zone) or ``24h``/``7d``/``2w`` ago, aware UTC. Raises
    SearchError."""
    match = RELATIVE.match(text.strip())
    try:
        if match:
            return (now or datetime.now(timezone.utc)) - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        parsed = datetime.fromisoformat(text.strip())
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (OverflowError, ValueError):
        raise SearchError(f"{field} must be an ISO date or time, or like 24h, 7d, 2w; not {text!r}") from None


def parse(params: Iterable[tuple[str, str]], *, reserved: Iterable[str] = (),
          now: datetime | None = None) -> list[Condition]:
    """The conditions of (name, value) query parameters, skipping the names in reserved (paging,
    sort, project: the endpoint's own). Raises SearchError for an unknown parameter, a malformed
    value, or more than MAX_CONDITIONS conditions."""
    skip = set(reserved)
    conditions = [parse_condition(name, value, now) for name, value in params if name not in skip]
    if len(conditions) > MAX_CONDITIONS:
        raise SearchError(f"at most {MAX_CONDITIONS} search conditions")
    return conditions


def by_field(conditions: Iterable[Condition]) -> Mapping[str, list[Condition]]:
    """Conditions grouped by field, in first-seen order."""
    grouped: dict[str, list[Condition]] = {}
    for condition in conditions:
        grouped.setdefault(condition.field, []).append(condition)
    return grouped
