"""What `crashd serve` runs beside the requests (server/app.py's lifespan starts them): error
reporting of the server itself, and the sweeper loop."""

from __future__ import annotations

import asyncio
import logging

import sentry_sdk
from starlette.concurrency import run_in_threadpool

from schemas.settings import Settings
from server.ingest.sentry import drop_envelope_endpoint_errors
from server.state import ServerState
from workers import retention, symbol_prune, triage_jobs
from workers.sweeper import sweep

log = logging.getLogger(__name__)


def init_sentry(settings: Settings) -> None:
    """Report the server's own errors to CRASHD_SENTRY_DSN (which may be crashd itself)."""
    if settings.sentry_dsn:
        sentry_sdk.init(dsn=settings.sentry_dsn, environment=settings.environment, send_default_pii=False,
                        before_send=drop_envelope_endpoint_errors)  # no report loops


async def sweeper_loop(state: ServerState) -> None:
    """Every CRASHD_SWEEPER_INTERVAL_SECONDS: the sweeper, triage, notification retries and
    retention, each in a thread. A failing tick is logged; the loop goes on."""
    while True:
        await asyncio.sleep(state.settings.sweeper_interval_seconds)
        try:
            await run_in_threadpool(sweep, state.ctx, state.queue)
            await run_in_threadpool(triage_jobs.tick, state.ctx, state.queue)  # rules, regressions, verification
            await run_in_threadpool(state.queue.enqueue_notify)  # retries of ticket notifications
            await run_in_threadpool(retention.tick, state.ctx)  # CRASHD_RETENTION_DAYS, a batch a tick
            await run_in_threadpool(symbol_prune.tick, state.ctx)  # CRASHD_SYMBOL_RETENTION_DAYS
        except Exception:
            log.exception("sweeper failed")
