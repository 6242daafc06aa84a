"""The dependency checks behind ``GET /__heartbeat__``, each answered within a deadline.

A hung dependency (PostgreSQL or Redis stopped, a blob store's disk stalled) would hold the
heartbeat as long as its own timeouts; monitoring wants to know within 2 s which one is
down. Each check runs on a thread of its own; the heartbeat waits CHECK_DEADLINE_SECONDS
for all of them and reports a check still running then as an error. A check that is still
running when the next heartbeat comes is waited for again, not started twice, so a hung
dependency holds one thread, not one per heartbeat.

Also ``GET /__lbheartbeat__`` (the process answers) and ``GET /__version__``.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from server.state import ServerState, state_of
from storage import queries

VERSION = "0.1.0"
CHECK_DEADLINE_SECONDS = 1.5  # the heartbeat answers within 2 s

# Threads start on first use; at most one per dependency and server state runs at a time.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="crashd-heartbeat")
_running: dict[tuple[int, str], Future[object]] = {}
_lock = threading.Lock()


def checks_of(state: ServerState) -> dict[str, Callable[[], object]]:
    """Each dependency's check: it returns when the dependency answers, else raises."""
    return {
        "database": lambda: queries.count_by_status(state.ctx.engine),
        "blob_store": state.ctx.blobs.check,
        "queue": state.queue.check,  # Redis with CRASHD_REDIS_URL
    }


async def run_checks(state: ServerState) -> dict[str, str]:
    """``{"database": "ok", "blob_store": "ok", "queue": "error: ..."}`` within the deadline."""
    futures = {name: _start(state, name, check) for name, check in checks_of(state).items()}
    waiting = {name: asyncio.wrap_future(future) for name, future in futures.items()}
    await asyncio.wait(waiting.values(), timeout=CHECK_DEADLINE_SECONDS)
    outcomes = {name: _outcome(task) for name, task in waiting.items()}
    for task in waiting.values():
        task.cancel()  # a hung check runs on; its late outcome is not wanted here
    return outcomes


def _start(state: ServerState, name: str, check: Callable[[], object]) -> Future[object]:
    with _lock:
        key = (id(state), name)
        running = _running.get(key)
        if running is not None and not running.done():
            return running
        future = _executor.submit(check)
        _running[key] = future
        return future


def _outcome(task: "asyncio.Future[object]") -> str:
    if not task.done():
        return f"error: no answer within {CHECK_DEADLINE_SECONDS:g} s"
    exc = task.exception()
    if exc is not None:
        first_line = (str(exc).splitlines() or [""])[0]
        return f"error: {type(exc).__name__}: {first_line}"
    return "ok"


async def lbheartbeat(request: Request) -> Response:
    """GET /__lbheartbeat__: the process answers (for load balancers)."""
    return PlainTextResponse("OK")


async def heartbeat(request: Request) -> Response:
    """GET /__heartbeat__: database, blob store and queue all answer (503 with details if not)."""
    checks = await run_checks(state_of(request))  # within 2 s, even with one hung
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if ok else "error", "checks": checks}, status_code=200 if ok else 503)


async def version(request: Request) -> Response:
    """GET /__version__: what is running."""
    state = state_of(request)
    return JSONResponse({
        "name": "crashd",
        "version": VERSION,
        # rq; database: `crashd serve`'s worker process takes crashes from the database
        # (workers/db_queue.py); in-process: a worker thread (tests, an app built in-process)
        "queue": "rq" if state.settings.redis_url else "database" if state.queue.polls_received else "in-process",
        "database": state.ctx.engine.dialect.name,
    })
