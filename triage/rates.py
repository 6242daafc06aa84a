"""Crash rates per build: build ordering and "did the fix build crash less?". Pure logic, no I/O.

Build order (``build_sort_key``, ``sort_builds``)
    A build *parses as a version* when it is ``[v]N(.N)*`` optionally followed by
    ``-<pre-release>`` and/or ``+<metadata>`` (``1.0``, ``v2.3.4``, ``0.9.9-staging-beta2``,
    ``1.2.0-rc.1+g1a2b3c``). Versions come first, ordered by:

    1. the release numbers, compared as numbers, trailing zeros ignored
       (``0.9.9 < 0.9.10 < 1.0``, and ``1.0`` ties with ``1.0.0``);
    2. a pre-release before its release (``0.9.9-staging-beta10 < 0.9.9``);
    3. pre-releases compared naturally: split into runs of digits and runs of letters
       (separators ``.-_`` only split), numbers as numbers, text as text ignoring case,
       a number before text at the same place (SemVer's rule), a prefix before what
       continues it (``0.9.9-staging-beta2 < 0.9.9-staging-beta10``, ``rc < rc.1``);
    4. the exact string, so that the order is total (``1.0 < 1.0.0``); ``+metadata`` only
       plays a part here.

    Builds that do not parse (``""``, ``nightly``, ``2024-11-25 abc``) come after every
    version, in first-seen order when a time is known for them, else in the order given.

The rate test (``compare_rates``)
    Crashes of a build are counted as a Poisson process over its sessions. Whether the
    target (fixed) build's rate is lower than the base's is the conditional exact test for
    two Poisson rates (Przyborowski and Wilenski, 1940): given k = base + target crashes, the
    target's share is Binomial(k, p0) under H0 (equal rates), with
    p0 = target_sessions / (base_sessions + target_sessions), and the one-sided p-value is
    P(X <= target_crashes). It is exact (no normal approximation), so it holds for the few
    crashes a play test produces, including zero crashes in the target build.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

VERSION = re.compile(r"^[vV]?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.\-_]+))?(?:\+([0-9A-Za-z.\-_]+))?$")
TOKENS = re.compile(r"\d+|[^\W\d_]+")

# Reason codes of RateTest.reason, most decisive first.
NO_BASE_SESSIONS = "no_base_sessions"  # the base build's rate is unknown: nothing to compare
NO_TARGET_SESSIONS = "no_target_sessions"  # the target build's rate is unknown
TOO_FEW_SESSIONS = "too_few_sessions"  # target_sessions < min_sessions: p-value shown, never significant
NO_CRASHES = "no_crashes"  # neither build crashed: nothing to compare (p = 1)
LOWER = "lower"  # significant: the target crashes less
NOT_LOWER = "not_lower"  # the target's rate is equal or higher
NOT_SIGNIFICANT = "not_significant"  # lower, but it could be chance (p >= alpha)


# -- build order ----------------------------------------------------------------------------


def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    """``staging-beta10`` -> ((1, 0, 'staging'), (1, 0, 'beta'), (0, 10, ''))."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in TOKENS.findall(text))


def _timestamp(value: datetime) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC (SQLite hands those back)."""
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def build_sort_key(build: str, first_seen: datetime | None = None) -> tuple:
    """The key that sorts builds in version order (the module docstring has the rule).

    Versions: ``(0, release, is_release, pre_release, build)``. Other builds:
    ``(1, 0, first_seen)`` when first_seen is given, else ``(1, 1, 0.0)``: they tie with one
    another, so a stable sort keeps them in the order given.
    """
    match = VERSION.match(build.strip())
    if match is None:
        return (1, 0, _timestamp(first_seen)) if first_seen is not None else (1, 1, 0.0)
    release = [int(part) for part in match.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre = match.group(2)
    return (0, tuple(release), 0 if pre else 1, _natural(pre) if pre else (), build)


def sort_builds(builds: Iterable[str], first_seen: dict[str, datetime] | None = None) -> list[str]:
    """Builds in version order; those that are not versions last, by first_seen (a build's
    first crash or session) and then in the order given. Duplicates are kept."""
    seen = first_seen or {}
    return sorted(builds, key=lambda build: build_sort_key(build, seen.get(build)))


# -- the rate test --------------------------------------------------------------------------


@dataclass(frozen=True)
class RateTest:
    """Crash rates of a base and a target build and whether the target's is lower.

    Rates are crashes per session, None when the build has no sessions (unknown, not 0).
    change is the relative change of the rate (target / base - 1: -0.75 is 75 % fewer
    crashes per session), 0.0 when both rates are 0, None when either rate is unknown or only
    the base's is 0. p_value is the one-sided exact test's (None when a rate is unknown);
    significant needs enough_sessions (target_sessions >= min_sessions) and p < alpha.
    reason is one of the codes NO_BASE_SESSIONS ... NOT_SIGNIFICANT above.
    """

    base_crashes: int
    base_sessions: int
    target_crashes: int
    target_sessions: int
    base_rate: float | None
    target_rate: float | None
    change: float | None
    p_value: float | None
    significant: bool
    enough_sessions: bool
    reason: str


def compare_rates(base_crashes: int, base_sessions: int, target_crashes: int, target_sessions: int, *,
                  min_sessions: int = 200, alpha: float = 0.05) -> RateTest:
    """Test whether the target build crashes less per session than the base build.

    Crash counts may exceed session counts (a session can crash in several groups, and
    rates are Poisson rates, not proportions). Raises ValueError on negative counts or an
    alpha outside (0, 1).
    """
    if min(base_crashes, base_sessions, target_crashes, target_sessions) < 0:
        raise ValueError("crash and session counts must not be negative")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    base_rate = base_crashes / base_sessions if base_sessions else None
    target_rate = target_crashes / target_sessions if target_sessions else None
    enough = target_sessions >= min_sessions
    p_value = None
    if base_sessions and target_sessions:
        share = target_sessions / (base_sessions + target_sessions)
        p_value = binomial_cdf(target_crashes, base_crashes + target_crashes, share)
    significant = enough and p_value is not None and p_value < alpha
    return RateTest(
        base_crashes, base_sessions, target_crashes, target_sessions, base_rate, target_rate,
        _change(base_rate, target_rate), p_value, significant, enough,
        _reason(base_rate, target_rate, enough, significant),
    )


def _change(base_rate: float | None, target_rate: float | None) -> float | None:
    if base_rate is None or target_rate is None:
        return None
    if base_rate == 0:
        return 0.0 if target_rate == 0 else None  # from 0 any crash is an infinite increase
    return target_rate / base_rate - 1


def _reason(base_rate: float | None, target_rate: float | None, enough: bool, significant: bool) -> str:
    if base_rate is None:
        return NO_BASE_SESSIONS
    if target_rate is None:
        return NO_TARGET_SESSIONS
    if not enough:
        return TOO_FEW_SESSIONS
    if base_rate == 0 and target_rate == 0:
        return NO_CRASHES
    if significant:
        return LOWER
    return NOT_LOWER if target_rate >= base_rate else NOT_SIGNIFICANT


# -- the binomial distribution, in log space ------------------------------------------------


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow or underflow."""
    if a == -math.inf:
        return b
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def binomial_log_pmf(x: int, n: int, p: float) -> float:
    """log P(X = x) for X ~ Binomial(n, p), 0 <= x <= n (``-inf`` where it is 0)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0 if x == (0 if p <= 0.0 else n) else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1)
            + x * math.log(p) + (n - x) * math.log1p(-p))


def binomial_cdf(x: int, n: int, p: float) -> float:
    """P(X <= x) for X ~ Binomial(n, p), summed in log space from x downwards.

    Terms below the mode shrink geometrically, so the sum stops once they are below 1e-17
    of the total: an exact-enough tail in O(x - mode + sqrt(n)) terms even for millions of
    crashes, and precise for tiny p-values (no ``1 - upper tail`` cancellation).
    """
    if x < 0:
        return 0.0
    if x >= n:
        return 1.0
    mode = math.floor((n + 1) * p)
    total = -math.inf
    for i in range(x, -1, -1):
        term = binomial_log_pmf(i, n, p)
        total = _log_add(total, term)
        if i < mode and term < total - 40.0:  # e**-40 ~ 4e-18
            break
    return min(1.0, math.exp(total))
