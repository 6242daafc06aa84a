"""SQLModel tables. Breakpad words: crash_id, debug_file, debug_id, code_file, code_id."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, UniqueConstraint
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
    signature: str | None = Field(default=None, max_length=300)
    signature_version: str | None = Field(default=None, max_length=32)
    component: str | None = Field(default=None, max_length=50)
    reason_text: str | None = Field(default=None)
    platform: str | None = Field(default=None, max_length=50)
    group_id: int | None = Field(default=None, foreign_key="crash_groups.id", index=True)


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


class SymbolFile(SQLModel, table=True):
    """A debug file stored under ``settings.symbols_dir`` in the Breakpad layout
    (``path`` is relative to it): one row per module and content, the last upload's."""

    __tablename__ = "symbol_files"
    __table_args__ = (UniqueConstraint("debug_file", "debug_id", "sha256", name="uq_symbol_file_content"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int | None = Field(default=None, foreign_key="projects.id", index=True,
                                   description="The uploader's project; None for the admin token")
    debug_file: str = Field(max_length=300)
    debug_id: str = Field(max_length=64, index=True, description="Breakpad form, upper case")
    code_file: str | None = Field(default=None, max_length=300)
    code_id: str | None = Field(default=None, max_length=200)
    os: str | None = Field(default=None, max_length=50)
    cpu: str | None = Field(default=None, max_length=50)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    path: str = Field(max_length=1000)
    uploaded_at: datetime = _ts(nullable=False, default=utcnow)


class CrashGroup(SQLModel, table=True):
    """All crashes of one project with one signature. Counts are kept by atomic upserts
    (storage/groups.py), exact under concurrent workers."""

    __tablename__ = "crash_groups"
    __table_args__ = (UniqueConstraint("project_id", "signature", name="uq_group_signature"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    signature: str = Field(max_length=300)
    signature_version: str | None = Field(default=None, max_length=32)
    component: str | None = Field(default=None, max_length=50, index=True)
    reason_text: str | None = Field(default=None)
    first_seen: datetime = _ts(nullable=False)
    last_seen: datetime = _ts(nullable=False, index=True)
    crash_count: int = 0
    tester_count: int = 0


class GroupTester(SQLModel, table=True):
    """A tester who hit a group, with how often (a row exists while crash_count > 0)."""

    __tablename__ = "group_testers"

    group_id: int = Field(foreign_key="crash_groups.id", primary_key=True)
    tester_id: str = Field(primary_key=True, max_length=200)
    crash_count: int = 0
    first_seen: datetime = _ts(nullable=False)
    last_seen: datetime = _ts(nullable=False)


class GroupBuild(SQLModel, table=True):
    """Crashes of a group per build (`""` when the client sent no version)."""

    __tablename__ = "group_builds"

    group_id: int = Field(foreign_key="crash_groups.id", primary_key=True)
    build: str = Field(primary_key=True, max_length=200)
    crash_count: int = 0
    first_seen: datetime = _ts(nullable=False)
    last_seen: datetime = _ts(nullable=False)


class GroupPlatform(SQLModel, table=True):
    """Crashes of a group per platform (the OS name from the dump)."""

    __tablename__ = "group_platforms"

    group_id: int = Field(foreign_key="crash_groups.id", primary_key=True)
    platform: str = Field(primary_key=True, max_length=50)
    crash_count: int = 0


class CrashMissingSymbols(SQLModel, table=True):
    """Modules of a crash's crashing thread whose symbols were missing when it was
    processed: when they arrive, the crash is reprocessed by itself."""

    __tablename__ = "crash_missing_symbols"

    crash_id: str = Field(foreign_key="crashes.crash_id", primary_key=True, max_length=36)
    debug_file: str = Field(primary_key=True, max_length=300)
    debug_id: str = Field(primary_key=True, max_length=64, index=True)
