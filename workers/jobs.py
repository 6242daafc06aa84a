"""Thin job entry points. RQ workers and the in-process worker call the same functions.

Jobs already waiting in a Redis queue name these functions by dotted path
(``workers.jobs.process_crash``, ``workers.jobs.deliver_notifications``): keep them here.
The context (workers/context.py) is built on first use in the worker process, or handed over
by the server for the in-process worker; never at import time.
"""

from __future__ import annotations

from typing import Any

from storage.outbox import deliver_due
from workers.context import WorkerContext, build_context, current_context, install_context
from workers.pipeline import run_pipeline

# WorkerContext, build_context and install_context are imported for the callers that name
# them here (server, tests, bench); workers/context.py owns them.
__all__ = ["WorkerContext", "build_context", "current_context", "deliver_notifications", "install_context",
           "process_crash", "process_taken_crash"]


def process_crash(crash_id: str) -> dict[str, Any]:
    """RQ job ``process:<crash_id>``: run the processing pipeline on one crash."""
    return run_pipeline(current_context(), crash_id)


def process_taken_crash(crash_id: str) -> dict[str, Any]:
    """The database queue's job (workers/db_queue.py): the pipeline on a crash its worker has
    already marked `processing`, which it therefore does not claim a second time."""
    return run_pipeline(current_context(), crash_id, taken=True)


def deliver_notifications() -> dict[str, Any]:
    """RQ job ``notify``: send the due ticket notifications of the outbox (retries included).
    Returns ``{"sent", "retried", "failed"}``."""
    ctx = current_context()
    return deliver_due(ctx.engine, ctx.settings).as_dict()
