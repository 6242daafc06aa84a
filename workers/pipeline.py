"""Processing is an ordered list of small rules (Socorro's processor/rules).

Each rule has ``predicate()`` (should it run on this crash?) and ``action()`` (what it adds to
the processed crash). A rule that raises adds a note; the next rules still run and the crash
is still saved. Later issues add: read the minidump, walk stacks, symbolicate, signature.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from schemas.tables import Crash, CrashStatus
from storage import queries
from storage.blobs import CHUNK, BlobNotFound
from workers.jobs import WorkerContext

log = logging.getLogger(__name__)


@dataclass
class ProcessingState:
    """A crash being processed: the row, the processed document and notes so far."""

    crash: Crash
    processed: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fatal: str | None = None


class Rule:
    """One processing step. Subclasses document what they add."""

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        """Whether the rule applies; by default only while nothing fatal happened."""
        return state.fatal is None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        """Add to state.processed; raise to record a note."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__


class VerifyMinidumpRule(Rule):
    """Adds ``minidump{size, sha256}`` read back from the blob store, and checks it against
    what ingest recorded. A missing blob is fatal: nothing else can run."""

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        digest = hashlib.sha256()
        size = 0
        try:
            with ctx.blobs.open(state.crash.minidump_key) as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except BlobNotFound:
            state.fatal = f"minidump blob missing: {state.crash.minidump_key}"
            return
        state.processed["minidump"] = {"size": size, "sha256": digest.hexdigest()}
        if digest.hexdigest() != state.crash.minidump_sha256 or size != state.crash.minidump_size:
            state.fatal = "minidump blob does not match the uploaded size/sha256"


class CopyAnnotationsRule(Rule):
    """Adds ``product``, ``build`` and ``tester_id`` as ingest resolved them."""

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        crash = state.crash
        state.processed.update(product=crash.product, build=crash.build, tester_id=crash.tester_id)


DEFAULT_RULES: tuple[Rule, ...] = (VerifyMinidumpRule(), CopyAnnotationsRule())


def run_rules(ctx: WorkerContext, state: ProcessingState, rules: tuple[Rule, ...]) -> None:
    """Run each applicable rule in order; a failing rule becomes a note."""
    for rule in rules:
        try:
            if rule.predicate(ctx, state):
                rule.action(ctx, state)
        except Exception as exc:  # noqa: BLE001 - a rule's failure must not lose the crash
            log.exception("rule %s failed on %s", rule.name, state.crash.crash_id)
            state.notes.append(f"{rule.name} failed: {type(exc).__name__}: {exc}")


def run_pipeline(ctx: WorkerContext, crash_id: str, rules: tuple[Rule, ...] = DEFAULT_RULES) -> dict[str, Any]:
    """Process one crash and save the result. Returns a short summary (the RQ job result)."""
    crash = queries.claim_crash(ctx.engine, crash_id=crash_id)
    if crash is None:
        log.warning("process: no crash %s", crash_id)
        return {"crash_id": crash_id, "status": "missing"}
    state = ProcessingState(crash)
    run_rules(ctx, state, rules)
    state.processed["notes"] = state.notes
    status = CrashStatus.failed if state.fatal else CrashStatus.processed
    queries.finish_crash(
        ctx.engine, crash_id=crash_id, status=status, processed=state.processed, error=state.fatal
    )
    return {"crash_id": crash_id, "status": status.value, "notes": state.notes}
