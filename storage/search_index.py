"""The searchable values of a crash (table ``crash_fields``, docs/search.md): which fields a
crash has, and writing them with its processing result.

A leaf of storage: the migration that created the table (0018) fills it with the same
``field_rows`` new crashes get. Every loop here is bounded: at most MAX_ANNOTATIONS
annotations and MAX_MODULES modules per crash, values cut to MAX_VALUE characters.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from schemas.tables import Crash, CrashField, FieldValue
from storage.db import insert_of

FIELDS: Table = CrashField.__table__  # type: ignore[attr-defined]
VALUES: Table = FieldValue.__table__  # type: ignore[attr-defined]
CRASHES: Table = Crash.__table__  # type: ignore[attr-defined]

ANNOTATION_PREFIX = "annotations."
MAX_ANNOTATIONS = 100  # keys of one crash that are searchable; the rest are stored, not indexed
MAX_MODULES = 64  # modules of the crashing thread's stack
MAX_KEY = 100 - len(ANNOTATION_PREFIX)
MAX_VALUE = 300
# Fields the row of a processed crash decides, and fields its summary (workers/rules.summarize) holds.
ROW_FIELDS = ("build", "tester_id", "kind", "signature", "platform", "component")
SUMMARY_FIELDS = {"os_version": "os_version", "cpu": "cpu_arch", "cpu_info": "cpu_info"}


def text_value(value: Any) -> str | None:
    """An annotation value as searched: strings as they are, numbers and booleans as JSON
    writes them (``true``, ``3``, ``1.5``); lists, objects and null are not searchable. Cut to
    MAX_VALUE characters; None for what is not indexed (also an empty string)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    text = text.replace("\x00", "")[:MAX_VALUE]
    return text or None


def _modules(processed: Mapping[str, Any]) -> Iterable[str]:
    names = processed.get("stack_modules")
    if not isinstance(names, list):  # crashes processed before stack_modules: the top frames'
        names = [f.get("module") for f in processed.get("top_frames") or [] if isinstance(f, dict)]
    return [n for n in names[:MAX_MODULES] if isinstance(n, str) and n]


def crash_fields(row: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(field, value) pairs of a crash row (its columns annotations, processed and ROW_FIELDS)."""
    pairs: set[tuple[str, str]] = set()
    annotations = row.get("annotations")
    if isinstance(annotations, dict):
        for key, value in list(annotations.items())[:MAX_ANNOTATIONS]:
            text = text_value(value)
            if text is not None and isinstance(key, str) and 0 < len(key) <= MAX_KEY:
                pairs.add((ANNOTATION_PREFIX + key, text))
    for field in ROW_FIELDS:
        text = text_value(row.get(field))
        if text is not None:
            pairs.add((field, text))
    processed = row.get("processed")
    if isinstance(processed, dict):
        for field, key in SUMMARY_FIELDS.items():
            text = text_value(processed.get(key))
            if text is not None:
                pairs.add((field, text))
        pairs.update(("module", text) for m in _modules(processed) if (text := text_value(m)) is not None)
    return pairs


def field_rows(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The crash_fields rows of a crash row (crash_fields plus its ids, group and received_at)."""
    return [{"crash_id": row["crash_id"], "project_id": row["project_id"], "received_at": row["received_at"],
             "group_id": row.get("group_id"), "field": field, "value": value}
            for field, value in sorted(crash_fields(row))]


def regrouped(conn: Connection, *, group_id: int, crash_ids: Any) -> None:
    """Crashes moved to group_id (storage/regroup.py): their crash_fields rows follow, in
    conn's transaction. crash_ids: a list or a subquery of crash ids."""
    conn.execute(update(FIELDS).where(FIELDS.c.crash_id.in_(crash_ids)).values(group_id=group_id))


_ONE_REGROUPED = update(FIELDS).where(FIELDS.c.crash_id == bindparam("of_crash")).values(
    group_id=bindparam("new_group_id", type_=FIELDS.c.group_id.type))


def crash_regrouped(conn: Connection, *, group_id: int, crash_id: str) -> None:
    """regrouped for one crash (storage/groups.place, for every processed crash): a statement
    built once, where building regrouped's UPDATE ... IN anew cost place() a third of its CPU."""
    conn.execute(_ONE_REGROUPED, {"of_crash": crash_id, "new_group_id": group_id})


# Built once: reindex runs for every processed crash, and building these statements (and
# SQLAlchemy's cache key walk over each new one) cost the worker more than running them.
_INDEXED_ROW = select(CRASHES.c.crash_id, CRASHES.c.project_id, CRASHES.c.received_at, CRASHES.c.group_id,
                      CRASHES.c.build, CRASHES.c.tester_id, CRASHES.c.kind, CRASHES.c.annotations,
                      CRASHES.c.processed, CRASHES.c.signature, CRASHES.c.platform,
                      CRASHES.c.component).where(CRASHES.c.crash_id == bindparam("of_crash"))
_UNINDEX = delete(FIELDS).where(FIELDS.c.crash_id == bindparam("of_crash"))
_INDEX = insert(FIELDS)


def reindex(conn: Connection, *, crash_id: str) -> int:
    """Replace a crash's crash_fields rows with what its row says now, in conn's transaction
    (called where its processing result is saved). Returns the number of rows written."""
    crash = conn.execute(_INDEXED_ROW, {"of_crash": crash_id}).first()
    conn.execute(_UNINDEX, {"of_crash": crash_id})
    if crash is None:
        return 0
    rows = field_rows(dict(crash._mapping))
    if rows:
        conn.execute(_INDEX, rows)
        add_values(conn, rows)
    return len(rows)


@functools.lru_cache(maxsize=4)
def _add_values(dialect: str) -> Any:
    return insert_of(dialect)(VALUES).on_conflict_do_nothing()


def add_values(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record the (project, field, value) of rows in field_values; those there already stay."""
    distinct = sorted({(r["project_id"], r["field"], r["value"]) for r in rows})  # one lock order for every writer
    conn.execute(_add_values(conn.dialect.name), [{"project_id": p, "field": f, "value": v} for p, f, v in distinct])
