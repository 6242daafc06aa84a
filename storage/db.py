"""Database engine and migrations. No engine exists until make_engine() is called."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Table, bindparam, event, text
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, ExceptionContext
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool
from sqlmodel import Session, create_engine

from schemas.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant: the PostgreSQL advisory lock held while migrating, so a server and
# workers starting together do not run the same migration twice.
MIGRATION_LOCK_ID = 0x63726173


def make_engine(settings: Settings, *, pooled: bool = True) -> Engine:
    """Create the SQLAlchemy engine for settings (SQLite file or PostgreSQL). pooled=False: a
    one-shot command's engine, whose PostgreSQL connections close when released (a pool left
    behind by a command run in-process would keep them open until it is collected)."""
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    pool: dict[str, Any] = ({"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20,
                             "pool_timeout": settings.db_pool_timeout_seconds} if pooled else {"poolclass": NullPool})
    engine = create_engine(url, connect_args=_postgres_args(settings), **pool)
    answer_timeout = settings.db_statement_timeout_seconds + ANSWER_GRACE_SECONDS

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Dialect, _record: ConnectionPoolEntry, cargs: tuple[Any, ...],
                 cparams: dict[str, Any]) -> DeadlineConnection:
        conn = DeadlineConnection.connect(*cargs, **cparams)
        conn.answer_timeout = answer_timeout
        return conn

    @event.listens_for(engine, "handle_error")
    def _forget_pool_when_hung(context: ExceptionContext) -> None:
        if isinstance(context.original_exception, NoAnswer):
            # Every pooled connection waits on the same hung server: without this each later
            # request would find one and wait answer_timeout again; now it waits to connect.
            engine.dispose()

    return engine


# How much longer than statement_timeout crashd waits for PostgreSQL's answer: the server's
# own cancel comes first when the server runs; this one when it is stopped or cut off.
ANSWER_GRACE_SECONDS = 1.0


def _postgres_args(settings: Settings) -> dict[str, object]:
    """libpq options bounding every wait on PostgreSQL (docs/deploy.md, timeouts). Keepalives
    and tcp_user_timeout find a peer that is gone (host down, cable cut); a server that is
    alive but stopped (SIGSTOP, swapping) still ACKs at the TCP level, which is why
    DeadlineConnection also bounds each wait itself."""
    statement_ms = int(settings.db_statement_timeout_seconds * 1000)
    return {
        "connect_timeout": settings.db_connect_timeout_seconds,
        "options": f"-c statement_timeout={statement_ms}",
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        "tcp_user_timeout": statement_ms + int(ANSWER_GRACE_SECONDS * 1000),
    }


class NoAnswer(psycopg.OperationalError):
    """PostgreSQL did not answer within the deadline (a hung server); the connection is closed."""


class DeadlineConnection(psycopg.Connection):
    """A psycopg connection that waits at most answer_timeout seconds for each answer of
    PostgreSQL (statement, commit, pre-ping). On expiry the connection is closed and
    psycopg.OperationalError raised: SQLAlchemy sees a disconnect and drops the connection
    from the pool (and the pool is renewed), and the request answers 503 (server/outages.py).

    Example: PostgreSQL under SIGSTOP accepts TCP and ACKs every byte but never answers;
    without this a pooled connection's ``SELECT 1`` waits forever."""

    answer_timeout: float | None = None  # set by make_engine's do_connect hook

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.answer_timeout
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.errors._WaitTimeout as exc:  # psycopg's own (private) class for it
            if self.closed:
                raise
            self.close()  # mid-statement: unusable; closed tells SQLAlchemy it is a disconnect
            raise NoAnswer(f"PostgreSQL did not answer within {kwargs['timeout']:g} s") from exc


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the web process read while the in-process worker writes; foreign keys are
    # off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def derived_data_writes(engine: Engine) -> None:
    """For the embedded default's worker process (workers/db_queue.py): its SQLite commits do
    not wait for an fsync (``synchronous=NORMAL``, safe with WAL: the database stays
    consistent). What it writes is derived from stored uploads, and the next commit of the
    web process, which keeps FULL, syncs the log with it. A power cut in between can only
    take back the last results, and their crashes are processed again (the sweeper). Without
    this the worker held SQLite's one write lock through an fsync per transaction, and the
    uploads waited for it. PostgreSQL: nothing changes."""
    if engine.dialect.name != "sqlite":
        return

    def _relaxed(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", _relaxed)
    engine.dispose()  # connections made before this have FULL


def alembic_config(engine: Engine) -> Config:
    """An Alembic Config pointing at our migrations, bound to engine."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (safe to call from several processes)."""
    config = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            _no_timeouts(conn)  # waiting for another process's migration, or a long one, is fine
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                conn.commit()
                conn.invalidate()  # closed, not pooled: it has no timeouts
    else:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def _no_timeouts(conn: Connection) -> None:
    """Lift statement_timeout and the answer deadline for this connection's session (the
    caller invalidates conn afterwards, so that it never goes back to the pool without them)."""
    conn.execute(text("SET statement_timeout = 0"))
    dbapi = conn.connection.dbapi_connection
    if isinstance(dbapi, DeadlineConnection):
        dbapi.answer_timeout = None


def dialect_insert(bind: Engine | Connection) -> Callable[[Table], postgresql.Insert | sqlite.Insert]:
    """The INSERT of bind's database (PostgreSQL's or SQLite's), which has ``on_conflict_do_*``."""
    return insert_of(bind.dialect.name)


def insert_of(dialect: str) -> Callable[[Table], postgresql.Insert | sqlite.Insert]:
    """dialect_insert by the dialect's name: for statements built once per database kind
    (an lru_cache keyed on the name)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@functools.lru_cache(maxsize=64)
def _row_insert(table: Table, names: tuple[str, ...], dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    """The INSERT of names into table as dialect's SQL text, and each name's bind processor
    (SQLAlchemy's own: a datetime as SQLite's text, a dict as JSON), in its parameters' order."""
    compiled = sa_insert(table).values({name: bindparam(name) for name in names}).compile(dialect=dialect)
    order = compiled.positiontup or list(names)
    processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order)
    return str(compiled), tuple(zip(order, processors, strict=True))


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows (dicts with the same keys) in one executemany of the driver. What
    ``conn.execute(insert(table), rows)`` does, without SQLAlchemy's statement cache and
    execution context per call, which cost an upload as much CPU as its three statements on
    SQLite (bench/ingest.py). Only for a positional driver (SQLite's ``?``): others get
    conn.execute. Errors are SQLAlchemy's (IntegrityError ...), as with conn.execute."""
    if not rows:
        return
    if conn.dialect.paramstyle != "qmark":
        conn.execute(sa_insert(table), rows)
        return
    sql, binds = _row_insert(table, tuple(rows[0]), conn.dialect)
    conn.exec_driver_sql(sql, [tuple(row[name] if process is None else process(row[name]) for name, process in binds)
                               for row in rows])


@functools.lru_cache(maxsize=64)
def _rows_where_in(table: Table, names: tuple[str, ...], key: str, dialect: Dialect,
                   count: int) -> tuple[str, tuple[Any, ...], Any]:
    """SELECT names FROM table WHERE key IN (count parameters) as dialect's SQL text, each
    name's result processor and key's bind processor (SQLAlchemy's own)."""
    sql = (f"SELECT {', '.join(dialect.identifier_preparer.quote(n) for n in names)} "
           f"FROM {dialect.identifier_preparer.format_table(table)} "
           f"WHERE {dialect.identifier_preparer.quote(key)} IN ({', '.join('?' * count)})")
    results = tuple(table.c[n].type.dialect_impl(dialect).result_processor(dialect, None) for n in names)
    return sql, results, table.c[key].type.dialect_impl(dialect).bind_processor(dialect)


def rows_where_in(conn: Connection, table: Table, names: tuple[str, ...], key: str,
                  keys: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The names columns of table's rows whose key is one of keys, as tuples: what
    ``conn.execute(select(...).where(column.in_(keys)))`` returns, converted as SQLAlchemy
    converts them (SQLite's datetime text -> datetime), with one statement of the driver (a
    positional one, SQLite's ``?``: others get conn.execute). For the upload's group
    commit, where SQLAlchemy's compile cache and result objects cost as much as the
    statement (bench/ingest.py)."""
    if not keys:
        return []
    if conn.dialect.paramstyle != "qmark":
        statement = sa_select(*(table.c[n] for n in names)).where(table.c[key].in_(keys))
        return [tuple(row) for row in conn.execute(statement)]
    sql, results, bind = _rows_where_in(table, names, key, conn.dialect, len(keys))
    rows = conn.exec_driver_sql(sql, tuple(keys if bind is None else map(bind, keys))).fetchall()
    return [tuple(value if process is None else process(value) for value, process in zip(row, results, strict=True))
            for row in rows]


def session(engine: Engine) -> Session:
    """A new Session; objects stay readable after commit."""
    return Session(engine, expire_on_commit=False)


_write_locks: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()
_write_locks_guard = threading.Lock()


def write_lock(engine: Engine) -> ContextManager[object]:
    """Hold around a hot write transaction (each upload's insert, the worker's claim): on
    SQLite one such transaction of a process at a time. SQLite lets one writer in and makes
    the others wait in its busy handler, which sleeps 1, 2, 5 ... 100 ms between tries: with
    16 uploads in flight those sleeps were the p99 (docs/benchmarks.md, Ingest). PostgreSQL
    needs no lock (a null context)."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    with _write_locks_guard:
        lock = _write_locks.get(engine)
        if lock is None:
            lock = _write_locks[engine] = threading.Lock()
    return lock


WRITE_LOCK_POLL_SECONDS = 0.001
BUSY_TIMEOUT_MS = 30000  # _sqlite_pragmas' busy_timeout
T = TypeVar("T")


def polling_for_the_write_lock(conn: Connection, work: Callable[[], T]) -> T:
    """work() in a transaction on conn; on SQLite, polled for the write lock every millisecond
    instead of sleeping in SQLite's busy handler, which waits 1, 2, 5 ... 100 ms between tries
    and so kept an upload's commit waiting up to 100 ms after the worker process let the lock
    go (the p99 of bench/ingest.py). An attempt that finds the database locked is rolled back
    and work() runs again; after 30 s the error is raised. PostgreSQL: one attempt."""
    if conn.dialect.name != "sqlite":
        with conn.begin():
            return work()
    _busy_timeout(conn, 0)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    try:
        while True:
            try:
                with conn.begin():
                    return work()
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(WRITE_LOCK_POLL_SECONDS)
    finally:
        _busy_timeout(conn, BUSY_TIMEOUT_MS)


def _busy_timeout(conn: Connection, milliseconds: int) -> None:
    """Set SQLite's busy timeout of conn through its driver connection: no transaction of
    SQLAlchemy begins for it (and none need end), which cost every batch of uploads two
    statements and two commits through SQLAlchemy."""
    conn.connection.driver_connection.execute(f"PRAGMA busy_timeout={int(milliseconds)}")  # type: ignore[union-attr]
