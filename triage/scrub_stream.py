"""Scrubbing a text stream (a log attachment) in bounded memory (docs/privacy.md).

The bytes are decoded as UTF-8 with ``surrogateescape`` (a Latin-1 or half-binary log comes
out byte for byte as it went in, except what is filtered) and scrubbed in chunks of about
CHUNK_CHARS. The last OVERLAP characters of each chunk wait for the next one, so that a
secret cut by a chunk boundary is seen whole: a chunk ends before any match that crosses
its end (or, when the match starts the chunk, at the match's end). The limit: a secret
longer than OVERLAP (64 Ki characters) that starts less than OVERLAP before a cut may be
missed or filtered up to the cut only.
CONTEXT characters before the cut are kept for lookbehinds (``(?<![\\w.])``).

A leaf: no I/O; the caller feeds bytes and writes what comes back.
"""

from __future__ import annotations

import codecs

from triage.scrub import FILTERED, Rules

CHUNK_CHARS = 1024 * 1024
OVERLAP = 64 * 1024  # the longest secret always caught whole across a boundary
CONTEXT = 256


class TextScrubber:
    """feed() bytes, get scrubbed bytes back (possibly fewer, held for the overlap);
    finish() returns the rest."""

    def __init__(self, rules: Rules, chunk_chars: int = CHUNK_CHARS, overlap: int = OVERLAP) -> None:
        self.rules = rules.patterns
        self.chunk, self.overlap = chunk_chars, overlap
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buffer = ""  # the text not yet written, after self.pos characters of context
        self.pos = 0

    def feed(self, data: bytes) -> bytes:
        self.buffer += self.decoder.decode(data)
        out = []
        while len(self.buffer) - self.pos >= self.chunk + self.overlap:
            out.append(self._emit(len(self.buffer) - self.overlap, final=False))
        return b"".join(out)

    def finish(self) -> bytes:
        self.buffer += self.decoder.decode(b"", final=True)
        return self._emit(len(self.buffer), final=True)

    def _emit(self, cut: int, final: bool) -> bytes:
        """Write the text from pos to cut (moved to a place no match crosses)."""
        matches = [m for rule in self.rules for m in rule.spans(self.buffer, self.pos)]
        if not final:
            cut = _cut_between_matches(matches, cut, self.pos, len(self.buffer))
        text = _replaced(self.buffer, self.pos, cut, [(s, e) for start, _, s, e in matches if start < cut])
        keep = max(cut - CONTEXT, 0)
        self.buffer, self.pos = self.buffer[keep:], cut - keep
        return text.encode("utf-8", "surrogateescape")


def _cut_between_matches(matches: list[tuple[int, int, int, int]], cut: int, pos: int, end: int) -> int:
    """cut moved back to the start of the matches that cross it (found again, whole, with
    the next chunk); when that leaves nothing to write, forward to their end if they end
    before the buffer does; else cut itself (the match is filtered up to cut only)."""
    back = forward = cut
    while crossing := [start for start, stop, _, _ in matches if start < back < stop]:
        back = min(crossing)
    if back > pos:
        return back
    while crossing := [stop for start, stop, _, _ in matches if start < forward < stop]:
        forward = max(crossing)
    return forward if forward < end else cut


def _replaced(text: str, pos: int, cut: int, spans: list[tuple[int, int]]) -> str:
    """text[pos:cut] with each span (clipped to it, overlapping spans merged) as FILTERED."""
    out, at = [], pos
    for start, end in sorted((max(s, pos), min(e, cut)) for s, e in spans):
        if end <= start or end <= at:
            continue
        if start >= at:
            out.append(text[at:start])
            out.append(FILTERED)
        at = end
    out.append(text[at:cut])
    return "".join(out)
