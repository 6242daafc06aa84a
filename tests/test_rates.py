"""triage/rates.py: build order, and the exact one-sided test for two Poisson rates.

Reference p-values were computed once with scipy 1.17 outside the repo:
``scipy.stats.binom.cdf(x, n, p)`` and ``scipy.stats.binomtest(target_crashes, k, share,
alternative="less").pvalue``; small cases are also checked against exact fractions here.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest

from triage.rates import (
    LOWER,
    NO_BASE_SESSIONS,
    NO_CRASHES,
    NO_TARGET_SESSIONS,
    NOT_LOWER,
    NOT_SIGNIFICANT,
    TOO_FEW_SESSIONS,
    binomial_cdf,
    build_sort_key,
    compare_rates,
    sort_builds,
)

# -- build order ----------------------------------------------------------------------------


def test_the_issue_example_is_in_version_order() -> None:
    ordered = ["0.9.9-staging-beta2", "0.9.9-staging-beta10", "0.9.9", "0.9.10", "1.0"]
    for seed in range(20):
        shuffled = ordered[:]
        random.Random(seed).shuffle(shuffled)
        assert sort_builds(shuffled) == ordered


@pytest.mark.parametrize("low, high", [
    ("0.9.9", "0.9.10"),  # numbers as numbers, not text
    ("0.9.10", "1.0"),
    ("1.0-rc1", "1.0"),  # a pre-release before its release
    ("1.0-alpha", "1.0-beta"),
    ("1.0-beta.2", "1.0-beta.11"),
    ("1.0-rc", "1.0-rc.1"),  # a prefix before what continues it
    ("1.0-1", "1.0-alpha"),  # a number before text at the same place (SemVer)
    ("1.0-staging-beta10", "1.0-staging-rc1"),
    ("1.0.0-rc.9", "1.0.1-alpha"),  # the release numbers decide first
    ("v1.2", "1.3"),  # a leading v is allowed
    ("2.0", "10.0"),
    ("1.0", "1.0.0"),  # equal versions: the exact string breaks the tie
    ("99.0", "nightly"),  # versions before builds that are not versions
    ("1.0", ""),
])
def test_pairs_in_order(low: str, high: str) -> None:
    assert build_sort_key(low) < build_sort_key(high)
    assert sort_builds([high, low]) == [low, high]


def test_trailing_zeros_and_metadata_only_break_ties() -> None:
    assert build_sort_key("1.0")[:4] == build_sort_key("1.0.0")[:4] == build_sort_key("1")[:4]
    assert build_sort_key("1.0+abc")[:4] == build_sort_key("1.0")[:4]
    assert sort_builds(["1.0.1", "1.0+g1a2b", "1.0-rc1"]) == ["1.0-rc1", "1.0+g1a2b", "1.0.1"]


def test_pre_release_text_ignores_case() -> None:
    assert build_sort_key("1.0-Beta2")[:4] == build_sort_key("1.0-beta2")[:4]
    assert sort_builds(["1.0-RC1", "1.0-beta3"]) == ["1.0-beta3", "1.0-RC1"]


def test_non_versions_last_in_first_seen_order() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    first_seen = {"zeta": t0, "alpha": t0 + timedelta(days=1), "": t0 + timedelta(hours=1), "2.0": t0 + timedelta(days=9)}
    builds = ["alpha", "2.0", "zeta", "1.0", "", "unknown-build"]
    # Not seen -> after the seen ones, in the order given.
    assert sort_builds(builds, first_seen) == ["1.0", "2.0", "zeta", "", "alpha", "unknown-build"]


def test_non_versions_without_times_keep_the_order_given() -> None:
    assert sort_builds(["b", "1.0", "a", "c"]) == ["1.0", "b", "a", "c"]
    assert sort_builds(["c", "a", "b"]) == ["c", "a", "b"]


def test_naive_first_seen_is_utc() -> None:
    """SQLite gives naive datetimes back: they must mix with aware ones."""
    aware = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    naive = datetime(2026, 1, 1, 11)
    assert sort_builds(["x", "y"], {"x": aware, "y": naive}) == ["y", "x"]


@pytest.mark.parametrize("build", ["", "nightly", "1.0 (1234)", "1..0", "1.0-", ".1", "1.0-beta 2", "release-1.0"])
def test_what_is_not_a_version(build: str) -> None:
    assert build_sort_key(build)[0] == 1


def test_sort_builds_keeps_duplicates_and_takes_any_iterable() -> None:
    assert sort_builds(iter(["1.1", "1.0", "1.1"])) == ["1.0", "1.1", "1.1"]
    assert sort_builds([]) == []


# -- the binomial CDF -----------------------------------------------------------------------


def exact_cdf(x: int, n: int, p: Fraction) -> Fraction:
    return sum((math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x + 1)), Fraction(0))


@pytest.mark.parametrize("x, n, p", [(0, 1, "1/2"), (3, 10, "1/2"), (5, 20, "3/10"), (0, 40, "1/2"), (7, 30, "2/7"),
                                     (29, 30, "9/10"), (12, 25, "1/100")])
def test_cdf_against_exact_fractions(x: int, n: int, p: str) -> None:
    assert binomial_cdf(x, n, float(Fraction(p))) == pytest.approx(float(exact_cdf(x, n, Fraction(p))), rel=1e-12)


@pytest.mark.parametrize("x, n, p, expected", [  # scipy.stats.binom.cdf
    (30, 1000, 0.5, 2.3396724879164918e-244),
    (400, 1000, 0.5, 1.3642320780329735e-10),
    (40, 5000, 0.01, 0.0849926578860029),
    (100, 1_000_000, 0.0001, 0.5265621985632194),
    (9000, 20000, 0.5, 9.770413852912744e-46),
    (10, 12, 0.99, 0.006174537772824754),
])
def test_cdf_against_scipy(x: int, n: int, p: float, expected: float) -> None:
    assert binomial_cdf(x, n, p) == pytest.approx(expected, rel=1e-8)


def test_cdf_bounds() -> None:
    assert binomial_cdf(-1, 10, 0.5) == 0.0
    assert binomial_cdf(10, 10, 0.5) == 1.0
    assert binomial_cdf(0, 0, 0.5) == 1.0
    assert binomial_cdf(900, 1000, 0.3) == pytest.approx(1.0)


# -- compare_rates --------------------------------------------------------------------------


@pytest.mark.parametrize("args, expected", [  # scipy.stats.binomtest(..., alternative="less")
    ((10, 1000, 0, 1000), 0.0009765625),
    ((30, 500, 5, 500), 1.1180760338902473e-05),
    ((20, 1000, 8, 800), 0.06485090901225338),
    ((5, 300, 0, 300), 0.03125),
    ((4, 300, 0, 300), 0.0625),
])
def test_p_values_against_scipy(args: tuple[int, int, int, int], expected: float) -> None:
    assert compare_rates(*args).p_value == pytest.approx(expected, rel=1e-10)


def test_a_clear_drop_is_significant() -> None:
    test = compare_rates(40, 1000, 5, 1000)
    assert test.significant and test.enough_sessions and test.reason == LOWER
    assert (test.base_rate, test.target_rate) == (0.04, 0.005)
    assert test.change == pytest.approx(-0.875)
    assert test.p_value < 1e-6


def test_zero_crashes_in_enough_sessions_counts() -> None:
    """No crash in the fix build: significant when the base had enough crashes (with equal
    sessions p = 0.5 ** base_crashes), never when it had too few to tell."""
    fixed = compare_rates(5, 300, 0, 300)
    assert fixed.significant and fixed.target_rate == 0.0 and fixed.change == -1.0
    assert fixed.p_value == pytest.approx(0.5**5)
    too_rare = compare_rates(4, 300, 0, 300)
    assert not too_rare.significant and too_rare.reason == NOT_SIGNIFICANT


def test_too_few_target_sessions_is_never_significant() -> None:
    test = compare_rates(100, 1000, 0, 199)
    assert test.p_value < 1e-6  # the evidence is there, but 199 sessions are not enough
    assert not test.significant and not test.enough_sessions and test.reason == TOO_FEW_SESSIONS
    assert compare_rates(100, 1000, 0, 199, min_sessions=100).significant


def test_rates_are_unknown_without_sessions() -> None:
    no_base = compare_rates(3, 0, 0, 500)
    assert (no_base.base_rate, no_base.target_rate, no_base.change, no_base.p_value) == (None, 0.0, None, None)
    assert not no_base.significant and no_base.reason == NO_BASE_SESSIONS
    no_target = compare_rates(3, 500, 0, 0)
    assert (no_target.base_rate, no_target.target_rate, no_target.p_value) == (0.006, None, None)
    assert not no_target.significant and not no_target.enough_sessions and no_target.reason == NO_TARGET_SESSIONS


def test_no_crashes_anywhere() -> None:
    test = compare_rates(0, 500, 0, 500)
    assert (test.base_rate, test.target_rate, test.change, test.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not test.significant and test.reason == NO_CRASHES


def test_a_rise_is_not_lower() -> None:
    test = compare_rates(2, 1000, 30, 1000)
    assert test.p_value > 0.99 and not test.significant and test.reason == NOT_LOWER
    assert test.change == pytest.approx(14.0)
    new_crash = compare_rates(0, 1000, 3, 1000)
    assert new_crash.change is None and new_crash.reason == NOT_LOWER  # from 0: no relative change


def test_session_counts_weigh_in() -> None:
    """The same crash counts mean different rates when one build was played far more."""
    assert compare_rates(10, 1000, 10, 10000).significant  # 0.01 -> 0.001 per session
    assert not compare_rates(10, 1000, 10, 1000).significant
    assert compare_rates(10, 1000, 10, 1000).p_value == pytest.approx(0.5880985260009766)


def test_more_crashes_than_sessions_is_allowed() -> None:
    """Rates are Poisson rates: one session can crash in several groups."""
    test = compare_rates(900, 300, 10, 300)
    assert test.base_rate == 3.0 and test.significant


def test_alpha_is_the_threshold() -> None:
    test = compare_rates(5, 300, 0, 300)  # p = 0.03125
    assert test.significant
    assert not compare_rates(5, 300, 0, 300, alpha=0.03125).significant
    assert not compare_rates(5, 300, 0, 300, alpha=0.01).significant


def test_large_counts_are_fast_and_finite() -> None:
    test = compare_rates(2_000_000, 10_000_000, 1_900_000, 10_000_000)
    assert test.significant and 0.0 <= test.p_value < 1e-100


@pytest.mark.parametrize("args", [(-1, 10, 0, 10), (1, -10, 0, 10), (1, 10, -1, 10), (1, 10, 0, -10)])
def test_negative_counts_are_refused(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        compare_rates(*args)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 2.0])
def test_bad_alpha_is_refused(alpha: float) -> None:
    with pytest.raises(ValueError):
        compare_rates(1, 10, 0, 10, alpha=alpha)
