"""bench/cluster_scores.py: the precision/recall and confusions bench/grouping_accuracy.py prints,
on small hand-made groupings whose figures are worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from cluster_scores import confusions, score


def test_perfect_grouping() -> None:
    s = score(["a", "a", "b", "b", "b"], [1, 1, 2, 2, 2])
    assert (s.items, s.bugs, s.groups) == (5, 2, 2)
    assert (s.pair_precision, s.pair_recall, s.bcubed_precision, s.bcubed_recall) == (1.0, 1.0, 1.0, 1.0)
    assert s.meets(0.99, 0.95)
    found = confusions(["a", "a", "b"], [1, 1, 2])
    assert found.splits == {} and found.merges == {}


def test_a_split_costs_recall_only() -> None:
    # bug a (4 crashes) split 3 + 1: 3 of its 6 pairs kept; b's 1 pair kept.
    labels, groups = ["a", "a", "a", "a", "b", "b"], ["g1", "g1", "g1", "g2", "g3", "g3"]
    s = score(labels, groups)
    assert s.pair_precision == 1.0 and s.bcubed_precision == 1.0
    assert s.pair_recall == pytest.approx(4 / 7)
    # B-cubed recall: a's three in g1 have 3/4, the one in g2 1/4, b's two 1 each.
    assert s.bcubed_recall == pytest.approx((3 * 3 / 4 + 1 / 4 + 2) / 6)
    assert not s.meets(0.99, 0.95)
    assert confusions(labels, groups).splits == {"a": [("g1", 3), ("g2", 1)]}


def test_a_merge_costs_precision_only() -> None:
    # one group holds a x2 and b x1: of its 3 pairs, 1 shares a bug.
    labels, groups = ["a", "a", "b"], ["g", "g", "g"]
    s = score(labels, groups)
    assert s.pair_recall == 1.0 and s.bcubed_recall == 1.0
    assert s.pair_precision == pytest.approx(1 / 3)
    assert s.bcubed_precision == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3)
    found = confusions(labels, groups)
    assert found.merges == {"g": [("a", 2), ("b", 1)]} and found.splits == {}


def test_singletons_have_no_pairs() -> None:
    """No pair grouped and no pair to find: the pairwise figures are 1.0, not a division by 0."""
    s = score(["a", "b", "c"], [1, 2, 3])
    assert (s.pair_precision, s.pair_recall, s.bcubed_precision, s.bcubed_recall) == (1.0, 1.0, 1.0, 1.0)


def test_mismatched_or_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        score(["a"], [1, 2])
    with pytest.raises(ValueError):
        score([], [])
    with pytest.raises(ValueError):
        confusions(["a", "b"], [1])
