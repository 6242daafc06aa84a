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
