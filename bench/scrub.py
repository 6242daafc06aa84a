"""Scrubbing throughput: a text log through triage/scrub_stream.TextScrubber with the shipped
rules (triage/scrub_rules.toml), against a comparator that does the same decode/encode pass
without looking for anything (the floor of any streaming text filter in Python).

Run from the repository root: ``.venv/bin/python bench/scrub.py [--megabytes 50]``.
Results: docs/benchmarks.md. The log is game-like lines (timestamps, NAR dialogue, asset
paths, numbers) with a secret every 200 lines: an e-mail, a JWT, a bearer token, an IP, a
Windows home path. Scrubbing runs before an upload gets its 200 (docs/privacy.md), so its
time adds to the upload's.
"""

from __future__ import annotations

import argparse
import codecs
import random
import time
import tracemalloc
from pathlib import Path

from triage.scrub import load_rules
from triage.scrub_stream import TextScrubber

REPO = Path(__file__).resolve().parents[1]
PIECE = 64 * 1024  # what the upload path hands the scrubber at a time
SECRETS = ("tester.one@example.com", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ",
           "Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "connecting to 192.168.17.42:7777",
           r"C:\Users\alice\AppData\Local\Game\save.dat")


def make_log(megabytes: int, seed: int = 7) -> bytes:
    """A game log of about megabytes MB."""
    rng = random.Random(seed)
    words = ("render", "frame", "nar", "dialogue", "villager", "asset", "texture", "loaded", "ms", "queue", "llama",
             "token", "decode", "layer", "zklogin", "session", "ok", "retry", "physics", "tick")
    lines, size, n = [], 0, 0
    while size < megabytes * 1024 * 1024:
        n += 1
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
        line = f"2026-12-05T12:{n % 60:02d}:{n % 60:02d}.{n % 1000:03d} [{rng.choice('IWE')}] {text} {rng.random():.4f}"
        if n % 200 == 0:
            line += " " + SECRETS[(n // 200) % len(SECRETS)]
        lines.append(line)
        size += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def scrub(data: bytes, keep: bool = True) -> tuple[float, bytes]:
    """Seconds to scrub data in PIECE-sized feeds, and the output (b"" unless keep: the
    memory run drops each piece as an upload writes it to the blob store)."""
    scrubber = TextScrubber(load_rules(REPO / "triage" / "scrub_rules.toml").for_project(None))
    out: list[bytes] = []
    start = time.perf_counter()
    for i in range(0, len(data), PIECE):
        piece = scrubber.feed(data[i:i + PIECE])
        if keep:
            out.append(piece)
    out.append(scrubber.finish())
    return time.perf_counter() - start, b"".join(out) if keep else b""


def floor(data: bytes) -> float:
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    start = time.perf_counter()
    for i in range(0, len(data), PIECE):
        decoder.decode(data[i:i + PIECE]).encode("utf-8", "surrogateescape")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    data = make_log(args.megabytes)
    mb = len(data) / 1024 / 1024
    base = floor(data)
    seconds_plain, out = scrub(data)
    tracemalloc.start()
    scrub(data, keep=False)
    peak = tracemalloc.get_traced_memory()[1] / 1024 / 1024
    tracemalloc.stop()
    left = sum(out.count(s.encode()) for s in SECRETS)
    print(f"log: {mb:.1f} MB, {data.count(b'[Filtered]')} [Filtered] before, {out.count(b'[Filtered]')} after, "
          f"secrets left: {left}")
    print(f"floor (decode+encode only): {base:.2f} s, {mb / base:.0f} MB/s")
    print(f"scrub (shipped rules):      {seconds_plain:.2f} s, {mb / seconds_plain:.1f} MB/s, "
          f"{1000 * seconds_plain / mb:.0f} ms per MB, {seconds_plain / base:.0f}x the floor")
    print(f"scrub peak memory (tracemalloc, output written away as it comes): {peak:.1f} MB for a {mb:.0f} MB log")


if __name__ == "__main__":
    main()
