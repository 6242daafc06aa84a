"""Tester feedback for triage (docs/feedback.md): its categories, and which group a report
goes to. Pure functions on text; a leaf (imports nothing of crashd).

A report is grouped by its category (``feedback | ui``), except ``nar_output``: 12 testers
quoting the same villager line, each with their own capitals, quotes and full stops, are one
item with 12 testers, so that line is grouped by a normalized text key
(``feedback | nar_output | <normalized line>``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

CATEGORIES = ("bug", "nar_output", "performance", "ui", "install", "login", "economy", "other")
DEFAULT_CATEGORY = "other"  # when a report names none
TEXT_KEYED = "nar_output"  # the category grouped by its text as well
MAX_MESSAGE_BYTES = 16 * 1024  # a message's UTF-8 bytes
SIGNATURE_TEXT_CHARS = 200  # of the normalized line in a nar_output group's signature
KEY_HEX = 16  # hex digits of the text key (64 bits of SHA-256)

# A speaker named before the line, dropped: "Villager: ...", "Old Tom: ...", "The NPC said ...",
# "Narrator says ...". Up to three words, so a sentence with a colon later on is left alone.
SPEAKER = re.compile(r"^(?:[^\W\d_][\w'-]*\s+){0,2}[^\W\d_][\w'-]*\s*:\s+"
                     r"|^(?:the\s+)?(?:npc|villager|narrator|nar)\s+(?:said|says)\s*:?\s+")
APOSTROPHES = re.compile("['\u2019\u02bc`]")  # "don't" and "dont" are one word
WHITESPACE = re.compile(r"\s+")


def normalized_line(message: str) -> str:
    """The line a nar_output report quotes, in one spelling: NFKC (full-width letters and
    ligatures as plain ones), lower case, a leading speaker ("Villager:", "the NPC said")
    dropped, apostrophes removed, other punctuation, quotes and symbols as spaces, whitespace
    collapsed. ``"The NPC said: 'Go AWAY, stranger!!'"`` -> ``go away stranger``."""
    text = unicodedata.normalize("NFKC", message).casefold().strip()
    text = SPEAKER.sub("", text, count=1)
    text = APOSTROPHES.sub("", text)
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return WHITESPACE.sub(" ", text).strip()


def text_key(message: str) -> str:
    """The nar_output grouping key: the first KEY_HEX hex digits of the SHA-256 of
    normalized_line(message)."""
    return hashlib.sha256(normalized_line(message).encode()).hexdigest()[:KEY_HEX]


def feedback_signature(category: str, message: str) -> str:
    """The signature of the feedback group a report counts in: ``feedback | <category>``, or
    for nar_output ``feedback | nar_output | <normalized line, cut to 200 characters>``
    (``(no words)`` when nothing is left of it)."""
    if category != TEXT_KEYED:
        return f"feedback | {category}"
    line = normalized_line(message)[:SIGNATURE_TEXT_CHARS].strip() or "(no words)"
    return f"feedback | {TEXT_KEYED} | {line}"
