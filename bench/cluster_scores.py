"""How well a grouping matches labels: pairwise and B-cubed precision/recall, and the confusions.

Pure functions (no I/O) for bench/grouping_accuracy.py and tests/test_grouping_accuracy.py. Inputs
are two parallel lists: ``labels[i]`` is the true bug of item i, ``groups[i]`` the group it was
put in (any hashable: a group id, a signature).

- Pairwise: precision = of the pairs of items put in one group, the share that have one label;
  recall = of the pairs that have one label, the share put in one group. With no such pairs the
  figure is 1.0 (nothing was wrongly merged, or nothing could be split).
- B-cubed (Bagga and Baldwin 1998): per item, precision = the share of its group that has its
  label, recall = the share of its label that is in its group; each averaged over the items.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Sequence


@dataclass(frozen=True)
class Scores:
    """The four figures of one grouping against its labels."""

    items: int
    bugs: int
    groups: int
    pair_precision: float
    pair_recall: float
    bcubed_precision: float
    bcubed_recall: float

    def meets(self, precision: float, recall: float) -> bool:
        """True when both precisions reach precision and both recalls reach recall."""
        return (min(self.pair_precision, self.bcubed_precision) >= precision
                and min(self.pair_recall, self.bcubed_recall) >= recall)


@dataclass(frozen=True)
class Confusions:
    """splits: each label found in more than one group -> [(group, items)], most first;
    merges: each group holding more than one label -> [(label, items)], most first."""

    splits: dict[Hashable, list[tuple[Hashable, int]]]
    merges: dict[Hashable, list[tuple[Hashable, int]]]


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _check(labels: Sequence[Hashable], groups: Sequence[Hashable]) -> None:
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels for {len(groups)} group assignments")


def score(labels: Sequence[Hashable], groups: Sequence[Hashable]) -> Scores:
    """Pairwise and B-cubed precision/recall of groups against labels. Raises ValueError when the
    lists differ in length or are empty."""
    _check(labels, groups)
    if not labels:
        raise ValueError("no items to score")
    cells = Counter(zip(labels, groups, strict=True))
    per_label, per_group = Counter(labels), Counter(groups)
    together = sum(_pairs(n) for n in cells.values())
    grouped, labelled = sum(_pairs(n) for n in per_group.values()), sum(_pairs(n) for n in per_label.values())
    count = len(labels)
    return Scores(
        items=count, bugs=len(per_label), groups=len(per_group),
        pair_precision=together / grouped if grouped else 1.0,
        pair_recall=together / labelled if labelled else 1.0,
        bcubed_precision=sum(n * n / per_group[g] for (_, g), n in cells.items()) / count,
        bcubed_recall=sum(n * n / per_label[b] for (b, _), n in cells.items()) / count,
    )


def confusions(labels: Sequence[Hashable], groups: Sequence[Hashable]) -> Confusions:
    """Which labels were split across groups and which groups merged labels."""
    _check(labels, groups)
    by_label: dict[Hashable, Counter[Hashable]] = {}
    by_group: dict[Hashable, Counter[Hashable]] = {}
    for label, group in zip(labels, groups, strict=True):
        by_label.setdefault(label, Counter())[group] += 1
        by_group.setdefault(group, Counter())[label] += 1
    return Confusions(
        splits={label: _ranked(found) for label, found in by_label.items() if len(found) > 1},
        merges={group: _ranked(found) for group, found in by_group.items() if len(found) > 1},
    )


def _ranked(found: Counter[Hashable]) -> list[tuple[Hashable, int]]:
    """(key, count), most first, then by key's text for a stable order."""
    return sorted(found.items(), key=lambda kv: (-kv[1], str(kv[0])))
