"""Group commit on SQLite: uploads that arrive while one transaction commits share the next.

SQLite has one writer at a time, and each commit waits for its fsync. With 16 uploads in
flight every insert waited for the others' commits in turn; here the thread that gets the
write lock (storage/db.write_lock) commits its own insert and every insert queued behind it
in one transaction, one fsync, and each waiting thread gets its own answer (a leader/follower
scheme, as PostgreSQL's WAL writer or a database's group commit does). Every upload is still
committed before it is answered.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from storage.db import write_lock

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass
class _Waiting(Generic[Item, Answer]):
    item: Item
    done: bool = False
    answer: Any = None
    error: BaseException | None = None


class GroupCommitter(Generic[Item, Answer]):
    """Runs batches of items through write(conn, items) -> answers (one transaction per
    batch). conn is the committer's own connection, held between batches and used by one
    batch at a time: a connection from the pool for each batch found its page cache stale
    (another pooled connection had written since) and read the pages of the crashes table's
    indexes again, and the pool's checkout and reset cost a batch two more round trips
    (bench/ingest.py). A batch that raises gives it up, and so does the engine's dispose(),
    which closes its files; the next batch connects again. The committer refers to its
    engine weakly."""

    def __init__(self, engine: Engine, write: Callable[[Connection, Sequence[Item]], list[Answer]]) -> None:
        self._engine = weakref.ref(engine)
        event.listen(engine, "engine_disposed", self._release)
        self.lock = write_lock(engine)
        self.write = write
        self._queued: list[_Waiting[Item, Answer]] = []
        self._guard = threading.Lock()
        self._conn: Connection | None = None

    def _write(self, items: Sequence[Item]) -> list[Answer]:
        """write(conn, items) on the held connection (under self.lock)."""
        if self._conn is None or self._conn.closed:
            engine = self._engine()
            assert engine is not None, "a committer outlived its engine"  # its caller holds the engine
            self._conn = engine.connect()
        try:
            return self.write(self._conn, items)
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing what failed: the first error counts
                conn.close()

    def _release(self, _engine: Engine) -> None:
        """The engine was disposed: close the held connection (between batches)."""
        with self.lock:
            self._drop()

    def submit(self, item: Item) -> Answer:
        """Write item (with whatever else is queued) and return its answer, or raise what
        writing its batch raised."""
        waiting: _Waiting[Item, Answer] = _Waiting(item)
        with self._guard:
            self._queued.append(waiting)
        with self.lock:
            if not waiting.done:  # nobody took it: this thread writes the queue
                with self._guard:
                    batch, self._queued = self._queued, []
                try:
                    answers = self._write([w.item for w in batch])
                except BaseException as exc:  # noqa: BLE001 - each waiting thread raises it
                    for w in batch:
                        w.done, w.error = True, exc
                else:
                    for w, given in zip(batch, answers, strict=True):
                        w.done, w.answer = True, given
        if waiting.error is not None:
            raise waiting.error
        answer: Answer = waiting.answer
        return answer


_committers: "weakref.WeakKeyDictionary[Engine, dict[str, GroupCommitter[Any, Any]]]" = weakref.WeakKeyDictionary()
_committers_guard = threading.Lock()


def committer(engine: Engine, name: str,
              write: Callable[[Connection, Sequence[Item]], list[Answer]]) -> GroupCommitter[Item, Answer]:
    """The engine's GroupCommitter called name (made with write on first use)."""
    with _committers_guard:
        named = _committers.setdefault(engine, {})
        if name not in named:
            named[name] = GroupCommitter(engine, write)
        return named[name]
