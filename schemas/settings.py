"""One typed Settings object for every crashd process (server, worker, CLI).

Each field is read from the environment as ``CRASHD_<FIELD>`` (``CRASHD_DATA_DIR``,
``CRASHD_DATABASE_URL`` ...). Settings are built once at start-up and passed down; nothing
here runs at import time.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024

# Secrets that are obviously placeholders; refused outside development.
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "admin", "token", "dev"}

# The rules file shipped in the triage package (a path, so nothing is imported or read here).
DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "triage" / "rules.toml"
# The scrubbing rules shipped in the triage package (docs/privacy.md).
DEFAULT_SCRUB_RULES = Path(__file__).resolve().parent.parent / "triage" / "scrub_rules.toml"


class Settings(BaseSettings):
    """crashd configuration; every field can be set with ``CRASHD_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CRASHD_", extra="ignore")

    environment: str = Field(
        "development",
        description="`development` or `production`; production refuses placeholder secrets.",
    )
    data_dir: Path = Field(
        Path("./crashd-data"),
        description="Folder for the SQLite database (default) and the local blob store.",
    )
    blob_url: str | None = Field(
        None,
        description="Where blobs (dumps, attachments, processed reports; and uploaded symbol files when "
        "it is s3) are kept: `file:///path` (default `<data_dir>/blobs`) or `s3://bucket/prefix` on any "
        "S3-compatible store, with the usual AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION. "
        "With s3, web and worker processes on different machines share nothing but it, PostgreSQL and "
        "Redis (docs/deploy.md, scaling out).",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="An S3-compatible server's URL for an s3:// blob_url (MinIO, SeaweedFS, Garage, R2: "
        "`http://minio:9000`); unset: AWS S3 itself.",
    )
    s3_connect_timeout_seconds: float = Field(
        3.0, gt=0, description="Object store: give up opening a connection after this long."
    )
    s3_request_timeout_seconds: float = Field(
        30.0, gt=0, description="Object store: give up on one request (PUT, GET, HEAD, DELETE, a page of a "
        "listing) after this long, its body included: raise it when large dumps or symbol files cross a slow link."
    )
    s3_max_retries: int = Field(
        2, ge=0, description="Object store: retries of a request that failed for a reason worth retrying "
        "(a timeout, a refused connection, a 5xx)."
    )
    s3_retry_timeout_seconds: float = Field(
        5.0, gt=0, description="Object store: no retry starts later than this after a request's first attempt, "
        "so an upload meeting a store that is down is answered 503 within seconds."
    )
    cache_dir: Path | None = Field(
        None,
        description="Local folder where this process keeps copies of symbol files fetched from the "
        "object store and the symbol caches (SymCache, CFI index) built from them; default "
        "`<data_dir>/cache`. Only used when blob_url is s3.",
    )
    cache_max_bytes: int = Field(
        10 * 1024**3, gt=0,
        description="Size cap of cache_dir: past it the least recently used modules are deleted "
        "(and fetched again when a crash needs them).",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default `sqlite:///<data_dir>/crashd.db`. "
        "`postgresql://...` uses PostgreSQL through psycopg 3.",
    )
    redis_url: str | None = Field(
        None,
        description="Unset: an in-process worker runs jobs. Set: jobs go to RQ on this Redis "
        "and `crashd worker` runs them.",
    )
    queue_name: str = Field("crashd", description="RQ queue name.")
    admin_token: str | None = Field(
        None,
        description="Bearer token for the admin JSON API. In development a random one is "
        "created and kept in `<data_dir>/admin-token` when unset.",
    )
    session_secret: str | None = Field(
        None,
        description="Signs the dashboard's session cookie. In development a random one is created "
        "and kept in `<data_dir>/session-secret` when unset. In production it must be set "
        "(`crashd serve` refuses to start without it), not a placeholder, and 32+ characters.",
    )
    secure_cookies: bool | None = Field(
        None, description="Mark the session cookie `Secure` (sent over HTTPS only); unset: on in production."
    )
    auth_cache_seconds: float = Field(
        5.0, description="How long a user's or API token's lookup is remembered by the server: a "
        "deleted user, changed password or revoked token stops working after at most this long."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies whose `X-Forwarded-For` (client address) and `X-Forwarded-Proto` "
        "`crashd serve` believes: IP addresses or CIDRs, comma-separated or a JSON list, e.g. "
        "`127.0.0.1,10.0.0.0/8`. Empty: the header is ignored and the peer is the client (docs/auth.md).",
    )
    max_upload_bytes: int = Field(100 * MiB, description="Cap on the request body as sent.")
    max_decompressed_bytes: int = Field(
        500 * MiB, description="Cap on the body and on each part after decompression."
    )
    max_envelope_bytes: int = Field(
        100 * MiB, description="Cap on a Sentry envelope or /store/ body after decompression (it is "
        "held in memory whole; Relay's max_envelope_size)."
    )
    max_event_bytes: int = Field(
        1 * MiB, description="Cap on one JSON item of an envelope (an event, a session) and on a /store/ "
        "event after decompression (Relay's max_event_size): 413 too_large_event."
    )
    sentry_dsn: str | None = Field(
        None, description="When set, the server reports its own errors there with sentry-sdk."
    )
    dedupe_window_hours: int = Field(
        24, description="The same dump from the same client within this window is one crash."
    )
    sweeper_interval_seconds: float = Field(
        60.0, description="How often the sweeper looks for crashes stuck in `received`."
    )
    sweeper_stuck_after_seconds: float = Field(
        120.0, description="A crash `received` for longer than this is enqueued again."
    )
    job_timeout_seconds: int = Field(300, description="Time limit of one processing job.")
    max_attempts: int = Field(
        5, ge=1, description="Processing attempts a crash gets when they fail for an infrastructure "
        "reason (worker killed, job time limit, database, Redis or blob store unavailable); then it is "
        "`failed` with that reason. A bad dump is failed at once (docs/processing.md)."
    )
    retry_backoff_seconds: float = Field(
        30.0, ge=0, description="Wait before the first retry of such a failure; it doubles with each "
        "attempt (30 s, 1 min, 2 min, 4 min by default). The sweeper enqueues due retries."
    )
    orphan_blob_grace_seconds: float = Field(
        3600.0, gt=0, description="Blobs without a crash row (an upload killed before its 200) older than "
        "this are deleted by the sweeper, a batch per tick; so are symupload v2 uploads never completed "
        "(docs/symbols.md). Longer than storing one upload takes."
    )
    db_connect_timeout_seconds: int = Field(
        3, ge=2, description="PostgreSQL: give up opening a connection after this long (libpq "
        "`connect_timeout`, at least 2); the upload then gets 503 (docs/deploy.md, timeouts)."
    )
    db_statement_timeout_seconds: float = Field(
        5.0, gt=0, description="PostgreSQL: the server cancels a statement running longer "
        "(`statement_timeout`), and crashd gives up waiting for any answer 1 s after that, so a "
        "hung (stopped) server costs a request seconds, not minutes. Migrations are exempt."
    )
    db_pool_timeout_seconds: float = Field(
        5.0, gt=0, description="PostgreSQL: how long a request waits for a free pooled connection."
    )
    redis_socket_timeout_seconds: float = Field(
        2.0, gt=0, description="Redis: give up connecting, or waiting for an answer, after this "
        "long (enqueue, rate limits, sign-in throttle; `crashd worker`'s own blocking wait is not "
        "affected). An upload is still stored; the sweeper enqueues it later."
    )
    retention_days: float | None = Field(
        None, gt=0, description="Delete crashes (rows, minidumps, attachments, reports) and sessions older "
        "than this many days; the server's sweeper does it a batch per tick. Unset: keep everything. "
        "Groups and tickets are kept (docs/deploy.md, `crashd prune`)."
    )
    raw_dump_days: float = Field(
        30, ge=0, description="Delete a crash's raw minidump this many days after it was received, once "
        "it is processed (or failed); its processed report, row, group counts and attachments stay, and "
        "its page says the dump was deleted (Mozilla's rule: 30). 0: keep raw dumps as long as their "
        "crash (docs/privacy.md)."
    )
    symbol_retention_days: float | None = Field(
        None, gt=0, description="Delete uploaded debug files that no crash has used for this many days "
        "(and that were uploaded before then); the server's sweeper checks each tick. Unset: keep "
        "everything (docs/symbols.md, `crashd symbols prune`)."
    )
    rate_limit_per_minute: int = Field(
        0, description="Crash reports (envelopes, store and minidump requests) one project may send "
        "per minute; 0: no limit. Counted in Redis when CRASHD_REDIS_URL is set, else in process "
        "memory. Envelopes over it get 429 + Retry-After; minidumps get 200 and are dropped (docs/sentry.md)."
    )
    public_url: str | None = Field(
        None, description="Base URL clients use to reach the server, e.g. http://host:8000; the "
        "project DSNs and upload URLs are built from it (default: the address `crashd serve` listens on)."
    )
    symbol_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Upstream Breakpad symbol servers, asked in order after `<data_dir>/symbols`: "
        "`<url>/<debug_file>/<DEBUG_ID>/<name>.sym`. Comma-separated or a JSON list.",
    )
    symbol_miss_ttl_seconds: float = Field(
        3600.0, description="How long a symbol server's 404 is remembered before asking again."
    )
    symbol_quota_bytes: int = Field(
        20 * 1024**3, gt=0, description="Bytes of debug files one project's symbol store (and the shared "
        "store) may hold; an upload that would go past it gets 413 `symbol_quota_exceeded` (docs/symbols.md)."
    )
    webhook_url: str | None = Field(
        None, description="Ticket notifications: POST each ticket event as JSON to this URL "
        "(docs/notifications.md)."
    )
    jira_url: str | None = Field(
        None, description="Jira base URL (https://example.atlassian.net); with jira_project, "
        "ticket events become Jira issues and comments."
    )
    jira_user: str | None = Field(None, description="Jira user for basic auth (the account's e-mail on Cloud).")
    jira_token: str | None = Field(None, description="Jira API token (or password) for basic auth.")
    jira_project: str | None = Field(None, description="Key of the Jira project issues are created in, e.g. CRASH.")
    jira_issue_type: str = Field("Bug", description="Issue type name of created Jira issues.")
    jira_done_transition: str | None = Field(
        "Done", description="Jira transition (or target status) name applied when a ticket is "
        "resolved or verified; empty: none."
    )
    jira_reopen_transition: str | None = Field(
        "To Do", description="Jira transition (or target status) name applied when a ticket "
        "regresses; empty: none."
    )
    github_repo: str | None = Field(
        None, description="`owner/name`: ticket events become issues and comments in this GitHub repository."
    )
    github_token: str | None = Field(None, description="GitHub token with Issues read/write on github_repo.")
    github_api_url: str = Field(
        "https://api.github.com", description="GitHub REST API base (GitHub Enterprise: https://host/api/v3)."
    )
    discord_webhook_url: str | None = Field(
        None, description="Discord channel webhook URL: one message per ticket event."
    )
    patch_notes_webhook_url: str | None = Field(
        None, description="Releases (docs/releases.md): POST each release's patch notes (what was fixed, "
        "which testers hit it, whom to ask to retest) here as JSON, once per release; they also go to "
        "discord_webhook_url when that is set."
    )
    security_webhook_url: str | None = Field(
        None, description="Security reports (docs/security-reports.md): POST the full text of each "
        "restricted ticket's events here, and only here."
    )
    security_notify: Literal["minimal", "none"] = Field(
        "minimal", description="What the other backends (webhook, Jira, GitHub, Discord) hear of a "
        "restricted security ticket: `minimal` (\"restricted security report #N received\", no "
        "details) or `none` (nothing)."
    )
    notify_timeout_seconds: float = Field(
        10.0, description="Time limit of one HTTP request to a ticket backend."
    )
    rules_file: Path = Field(
        DEFAULT_RULES_FILE,
        description="Threshold rules that open and escalate tickets (TOML, docs/triage.md); "
        "default the packaged triage/rules.toml. serve and worker refuse to start when invalid.",
    )
    scrub_rules: Path = Field(
        DEFAULT_SCRUB_RULES,
        description="Scrubbing rules: secrets and personal data filtered out of annotations, events, "
        "text attachments and feedback before they are stored (TOML, docs/privacy.md); default the "
        "packaged triage/scrub_rules.toml. serve and worker refuse to start when invalid.",
    )
    verify_min_sessions: int = Field(
        200, description="Sessions the fixed build(s) need before a resolved ticket is verified by numbers."
    )
    facet_fields: str = Field(
        "annotations.gpu,annotations.driver_version,os_version,cpu,build",
        description="The fields whose top values a group page shows (comma list of search fields: "
        "built-ins such as `build`, `os_version`, `cpu`, or `annotations.<key>`; docs/search.md).",
    )
    p0_due_hours: float = Field(24.0, description="A P0 ticket is due this long after it opens.")
    p1_due_hours: float = Field(72.0, description="A P1 ticket is due this long after it opens (the next bundled update).")

    @field_validator("symbol_urls", mode="before")
    @classmethod
    def _split_symbol_urls(cls, value: object) -> object:
        """``CRASHD_SYMBOL_URLS`` is a JSON list or comma-separated URLs."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [url.strip() for url in text.split(",") if url.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> object:
        """``CRASHD_TRUSTED_PROXIES``: addresses or CIDRs (``10.0.0.1/8`` is read as
        ``10.0.0.0/8``), comma-separated or a JSON list; each written back in canonical form.
        Raises ValueError for anything else (``*`` included: list the proxies)."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [item for item in text.split(",") if item.strip()]
        if not isinstance(value, list):
            return value
        try:
            return [str(ipaddress.ip_network(str(item).strip(), strict=False)) for item in value]
        except ValueError as exc:
            raise ValueError(f"not an IP address or CIDR: {exc}") from None

    @field_validator("retention_days", "symbol_retention_days", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``CRASHD_RETENTION_DAYS=`` (empty) keeps everything, like leaving it unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        if value not in {"development", "production"}:
            raise ValueError("environment must be 'development' or 'production'")
        return value

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> "Settings":
        if self.environment == "production":
            if self.admin_token is None or self.admin_token.lower() in PLACEHOLDER_SECRETS:
                raise ValueError("CRASHD_ADMIN_TOKEN must be set to a real secret in production")
            if len(self.admin_token) < 16:
                raise ValueError("CRASHD_ADMIN_TOKEN must be at least 16 characters")
            if self.session_secret is not None and (
                self.session_secret.lower() in PLACEHOLDER_SECRETS or len(self.session_secret) < 32
            ):
                raise ValueError("CRASHD_SESSION_SECRET must be a real secret of at least 32 characters")
            for name in ("jira_token", "github_token"):  # unset is fine: that tracker is off
                value = getattr(self, name)
                if value is not None and value.strip().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"CRASHD_{name.upper()} is a placeholder ({value!r}): set the real token "
                                     "or unset it")
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL with the SQLite default filled in and postgres mapped to psycopg 3."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'crashd.db').resolve()}"
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def blob_dir(self) -> Path:
        """Root of the filesystem blob store."""
        return self.data_dir / "blobs"

    @property
    def blobs_on_s3(self) -> bool:
        """True when blob_url is an object store: symbol files go there too, and caches are
        local (cache_dir) rather than beside a shared symbols folder."""
        return bool(self.blob_url) and str(self.blob_url).startswith("s3://")

    @property
    def local_cache_dir(self) -> Path:
        """cache_dir, default ``<data_dir>/cache``."""
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    @property
    def symbols_dir(self) -> Path:
        """Uploaded symbols, Breakpad layout: ``<symbols_dir>/<debug_file>/<DEBUG_ID>/<file>``."""
        return self.data_dir / "symbols"

    @property
    def symbol_cache_dir(self) -> Path:
        """SymCaches and indexes built from debug files, and downloads from symbol servers."""
        return self.data_dir / "symcache"

    def resolve_admin_token(self) -> str:
        """Return the admin token, creating and keeping a random one in development.

        Raises ValueError in production when none is configured (the validator already
        refuses that, so this only guards direct construction).
        """
        if self.admin_token:
            return self.admin_token
        if self.environment != "development":
            raise ValueError("CRASHD_ADMIN_TOKEN is required outside development")
        path = self.data_dir / "admin-token"
        if path.exists():
            self.admin_token = path.read_text().strip()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            token = secrets.token_urlsafe(24)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(token + "\n")
            tmp.chmod(0o600)
            tmp.rename(path)
            self.admin_token = token
        return self.admin_token

    @property
    def cookies_secure(self) -> bool:
        """Whether the session cookie carries ``Secure``: the setting, else on in production."""
        return self.environment == "production" if self.secure_cookies is None else self.secure_cookies

    def resolve_session_secret(self) -> str:
        """Return the session cookie's signing secret, creating and keeping a random one in
        ``<data_dir>/session-secret`` in development.

        Raises ValueError outside development when none is configured (only the server needs
        it, so the validator leaves workers and the CLI alone).
        """
        if self.session_secret:
            return self.session_secret
        if self.environment != "development":
            raise ValueError("CRASHD_SESSION_SECRET is required outside development")
        self.session_secret = _kept_secret(self.data_dir / "session-secret", 32)
        return self.session_secret


def _kept_secret(path: Path, nbytes: int) -> str:
    """The secret stored at path, or a new random one written there (mode 0600, atomically)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(nbytes)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(secret + "\n")
    tmp.chmod(0o600)
    tmp.rename(path)
    return secret
