"""Threshold rules: when a crash group is bad enough to open (or escalate) a triage ticket.

Pure: the rules file's text in, ``Threshold`` rules out (``parse_rules``); a group's numbers
per window in, ``Firing`` out (``evaluate``). No database: workers/triage_jobs.py gathers
the numbers (storage/triage_stats.py) and storage/tickets.py changes the ticket.

The file format is documented in the header of ``triage/rules.toml`` and in docs/triage.md.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

from triage.kinds import CRASH, FEEDBACK, FEEDBACK_CATEGORIES, HANG, KINDS, RULE_KINDS

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.toml")
PRIORITIES = ("P0", "P1")  # most urgent first
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_WINDOW = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_REQUIRED = ("name", "window", "min_testers", "priority")
_KEYS = {*_REQUIRED, "min_share", "components", "kinds", "categories", "min_hang_seconds"}


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the message names the file, rule and field."""


@dataclass(frozen=True)
class Threshold:
    """One ``[[rule]]`` of the rules file."""

    name: str
    window: timedelta
    window_text: str  # as written: "24h"
    min_testers: int
    priority: str  # P0 | P1
    min_share: float | None = None
    components: tuple[str, ...] | None = None
    kinds: tuple[str, ...] = RULE_KINDS  # only groups of these kinds (triage/kinds.py)
    categories: tuple[str, ...] | None = None  # feedback groups of these categories only
    min_hang_seconds: float | None = None  # count only hangs at least this long


@dataclass(frozen=True)
class WindowStats:
    """A group's numbers over one window (crashes received since now - window).

    share is the highest, over the builds the group crashed in, of (testers of the group on
    the build / testers active on the build); None when no such build had sessions.
    """

    testers: int
    crashes: int
    builds: tuple[str, ...]
    share: float | None = None
    share_build: str | None = None


@dataclass(frozen=True)
class GroupStats:
    """What the rules look at: the group's component, its numbers per window and its kind
    (the most severe kind of its crashes: triage/kinds.py)."""

    component: str | None
    windows: Mapping[timedelta, WindowStats]
    kind: str = CRASH
    # (window, min_hang_seconds) -> the numbers of the group's hangs that long (rules with
    # min_hang_seconds; hang_windows says which are needed)
    long_hangs: Mapping[tuple[timedelta, float], WindowStats] = field(default_factory=dict)


@dataclass(frozen=True)
class Firing:
    """A rule that fired on a group, with the numbers that made it fire."""

    rule: Threshold
    stats: WindowStats
    reason: str


def parse_window(text: str) -> timedelta:
    """``30m``, ``1h``, ``24h``, ``7d``, ``2w`` -> timedelta. Raises ValueError."""
    match = _WINDOW.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"expected a duration like 1h, 24h or 7d, not {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def load_rules(path: Path) -> list[Threshold]:
    """Read and check the rules file. Raises RulesError (missing, not TOML, invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"rules file {path}: cannot be read: {exc}") from exc
    return parse_rules(text, source=str(path))


@functools.lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int, size: int) -> tuple[Threshold, ...]:
    return tuple(load_rules(Path(path)))


def current_rules(path: Path) -> tuple[Threshold, ...]:
    """The rules of path, read again only when the file changes (workers call this per crash)."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise RulesError(f"rules file {path}: cannot be read: {exc}") from exc
    return _cached(str(path), stat.st_mtime_ns, stat.st_size)


def parse_rules(text: str, source: str = "<rules>") -> list[Threshold]:
    """The rules of a TOML document, in file order. Raises RulesError."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules file {source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - {"rule"})
    if unknown:
        raise RulesError(f"rules file {source}: unknown table or key {unknown[0]!r} (rules are [[rule]] tables)")
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise RulesError(f"rules file {source}: 'rule' must be [[rule]] tables")
    rules: list[Threshold] = []
    for index, table in enumerate(tables, 1):
        rule = _parse_rule(table, f"rules file {source}: rule #{index}")
        if any(r.name == rule.name for r in rules):
            raise RulesError(f"rules file {source}: rule #{index} ({rule.name!r}): field 'name': used twice")
        rules.append(rule)
    return rules


def _parse_rule(table: Any, where: str) -> Threshold:
    if not isinstance(table, dict):
        raise RulesError(f"{where}: must be a table")
    name = table.get("name")
    if isinstance(name, str):
        where = f"{where} ({name!r})"

    def bad(field: str, why: str) -> RulesError:
        return RulesError(f"{where}: field {field!r}: {why}")

    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise bad(unknown[0], f"unknown field (known: {', '.join(sorted(_KEYS))})")
    for key in _REQUIRED:
        if key not in table:
            raise bad(key, "required")
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad("name", "must be lower-case letters, digits, '-' or '_', starting with a letter")
    try:
        window = parse_window(table["window"])
    except ValueError as exc:
        raise bad("window", str(exc)) from None
    min_testers = table["min_testers"]
    if isinstance(min_testers, bool) or not isinstance(min_testers, int) or min_testers < 1:
        raise bad("min_testers", f"must be a whole number >= 1, not {min_testers!r}")
    priority = table["priority"]
    if priority not in PRIORITIES:
        raise bad("priority", f"must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    min_share = table.get("min_share")
    if min_share is not None:
        if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 <= min_share <= 1:
            raise bad("min_share", f"must be a number from 0 to 1, not {min_share!r}")
        min_share = float(min_share)
    components = table.get("components")
    if components is not None:
        if not isinstance(components, list) or not components or not all(isinstance(c, str) and c for c in components):
            raise bad("components", "must be a non-empty list of component names")
        components = tuple(components)
    categories = table.get("categories")
    if categories is not None and (not isinstance(categories, list) or not categories
                                   or not all(c in FEEDBACK_CATEGORIES for c in categories)):
        raise bad("categories", f"must be a non-empty list of {', '.join(FEEDBACK_CATEGORIES)}, not {categories!r}")
    min_hang = table.get("min_hang_seconds")
    if min_hang is not None and (isinstance(min_hang, bool) or not isinstance(min_hang, (int, float)) or min_hang < 0):
        raise bad("min_hang_seconds", f"must be a number of seconds >= 0, not {min_hang!r}")
    # categories are feedback's, min_hang_seconds is hangs': they set the default kinds
    default = [FEEDBACK] if categories is not None else [HANG] if min_hang is not None else list(RULE_KINDS)
    kinds = table.get("kinds", default)
    if not isinstance(kinds, list) or not kinds or not all(k in KINDS for k in kinds):
        raise bad("kinds", f"must be a non-empty list of {', '.join(KINDS)}, not {kinds!r}")
    if categories is not None and kinds != [FEEDBACK]:
        raise bad("categories", f'applies to feedback: kinds must be ["{FEEDBACK}"], not {kinds!r}')
    if min_hang is not None and kinds != [HANG]:
        raise bad("min_hang_seconds", f'applies to hangs: kinds must be ["{HANG}"], not {kinds!r}')
    return Threshold(name, window, table["window"].strip(), min_testers, priority, min_share, components,
                     tuple(dict.fromkeys(kinds)), tuple(dict.fromkeys(categories)) if categories else None,
                     None if min_hang is None else float(min_hang))


def windows(rules: Iterable[Threshold]) -> dict[timedelta, bool]:
    """Each window the rules use -> whether a rule on it needs the testers' share."""
    out: dict[timedelta, bool] = {}
    for rule in rules:
        out[rule.window] = out.get(rule.window, False) or rule.min_share is not None
    return out


def hang_windows(rules: Iterable[Threshold]) -> set[tuple[timedelta, float]]:
    """(window, min_hang_seconds) of each rule that counts only long hangs."""
    return {(rule.window, rule.min_hang_seconds) for rule in rules if rule.min_hang_seconds is not None}


def evaluate(rules: Iterable[Threshold], stats: GroupStats) -> list[Firing]:
    """The rules that fire on a group, in file order.

    A rule fires when the group's kind is one of its kinds (crash and hang unless it says
    otherwise), the group's component is one of its components (if it lists any), a
    feedback group's category is one of its categories (if it lists any), at
    least min_testers distinct testers hit the group in its window, and (if it has a
    min_share) their share of the build's active testers is known and at least min_share.
    A window missing from stats.windows counts as no crashes. A rule with min_hang_seconds
    counts only the hangs at least that long (stats.long_hangs).
    """
    firings = []
    for rule in rules:
        if stats.kind not in rule.kinds:
            continue
        if rule.components is not None and stats.component not in rule.components:
            continue
        if rule.categories is not None and stats.component not in rule.categories:  # a feedback group's category
            continue
        if rule.min_hang_seconds is not None:
            numbers = stats.long_hangs.get((rule.window, rule.min_hang_seconds), WindowStats(0, 0, ()))
        else:
            numbers = stats.windows.get(rule.window, WindowStats(0, 0, ()))
        if numbers.testers < rule.min_testers:
            continue
        if rule.min_share is not None and (numbers.share is None or numbers.share < rule.min_share):
            continue
        firings.append(Firing(rule, numbers, reason_text(rule, numbers)))
    return firings


def strongest(firings: Iterable[Firing]) -> Firing | None:
    """The firing that decides a ticket: the most urgent priority, then the first in file order."""
    ranked = sorted(enumerate(firings), key=lambda item: (PRIORITIES.index(item[1].rule.priority), item[0]))
    return ranked[0][1] if ranked else None


def reason_text(rule: Threshold, stats: WindowStats) -> str:
    """Why the rule fired, for people: "5 testers (>= 5) in 24h, 9 crashes, builds 1.0, 1.1"."""
    counted = ("reports" if rule.kinds == (FEEDBACK,) else
               f"hangs of {rule.min_hang_seconds:g} s or more" if rule.min_hang_seconds is not None else "crashes")
    parts = [f"{stats.testers} testers (>= {rule.min_testers}) in {rule.window_text}", f"{stats.crashes} {counted}"]
    if stats.builds:
        parts.append("builds " + ", ".join(stats.builds))
    if rule.min_share is not None and stats.share is not None:
        parts.append(f"{stats.share:.0%} of the testers active on {stats.share_build} (>= {rule.min_share:.0%})")
    if rule.components:
        parts.append("component " + ", ".join(rule.components))
    if rule.categories:
        parts.append("category " + ", ".join(rule.categories))
    if rule.kinds != RULE_KINDS:
        parts.append("kinds " + ", ".join(rule.kinds))
    return f"rule {rule.name} ({rule.priority}): " + ", ".join(parts)
