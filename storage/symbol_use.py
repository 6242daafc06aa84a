"""Which uploaded debug files crashes still use: ``symbol_files.last_used_at``, kept to the day
by processing (workers/rules.SymbolUseRule), read by ``crashd symbols prune``; and how many
bytes each symbol store holds (its quota, server/ingest/symbols.py).

The unit is a module (debug_file, debug_id): its files live in one folder of the symbol store
and its caches in one folder of the cache, so it is used, kept and deleted whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import ColumnElement, Table, and_, delete, func, or_, select, update
from sqlalchemy.engine import Engine

from schemas.tables import SymbolFile
from storage.sessions import _utc

SYMBOL_FILES: Table = SymbolFile.__table__  # type: ignore[attr-defined]
RESOLUTION = timedelta(days=1)  # a module's last use is written at most once a day


@dataclass(frozen=True)
class UnusedModule:
    debug_file: str
    debug_id: str
    paths: tuple[str, ...]  # relative to the symbol store
    size: int
    last_used_at: datetime | None
    uploaded_at: datetime


def _module(debug_file: str, debug_id: str) -> ColumnElement[bool]:
    return and_(func.lower(SYMBOL_FILES.c.debug_file) == debug_file.lower(),
                SYMBOL_FILES.c.debug_id == debug_id.upper())


def mark_used(engine: Engine, *, modules: Iterable[tuple[str, str]], now: datetime) -> int:
    """Set last_used_at = now on the files of these (debug_file, debug_id) modules unless it
    was set within RESOLUTION (most crashes then write nothing). Returns the rows updated."""
    wanted = [_module(f, i) for f, i in sorted(set(modules)) if f and i]
    if not wanted:
        return 0
    stale = or_(SYMBOL_FILES.c.last_used_at.is_(None), SYMBOL_FILES.c.last_used_at < _utc(now) - RESOLUTION)
    with engine.begin() as conn:
        return conn.execute(update(SYMBOL_FILES).where(or_(*wanted), stale).values(last_used_at=_utc(now))).rowcount


def unused_modules(engine: Engine, *, before: datetime) -> list[UnusedModule]:
    """Modules whose files no crash has used since ``before`` and that were uploaded before it
    (a file uploaded yesterday for crashes to come is kept), oldest use first."""
    last_used = func.max(SYMBOL_FILES.c.last_used_at)
    uploaded = func.max(SYMBOL_FILES.c.uploaded_at)
    key = (SYMBOL_FILES.c.debug_file, SYMBOL_FILES.c.debug_id)
    stmt = (select(*key, last_used.label("last_used_at"), uploaded.label("uploaded_at"))
            .group_by(*key).having(func.coalesce(last_used, uploaded) < _utc(before), uploaded < _utc(before)))
    with engine.connect() as conn:
        found = conn.execute(stmt).all()
        out = []
        for row in found:
            files = conn.execute(select(SYMBOL_FILES.c.path, SYMBOL_FILES.c.size)
                                 .where(_module(row.debug_file, row.debug_id))).all()
            out.append(UnusedModule(row.debug_file, row.debug_id, tuple(f.path for f in files),
                                    sum(f.size for f in files), row.last_used_at, row.uploaded_at))
    return sorted(out, key=lambda m: (m.last_used_at or m.uploaded_at, m.debug_file, m.debug_id))


def store_bytes(engine: Engine, *, project_id: int | None) -> int:
    """Bytes of debug files in one symbol store: the project's, or the shared one (None)."""
    in_store = SYMBOL_FILES.c.project_id.is_(None) if project_id is None else SYMBOL_FILES.c.project_id == project_id
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(SYMBOL_FILES.c.size), 0)).where(in_store)).scalar_one())


def forget_module(engine: Engine, *, debug_file: str, debug_id: str) -> int:
    """Delete the module's symbol_files rows; returns how many."""
    with engine.begin() as conn:
        return conn.execute(delete(SYMBOL_FILES).where(_module(debug_file, debug_id))).rowcount
