"""``crashd sweep`` and ``crashd reprocess``: run crashes through processing again."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from schemas.settings import Settings
from server.api.params import parse_since
from server.cli.context import command_context
from workers import jobs
from workers.queue import InProcessJobQueue, make_queue
from workers.reprocess import enqueue_all, select_crashes
from workers.sweeper import sweep


def cmd_sweep(settings: Settings, args: argparse.Namespace) -> int:
    """Re-enqueue crashes stuck in `received`/`processing` once, then exit."""
    ctx = command_context(settings, pooled=True)
    jobs.install_context(ctx)
    queue = make_queue(settings)
    enqueued = sweep(ctx, queue)
    if isinstance(queue, InProcessJobQueue):
        queue.join()
    queue.close()
    print(f"re-enqueued {len(enqueued)} crashes")
    return 0


def cmd_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    """Reprocess crashes after a change to the lists or rules (or symbols)."""
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return 2
    ctx = command_context(settings, pooled=True)
    jobs.install_context(ctx)
    crash_ids = select_crashes(ctx, everything=args.all, group_id=args.group, since=since, failed=args.failed)
    queue = make_queue(settings)
    bar = progress_bar("reprocess")
    enqueue_all(queue, crash_ids, bar)
    if isinstance(queue, InProcessJobQueue):  # no Redis: the jobs run here, wait for them
        queue.join()
    queue.close()
    where = "processed" if isinstance(queue, InProcessJobQueue) else "enqueued on RQ"
    print(f"{len(crash_ids)} crashes {where}", file=sys.stderr)
    return 0


def progress_bar(label: str, width: int = 30) -> Callable[[int, int], None]:
    """A text progress bar on stderr: redrawn in place on a terminal, a line per 10% in logs."""
    tty = sys.stderr.isatty()
    shown = {"tenth": -1}

    def draw(done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        line = f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if tty:
            print("\r" + line, end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif 10 * done // max(total, 1) != shown["tenth"]:
            shown["tenth"] = 10 * done // max(total, 1)
            print(line, file=sys.stderr, flush=True)
    return draw
