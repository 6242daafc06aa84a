"""SQLModel tables. Breakpad words: crash_id, debug_file, debug_id, code_file, code_id."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, String, UniqueConstraint
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
    # Reports a minute this project may send (server/ingest/ratelimit.py); None: CRASHD_RATE_LIMIT_PER_MINUTE.
    rate_limit_per_minute: int | None = Field(default=None)


class Crash(SQLModel, table=True):
    """One uploaded crash report (a minidump plus its annotations and attachments)."""

    __tablename__ = "crashes"
    __table_args__ = (  # the dashboard's (migration 0006): sparklines and a group's latest
        # crashes; crash reports and first crash per build from the index alone
        Index("ix_crashes_group_id_received_at", "group_id", "received_at"),
        Index("ix_crashes_project_id_build_received_at", "project_id", "build", "received_at"),
        # a project's latest crashes from the index alone (the search's sample for facets: migration 0018)
        Index("ix_crashes_project_id_received_at", "project_id", "received_at", "crash_id"),
    )

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
    # None for a Sentry event without a minidump (issue 7): its stack comes from event_key.
    minidump_key: str | None = Field(default=None, max_length=300)
    minidump_size: int | None = Field(default=None)
    minidump_sha256: str | None = Field(default=None, max_length=64)
    event_key: str | None = Field(default=None, max_length=300,
                                  description="The Sentry event JSON in the blob store (envelopes, store)")
    # The annotations document in the blob store of a crash stored before 2026-12-05; "" since:
    # the annotations are in this row only (writing the same JSON as a file as well cost an
    # upload a fifth of its CPU, docs/benchmarks.md, Ingest)
    annotations_key: str = Field(max_length=300)
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    processing_error: str | None = Field(default=None)
    # Processing attempts that ended in an infrastructure failure (worker killed, job time
    # limit, database, Redis or blob store) since the crash was last processed; at
    # CRASHD_MAX_ATTEMPTS the crash is `failed` (workers/retries.py, docs/processing.md).
    attempts: int = Field(default=0)
    retry_after: datetime | None = _ts(nullable=True)  # a retry waits in `received` until then
    processed: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    signature: str | None = Field(default=None, max_length=300)
    signature_version: str | None = Field(default=None, max_length=32)
    component: str | None = Field(default=None, max_length=50)
    reason_text: str | None = Field(default=None)
    platform: str | None = Field(default=None, max_length=50)
    group_id: int | None = Field(default=None, foreign_key="crash_groups.id", index=True)
    # What the event is (triage/kinds.py, decided at ingest): crash | hang | error | message;
    # and its Sentry level (fatal error warning info debug; a minidump's: fatal).
    kind: str = Field(default="crash", max_length=16, index=True)
    level: str | None = Field(default=None, max_length=16)
    # A hang report's (docs/hangs.md): how long the game was stuck, and which thread (its id or
    # name, as the watchdog's hang_thread annotation said).
    hang_seconds: float | None = Field(default=None)
    hang_thread: str | None = Field(default=None, max_length=200)


class Feedback(SQLModel, table=True):
    """A tester's report in words (docs/feedback.md): never a crash. Counted in a feedback group
    (a crash_groups row of kind ``feedback``, so rules, tickets and notifications work as for
    crashes; it never shows among crash groups nor counts in crash rates)."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_group_id_received_at", "group_id", "received_at"),
                      Index("ix_feedback_project_id_received_at", "project_id", "received_at"))

    id: str = Field(primary_key=True, max_length=36)
    project_id: int = Field(foreign_key="projects.id")
    group_id: int | None = Field(default=None, foreign_key="crash_groups.id")
    category: str = Field(max_length=16, index=True,
                          description="bug nar_output performance ui install login economy other")
    message: str
    text_key: str | None = Field(default=None, max_length=64, description="nar_output: the normalized line's key")
    tester_id: str | None = Field(default=None, max_length=200, index=True)
    build: str | None = Field(default=None, max_length=200, index=True)
    platform: str | None = Field(default=None, max_length=50)
    crash_id: str | None = Field(default=None, foreign_key="crashes.crash_id", max_length=36, index=True)
    event_id: str | None = Field(default=None, max_length=64, index=True,
                                 description="the Sentry event it is about (associated_event_id)")
    url: str | None = Field(default=None, max_length=500)
    source: str = Field(max_length=16, description="api | feedback (Sentry envelope item) | user_report")
    received_at: datetime = _ts(nullable=False, default=utcnow)
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON),
                                              description="[{name, filename, content_type, size, blob_key}]")


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
    (``path`` is relative to it; a project's store is under ``.projects/<id>/``): one row per
    path and content, the last upload's."""

    __tablename__ = "symbol_files"
    __table_args__ = (UniqueConstraint("path", "sha256", name="uq_symbol_file_path_content"),
                      Index("ix_symbol_files_uploaded_at", "uploaded_at"))

    id: int | None = Field(default=None, primary_key=True)
    project_id: int | None = Field(default=None, foreign_key="projects.id", index=True,
                                   description="The project whose store holds the file; None: the shared store")
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
    # When a crash last loaded this module's symbols (kept to the day); None: never yet.
    last_used_at: datetime | None = _ts(nullable=True)


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
    # The most severe kind of its crashes (crash > hang > error > message; triage/kinds.py).
    kind: str = Field(default="crash", max_length=16)
    # Set when a person merged this group into another (its crashes and signature went there).
    merged_into: int | None = Field(default=None, foreign_key="crash_groups.id")


class GroupRedirect(SQLModel, table=True):
    """A merge remembered as a rule: crashes of this (project, signature) are counted in
    group_id, whatever group the signature had (storage/regroup.py). Survives reprocessing;
    unmerge deletes it."""

    __tablename__ = "group_redirects"

    project_id: int = Field(foreign_key="projects.id", primary_key=True)
    signature: str = Field(primary_key=True, max_length=300)
    group_id: int = Field(foreign_key="crash_groups.id", index=True)
    actor: str = Field(max_length=200)
    created_at: datetime = _ts(nullable=False, default=utcnow)


class GroupMove(SQLModel, table=True):
    """How many crashes reprocessing moved from one group to another: a group's ticket
    follows the group that took most of its crashes (storage/regroup.py)."""

    __tablename__ = "group_moves"

    from_group_id: int = Field(foreign_key="crash_groups.id", primary_key=True)
    to_group_id: int = Field(foreign_key="crash_groups.id", primary_key=True)
    crash_count: int = 0


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
    __table_args__ = (Index("ix_group_builds_build_group_id", "build", "group_id"),)  # a build's groups

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
    __table_args__ = (Index("ix_crash_missing_symbols_module", "debug_file", "debug_id"),)

    crash_id: str = Field(foreign_key="crashes.crash_id", primary_key=True, max_length=36)
    debug_file: str = Field(primary_key=True, max_length=300)
    debug_id: str = Field(primary_key=True, max_length=64, index=True)


class CrashField(SQLModel, table=True):
    """A searchable value of a crash (docs/search.md): an annotation (``annotations.gpu``), or a
    field the walk found (``os_version``, ``cpu``, ``module``: one row per module in the
    crashing thread's stack) or processing decided (``signature``, ``platform``,
    ``component``, ``build``, ``tester_id``, ``kind``). Written with the crash's processing
    result (storage/search_index.py). received_at and group_id are the crash's, so a search
    pages newest first, and finds a group's values, from an index alone."""

    __tablename__ = "crash_fields"
    # A search reads one range of ix_crash_fields_search and nothing else (index-only: it holds
    # every column); a group's crashes, newest first, and its values are ix_crash_fields_group.
    __table_args__ = (Index("ix_crash_fields_search", "project_id", "field", "value", "received_at", "crash_id",
                            "group_id"),
                      Index("ix_crash_fields_group", "group_id", "field", "received_at", "crash_id", "project_id", "value"))

    crash_id: str = Field(foreign_key="crashes.crash_id", primary_key=True, max_length=36)
    field: str = Field(primary_key=True, max_length=100)
    # Byte order on PostgreSQL ("C"), as SQLite's BINARY: a prefix is a range of the index.
    value: str = Field(sa_column=Column(String(300).with_variant(String(300, collation="C"), "postgresql"),
                                        primary_key=True))
    project_id: int = Field(foreign_key="projects.id")
    received_at: datetime = _ts(nullable=False)
    group_id: int | None = Field(default=None, description="the crash's group, kept with crashes.group_id")


class FieldValue(SQLModel, table=True):
    """The distinct values of each searchable field of a project (docs/search.md): where a
    substring search (``signature=~nar``) finds its values before it reads crash_fields, and
    the search page's suggestions. Added to with crash_fields; never shrinks (a value no crash
    has any more finds nothing)."""

    __tablename__ = "field_values"

    project_id: int = Field(foreign_key="projects.id", primary_key=True)
    field: str = Field(primary_key=True, max_length=100)
    value: str = Field(sa_column=Column(String(300).with_variant(String(300, collation="C"), "postgresql"),
                                        primary_key=True))


class GameSession(SQLModel, table=True):
    """A play session reported by the client: the denominator of crash rates. Idempotent on
    session_id: a later report updates status and duration."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_project_id_build_status", "project_id", "build", "status"),)

    session_id: str = Field(primary_key=True, max_length=100)
    project_id: int = Field(foreign_key="projects.id", index=True)
    tester_id: str | None = Field(default=None, max_length=200, index=True)
    build: str | None = Field(default=None, max_length=200, index=True)
    started: datetime = _ts(nullable=False, index=True)
    duration: float | None = None
    status: str = Field(max_length=16, description="ok | exited | crashed | abnormal")
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class TicketState(str, Enum):
    """A ticket's life: open -> resolved (fixed_in) -> verified; regressed reopens it."""

    open = "open"
    resolved = "resolved"
    verified = "verified"
    regressed = "regressed"
    wontfix = "wontfix"
    duplicate = "duplicate"


class Ticket(SQLModel, table=True):
    """The triage ticket of a crash group. At most one per group (a database constraint):
    escalation, regression and reopening change this one ticket. A ticket merged into
    another when their groups became one bug (storage/regroup.py) lets go of its group
    (group_id None) and names the ticket it went into (merged_into)."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("group_id", name="uq_ticket_group"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    group_id: int | None = Field(default=None, foreign_key="crash_groups.id")
    merged_into: int | None = Field(default=None, foreign_key="tickets.id")
    # A security report's ticket (no group): seen only by the project's security grantees and
    # global admins; its notifications carry no details (docs/security-reports.md).
    restricted: bool = Field(default=False, index=True)
    priority: str = Field(max_length=4, description="P0 | P1")
    state: str = Field(default=TicketState.open.value, max_length=16, index=True)
    title: str = Field(max_length=400)
    reason_text: str | None = None
    rule: str = Field(max_length=100, description="the threshold rule that opened or last escalated it")
    testers_at_firing: int = 0
    crashes_at_firing: int = 0
    builds_at_firing: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    due_at: datetime = _ts(nullable=False, index=True)
    fixed_in: str | None = Field(default=None, max_length=200)
    external_key: str | None = Field(default=None, max_length=200)
    external_url: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class TicketEvent(SQLModel, table=True):
    """One change of a ticket: who or what made it, and the numbers behind it."""

    __tablename__ = "ticket_events"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    at: datetime = _ts(nullable=False, default=utcnow)
    actor: str = Field(max_length=200, description="rule:<name>, user:<name>, system:verification ...")
    action: str = Field(max_length=32,
                        description="opened escalated resolved verified rejected regressed reopened wontfix duplicate")
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Notification(SQLModel, table=True):
    """Outbox: a ticket event to deliver to one tracker/chat backend. Written in the same
    transaction as the ticket change, delivered by a queue job with retries, never lost."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    event: str = Field(max_length=32, description="opened | escalated | resolved | verified | regressed")
    backend: str = Field(max_length=32, description="webhook | jira | github | discord")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default="pending", max_length=16, index=True, description="pending | sent | failed")
    attempts: int = 0
    next_attempt_at: datetime = _ts(nullable=False, default=utcnow, index=True)
    last_error: str | None = None
    created_at: datetime = _ts(nullable=False, default=utcnow)
    sent_at: datetime | None = _ts(nullable=True)


class UserRole(str, Enum):
    """What a signed-in user or API token may do: admins read and change, viewers read."""

    admin = "admin"
    viewer = "viewer"


class User(SQLModel, table=True):
    """A dashboard user (`crashd user create`). Only an Argon2id hash of the password is kept;
    a session cookie names the user and a fingerprint of this hash, so a changed password or a
    deleted user ends every session."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=100)
    role: str = Field(max_length=16, description="admin | viewer")
    password_hash: str = Field(max_length=200, description="Argon2id, PHC string form ($argon2id$...)")
    created_at: datetime = _ts(nullable=False, default=utcnow)
    last_login_at: datetime | None = _ts(nullable=True)


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API (`crashd token create`). The token is shown once; only
    its SHA-256 is kept (it is 256 random bits, so a slow hash adds nothing)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=100)
    role: str = Field(max_length=16, description="admin | viewer | uploader")
    token_sha256: str = Field(index=True, unique=True, max_length=64)
    project_id: int | None = Field(
        default=None, foreign_key="projects.id", description="The one project an uploader token may upload symbols to"
    )
    created_at: datetime = _ts(nullable=False, default=utcnow)


class ProjectGrant(SQLModel, table=True):
    """A user's or an API token's role in one project (docs/auth.md): ``viewer`` reads,
    ``triager`` also acts on tickets, merges groups and reprocesses, ``admin`` does everything
    in the project (its tokens too). ``security`` lets them see the project's restricted
    security reports. A global admin (users.role / api_tokens.role ``admin``) needs no grant."""

    __tablename__ = "project_grants"
    __table_args__ = (UniqueConstraint("project_id", "user_name", name="uq_grant_project_user"),
                      UniqueConstraint("project_id", "token_id", name="uq_grant_project_token"))

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    user_name: str | None = Field(default=None, max_length=100, index=True)
    token_id: int | None = Field(default=None, foreign_key="api_tokens.id", index=True)
    role: str = Field(max_length=16, description="viewer | triager | admin")
    security: bool = False
    created_at: datetime = _ts(nullable=False, default=utcnow)


class SecurityReport(SQLModel, table=True):
    """A tester's report of a vulnerability (docs/security-reports.md): it opens a restricted
    P0 ticket at once; only the project's security grantees and global admins see it."""

    __tablename__ = "security_reports"

    id: str = Field(primary_key=True, max_length=36)
    project_id: int = Field(foreign_key="projects.id", index=True)
    ticket_id: int | None = Field(default=None, foreign_key="tickets.id", index=True)
    summary: str = Field(max_length=500)
    details: str = ""
    tester_id: str | None = Field(default=None, max_length=200)
    build: str | None = Field(default=None, max_length=200)
    source: str = Field(max_length=16, description="api | feedback (a Sentry feedback item of category security)")
    received_at: datetime = _ts(nullable=False, default=utcnow)
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))


class Release(SQLModel, table=True):
    """A build deployed to an environment (docs/releases.md): posted by CI (`crashd release
    deploy`, POST /api/<project>/releases/), once per (project, version, environment). Its
    commits may resolve tickets (``fixes crashd#12``); its patch notes go out once."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("project_id", "version", "environment", name="uq_release"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", index=True)
    version: str = Field(max_length=200, index=True)
    environment: str = Field(max_length=50)
    deployed_at: datetime = _ts(nullable=False, index=True)
    url: str | None = Field(default=None, max_length=500)
    commits: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    patch_notes_sent_at: datetime | None = _ts(nullable=True)


class WebSession(SQLModel, table=True):
    """A dashboard sign-in (storage/web_sessions.py). The cookie holds a random session id;
    only its SHA-256 is kept here, so sign-out, a new password or a deleted user can end every
    copy of the cookie at once (``revoked_at``)."""

    __tablename__ = "web_sessions"

    id_sha256: str = Field(primary_key=True, max_length=64)
    user_name: str = Field(index=True, max_length=100)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    expires_at: datetime = _ts(nullable=False, index=True)
    revoked_at: datetime | None = _ts(nullable=True)
