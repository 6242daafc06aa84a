"""A scratch PostgreSQL database for a benchmark: made fresh for each run, or kept between runs
(``--keep``) so a large seed is paid once."""

from __future__ import annotations

import psycopg


def open_scratch(postgres_url: str, database: str, keep: bool) -> bool:
    """Create database on the server at postgres_url (dropping an old one), unless keep and it
    exists. Returns whether it is fresh (and needs seeding)."""
    with psycopg.connect(f"{postgres_url}/postgres", autocommit=True) as admin:
        existing = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        fresh = not (existing and keep)
        if fresh:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{database}"')
    return fresh


def drop_scratch(postgres_url: str, database: str) -> None:
    """Drop database (its connections too)."""
    with psycopg.connect(f"{postgres_url}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
