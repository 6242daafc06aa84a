"""Counted nouns for people: ``plural(1, "crash")`` is "1 crash", ``plural(2, "crash")``
"2 crashes". The dashboard registers it as the Jinja filter ``plural``
(``{{ n|plural("tester") }}``); the Markdown reports and verification summaries call it."""

from __future__ import annotations

IRREGULAR = {"was": "were"}


def noun(count: int | float | None, word: str) -> str:
    """word as it goes with count: singular for exactly 1, else its plural ("crash" ->
    "crashes", "tester" -> "testers")."""
    if count == 1:
        return word
    if word in IRREGULAR:
        return IRREGULAR[word]
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


def plural(count: int | float | None, word: str) -> str:
    """"1 crash", "2 crashes", "0 testers" (None counts as 0)."""
    count = count or 0
    return f"{count} {noun(count, word)}"
