"""SQLModel tables. Breakpad words: crash_id, debug_file, debug_id, code_file, code_id."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now in UTC (every stored time is UTC)."""
    return datetime.now(timezone.utc)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class CrashStatus(str, Enum):
    """Where a crash is in the pipeline."""

    received = "received"
    processing = "processing"
    processed = "processed"
    failed = "failed"


class Project(SQLModel, table=True):
    """A product that uploads crashes; clients authenticate with its ingest key."""

    __tablename__ = "projects"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=100)
    ingest_key: str = Field(index=True, unique=True, max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class Crash(SQLModel, table=True):
    """One uploaded crash report (a minidump plus its annotations and attachments)."""

    __tablename__ = "crashes"

    crash_id: str = Field(primary_key=True, max_length=36)
    project_id: int = Field(foreign_key="projects.id", index=True)
    status: str = Field(default=CrashStatus.received.value, index=True, max_length=16)
    received_at: datetime = _ts(nullable=False, default=utcnow, index=True)
    updated_at: datetime = _ts(nullable=False, default=utcnow)
    processed_at: datetime | None = _ts(nullable=True)
    submitted_via: str = Field(max_length=16, description="`minidump` or `submit`")
    product: str | None = Field(default=None, max_length=200)
    build: str | None = Field(default=None, max_length=200, index=True)
    tester_id: str | None = Field(default=None, max_length=200, index=True)
    minidump_key: str = Field(max_length=300)
    minidump_size: int
    minidump_sha256: str = Field(max_length=64)
    annotations_key: str = Field(max_length=300)
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    processing_error: str | None = Field(default=None)
    processed: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Attachment(SQLModel, table=True):
    """A file part of an upload other than the minidump (logs, configs ...)."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("crash_id", "name", name="uq_attachment_crash_name"),)

    id: int | None = Field(default=None, primary_key=True)
    crash_id: str = Field(foreign_key="crashes.crash_id", index=True, max_length=36)
    name: str = Field(max_length=200, description="The form field name")
    filename: str | None = Field(default=None, max_length=300)
    content_type: str | None = Field(default=None, max_length=200)
    size: int
    sha256: str = Field(max_length=64)
    blob_key: str = Field(max_length=300)


class UploadFingerprint(SQLModel, table=True):
    """Deduplication of client retries: (project, client, dump sha256) -> first crash.

    The primary key makes concurrent duplicate uploads race on the database, not in Python.
    """

    __tablename__ = "upload_fingerprints"

    fingerprint: str = Field(primary_key=True, max_length=64)
    crash_id: str = Field(max_length=36)
    created_at: datetime = _ts(nullable=False, default=utcnow, index=True)


class DiscardCount(SQLModel, table=True):
    """How many uploads were rejected, per reason and UTC day."""

    __tablename__ = "discard_counts"

    reason: str = Field(primary_key=True, max_length=64)
    day: str = Field(primary_key=True, max_length=10)
    count: int = 0
