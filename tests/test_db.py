"""Migrations build exactly the schema the SQLModel tables describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import schemas.tables  # noqa: F401
from schemas.settings import Settings
from storage.db import make_engine, migrate


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    url = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    engine = make_engine(Settings(data_dir=tmp_path, database_url=url))
    if url:
        with engine.begin() as conn:  # start from an empty schema
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    yield engine
    engine.dispose()


def test_migrations_match_models(engine) -> None:
    migrate(engine)
    migrate(engine)  # idempotent: a second start changes nothing
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert {"projects", "crashes", "attachments", "upload_fingerprints", "discard_counts"} <= set(
        inspect(engine).get_table_names())


def test_insert_rows_stores_what_sqlalchemys_insert_stores(engine) -> None:
    """storage/db.insert_rows (the uploads' executemany) against conn.execute(insert(...)): the
    same values read back, a datetime, a JSON dict, None and defaults of queries.crash_row included;
    a duplicate key is SQLAlchemy's IntegrityError either way."""
    from datetime import datetime, timezone

    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from storage import queries
    from storage.db import insert_rows

    migrate(engine)
    project = queries.create_project(engine, name="game")
    at = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=timezone.utc)

    def row(crash_id: str) -> dict:
        return queries.crash_row(crash_id=crash_id, project_id=project.id, received_at=at, updated_at=at,
                                 submitted_via="minidump", annotations_key="",
                                 annotations={"ver": "1.0", "名前": "é", "n": [1, None]}, hang_seconds=2.5,
                                 minidump_size=409600, build=None)

    with engine.begin() as conn:
        insert_rows(conn, queries.CRASHES, [row("raw-1"), row("raw-2")])
        conn.execute(insert(queries.CRASHES), [row("orm-1")])
    with engine.connect() as conn:
        stored = {r.crash_id: r._asdict() for r in conn.execute(queries.CRASHES.select())}
    assert set(stored) == {"raw-1", "raw-2", "orm-1"}
    for crash_id in ("raw-1", "raw-2"):
        assert {**stored[crash_id], "crash_id": "orm-1"} == stored["orm-1"]
    crash = queries.get_crash(engine, crash_id="raw-1")
    assert crash is not None and crash.annotations == {"ver": "1.0", "名前": "é", "n": [1, None]}
    assert crash.status == "received" and crash.attempts == 0 and crash.kind == "crash"
    assert crash.received_at.replace(tzinfo=timezone.utc) == at
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_rows(conn, queries.CRASHES, [row("raw-1")])
    with pytest.raises(TypeError, match="unknown columns \\['nonsense'\\]"):
        queries.crash_row(**{**row("x"), "nonsense": 1})
    with pytest.raises(TypeError, match="missing \\['crash_id'\\]"):
        queries.crash_row(**{k: v for k, v in row("x").items() if k != "crash_id"})


def test_rows_where_in_reads_what_sqlalchemys_select_reads(engine) -> None:
    """storage/db.rows_where_in (the group commit's fingerprint read) against
    conn.execute(select(...).where(...in_(...))): the same tuples, datetimes converted, keys
    that match nothing and a repeated key included."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from storage import queries
    from storage.db import insert_rows, rows_where_in

    migrate(engine)
    project = queries.create_project(engine, name="game")
    at = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=timezone.utc)
    table, names = queries.FINGERPRINTS, ("fingerprint", "crash_id", "created_at")
    with engine.begin() as conn:
        insert_rows(conn, queries.CRASHES, [queries.crash_row(
            crash_id=f"c{n}", project_id=project.id, received_at=at, updated_at=at, submitted_via="minidump",
            annotations_key="", annotations={}) for n in range(3)])
        insert_rows(conn, table, [{"fingerprint": f"f{n}", "crash_id": f"c{n}", "created_at": at + timedelta(seconds=n)}
                                  for n in range(3)])
    keys = ["f2", "nothing", "f0", "f2"]
    with engine.connect() as conn:
        raw = rows_where_in(conn, table, names, "fingerprint", keys)
        expected = [tuple(r) for r in conn.execute(select(*(table.c[n] for n in names))
                                                   .where(table.c.fingerprint.in_(keys)))]
        assert rows_where_in(conn, table, names, "fingerprint", []) == []
    assert sorted(raw) == sorted(expected) and len(raw) == 2
    assert {queries.as_utc(r[2]) for r in raw} == {at, at + timedelta(seconds=2)}
