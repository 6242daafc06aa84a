"""The signature lists: regular expressions in text files under ``siglists/``.

Every non-comment line of a list is one Python regular expression matched with
``re.fullmatch`` against a normalized frame (``core::panicking::.*``, ``abort``,
``ntdll\\.dll@0x[0-9a-f]+``); add ``.*`` for a prefix match. ``oom.txt`` lines may chain
several expressions with `` | ``, matched against consecutive frames. The lists are read
once per process (``default_siglists``); tests build their own with ``load_siglists``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SIGLISTS_DIR = Path(__file__).resolve().parent / "siglists"
LIST_FILES = {"irrelevant": "irrelevant.txt", "prefix": "prefix.txt", "sentinels": "sentinels.txt", "oom": "oom.txt"}


class SigListError(ValueError):
    """A list line is not a valid regular expression; the message names file and line."""


@dataclass(frozen=True)
class Entry:
    """One list line: its expressions (several only in oom.txt chains) and where it is."""

    patterns: tuple[re.Pattern[str], ...]
    where: str  # "irrelevant.txt:12"

    @property
    def text(self) -> str:
        return " | ".join(p.pattern for p in self.patterns)

    def matches(self, label: str) -> bool:
        return self.patterns[0].fullmatch(label) is not None

    def matches_at(self, labels: list[str], index: int) -> bool:
        """Whether this (chained) entry matches labels[index], labels[index + 1], ..."""
        window = labels[index:index + len(self.patterns)]
        return len(window) == len(self.patterns) and all(
            p.fullmatch(label) for p, label in zip(self.patterns, window, strict=False))


@dataclass(frozen=True)
class SigLists:
    """All lists; each a tuple of entries in file order."""

    irrelevant: tuple[Entry, ...] = ()
    prefix: tuple[Entry, ...] = ()
    sentinels: tuple[Entry, ...] = ()
    oom: tuple[Entry, ...] = ()


def first_match(entries: tuple[Entry, ...], label: str) -> Entry | None:
    """The first entry matching label, or None."""
    return next((e for e in entries if e.matches(label)), None)


def parse_list(text: str, name: str, chained: bool = False) -> tuple[Entry, ...]:
    """Entries of one list file's text. Blank lines and lines starting with ``#`` are skipped;
    leading and trailing spaces are not part of an expression. Raises SigListError."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ")] if chained else [line]
        try:
            patterns = tuple(re.compile(p) for p in parts)
        except re.error as exc:
            raise SigListError(f"{name}:{number}: {line!r}: {exc}") from exc
        entries.append(Entry(patterns, f"{name}:{number}"))
    return tuple(entries)


def load_siglists(directory: Path = SIGLISTS_DIR) -> SigLists:
    """Read the four list files from directory; a missing file is an empty list.
    Raises SigListError on a bad expression, OSError when a file cannot be read."""
    lists = {}
    for field, filename in LIST_FILES.items():
        path = Path(directory) / filename
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lists[field] = parse_list(text, filename, chained=field == "oom")
    return SigLists(**lists)


@lru_cache(maxsize=1)
def default_siglists() -> SigLists:
    """The lists shipped in ``triage/signature/siglists/``, read on first use."""
    return load_siglists(SIGLISTS_DIR)
