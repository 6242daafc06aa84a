"""Verification by numbers: does a group crash less per session from its fix build on?

Pure: per-build counts in, a ``Verification`` out. The builds are split at ``fixed_in`` in
build order (triage/rates.py: versions by version, other builds by first seen): the target
is fixed_in and every later build, the base every earlier build. Only builds with sessions
take part: a build's rate without sessions is unknown, and counting its crashes without its
sessions would make the base look worse than it was. Crashes without a build (``""``) have
no place in the order and are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Mapping

from triage.rates import RateTest, build_sort_key, compare_rates
from triage.wording import plural


@dataclass(frozen=True)
class Verification:
    """The rate test of a fix and the builds on each side of it."""

    fixed_in: str
    base_builds: tuple[str, ...]
    target_builds: tuple[str, ...]
    test: RateTest

    def details(self) -> dict[str, Any]:
        """What the ticket's ``verified`` event keeps (JSON-ready)."""
        return {"method": "rates", "fixed_in": self.fixed_in, "base_builds": list(self.base_builds),
                "target_builds": list(self.target_builds), **asdict(self.test)}

    def summary(self) -> str:
        """One line for people: "2/1500 -> 0/400 sessions (p=0.004)"."""
        t = self.test
        p = "p unknown" if t.p_value is None else f"p={t.p_value:.3g}"
        return (f"{plural(t.base_crashes, 'crash')} in {plural(t.base_sessions, 'session')} before {self.fixed_in} -> "
                f"{t.target_crashes} in {t.target_sessions} from it on ({p}, {t.reason})")


def at_or_after(build: str, fixed_in: str, first_seen: Mapping[str, datetime] | None = None) -> bool:
    """Whether build comes at or after fixed_in in build order (a crash there is a regression)."""
    if build == fixed_in:
        return True
    seen = first_seen or {}
    return build_sort_key(build, seen.get(build)) >= build_sort_key(fixed_in, seen.get(fixed_in))


def verify_fix(crashes: Mapping[str, int], sessions: Mapping[str, int], fixed_in: str, *,
               first_seen: Mapping[str, datetime] | None = None, min_sessions: int = 200,
               alpha: float = 0.05) -> Verification:
    """Compare the group's crashes per session in builds before fixed_in with fixed_in and
    later (crashes: the group's per build; sessions: the project's per build)."""
    base: list[str] = []
    target: list[str] = []
    for build in sorted(b for b, n in sessions.items() if n > 0 and b):
        (target if at_or_after(build, fixed_in, first_seen) else base).append(build)
    test = compare_rates(
        sum(crashes.get(b, 0) for b in base), sum(sessions[b] for b in base),
        sum(crashes.get(b, 0) for b in target), sum(sessions[b] for b in target),
        min_sessions=min_sessions, alpha=alpha,
    )
    seen = first_seen or {}
    order = lambda b: build_sort_key(b, seen.get(b))  # noqa: E731
    return Verification(fixed_in, tuple(sorted(base, key=order)), tuple(sorted(target, key=order)), test)
