"""Verification by numbers (triage/verification.py): where builds fall around fixed_in, and
the rate test of a fix."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from triage.verification import at_or_after, verify_fix

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_at_or_after_in_version_order() -> None:
    fix = "0.9.9-staging-beta2"
    assert at_or_after("0.9.9-staging-beta2", fix)
    assert at_or_after("0.9.9-staging-beta3", fix)
    assert at_or_after("0.9.9-staging-beta10", fix)
    assert at_or_after("0.9.9", fix) and at_or_after("1.0", fix)
    assert not at_or_after("0.9.9-staging-beta1", fix)
    assert not at_or_after("0.9.8", fix)


def test_at_or_after_by_first_seen_for_other_builds() -> None:
    seen = {"nightly-a": T0, "nightly-b": T0 + timedelta(days=1), "nightly-c": T0 + timedelta(days=2)}
    assert at_or_after("nightly-c", "nightly-b", seen)
    assert not at_or_after("nightly-a", "nightly-b", seen)
    assert at_or_after("nightly-a", "1.0", seen)  # builds that are not versions come after versions


def test_significant_drop_verifies() -> None:
    crashes = {"0.9.9-staging-beta1": 30, "0.9.9-staging-beta2": 1, "": 4}
    sessions = {"0.9.9-staging-beta1": 400, "0.9.9-staging-beta2": 150, "0.9.9-staging-beta3": 100, "": 50}
    result = verify_fix(crashes, sessions, "0.9.9-staging-beta2", min_sessions=200)
    assert result.base_builds == ("0.9.9-staging-beta1",)
    assert result.target_builds == ("0.9.9-staging-beta2", "0.9.9-staging-beta3")
    test = result.test
    assert (test.base_crashes, test.base_sessions, test.target_crashes, test.target_sessions) == (30, 400, 1, 250)
    assert test.significant and test.reason == "lower"
    details = result.details()
    assert details["method"] == "rates" and details["target_builds"] == ["0.9.9-staging-beta2", "0.9.9-staging-beta3"]
    assert details["p_value"] < 0.001
    assert "30 crashes in 400 sessions before 0.9.9-staging-beta2 -> 1 in 250 from it on" in result.summary()


def test_not_enough_sessions_or_no_drop_stays_resolved() -> None:
    crashes = {"1.0": 30, "1.1": 0}
    few = verify_fix(crashes, {"1.0": 400, "1.1": 199}, "1.1", min_sessions=200)
    assert not few.test.significant and few.test.reason == "too_few_sessions"
    same = verify_fix({"1.0": 30, "1.1": 15}, {"1.0": 400, "1.1": 200}, "1.1", min_sessions=200)
    assert not same.test.significant and same.test.reason == "not_lower"


def test_builds_without_sessions_take_no_part() -> None:
    # 1.0 crashed a lot but reported no sessions: its rate is unknown, not part of the base.
    result = verify_fix({"0.9": 2, "1.0": 50, "1.1": 0}, {"0.9": 300, "1.1": 300}, "1.1", min_sessions=200)
    assert result.base_builds == ("0.9",) and result.test.base_crashes == 2
    assert not result.test.significant
    nothing = verify_fix({"1.0": 5}, {}, "1.1")
    assert nothing.test.reason == "no_base_sessions" and nothing.test.base_rate is None
