"""What a processing rule is (Socorro's processor/rules/base.py): the Rule base class and the
ProcessingState rules read and add to.

A leaf shared by workers/rules.py (the rules) and workers/pipeline.py (which runs them): it
imports nothing of workers/ but the context leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.stack import Thread
from schemas.tables import Crash, utcnow
from workers.context import WorkerContext


@dataclass
class ProcessingState:
    """A crash being processed: the row, what rules produced so far, and notes."""

    crash: Crash
    deadline: float
    started_at: datetime = field(default_factory=utcnow)
    again: str | None = None  # why the crash is to be processed once more once this run is saved
    processed: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fatal: str | None = None  # the dump is bad: the crash is failed at once with this reason
    retry: str | None = None  # an infrastructure failure (words): the crash is retried
    raw: bytes | None = None
    dump: Any = None  # symbolicator.minidump.Minidump
    threads: list[Thread] | None = None
    report: dict[str, Any] | None = None


class Rule:
    """One processing step. Subclasses document what they add."""

    failure = "the rule failed"  # what the note says when the rule raises: in words, no exception text

    def predicate(self, ctx: WorkerContext, state: ProcessingState) -> bool:
        """Whether the rule applies; by default only while nothing fatal happened."""
        return state.fatal is None

    def action(self, ctx: WorkerContext, state: ProcessingState) -> None:
        """Add to state.processed; raise to record a note."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__
