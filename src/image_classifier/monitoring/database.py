"""The web app's database: SQLite by default, PostgreSQL when DATABASE_URL names one.

SQLAlchemy Core gives both one SQL dialect (named parameters, ON CONFLICT upserts) and a
connection pool. Every wait is bounded by one timeout: getting a pooled connection, opening
one (PostgreSQL's connect_timeout), each statement (statement_timeout) and SQLite's lock wait.
A database that cannot be reached raises DatabaseUnavailableError with the reason; callers decide
what that costs (docs/operations.md#database).

The schema is versioned (table schema_version) and upgraded at first use, inside one
transaction that holds a lock (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE), so
workers and app instances that start together apply each migration once.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

# The execution option that marks a connection of Database.read.
READ_ONLY = "image_classifier_read_only"
# Any constants: every app instance must take the same advisory locks.
_MIGRATION_LOCK = 0x1C1A55
FEEDBACK_LOCK = 0x1C1A56
# Dialect-specific column types in the migrations below.
_TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"},
    "postgresql": {
        "id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "blob": "BYTEA",
        "real": "DOUBLE PRECISION",
    },
}
# Append only: a deployed database has applied every entry up to its schema_version.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS predictions (
                model_version TEXT NOT NULL,
                label TEXT NOT NULL,
                bucket INTEGER NOT NULL,
                count BIGINT NOT NULL,
                PRIMARY KEY (model_version, label, bucket))""",
        ],
    ),
    (
        2,
        [
            """CREATE TABLE feedback (
                id {id},
                sha256 TEXT NOT NULL,
                label TEXT NOT NULL,
                image {blob} NOT NULL,
                predicted TEXT NOT NULL,
                probability {real} NOT NULL,
                model_version TEXT NOT NULL,
                created_at {real} NOT NULL,
                status TEXT NOT NULL DEFAULT 'pending',
                reviewed_at {real},
                size BIGINT NOT NULL,
                UNIQUE (sha256, label))""",
            "CREATE INDEX feedback_status ON feedback (status, id)",
            "CREATE INDEX feedback_created ON feedback (created_at)",
        ],
    ),
    (
        3,
        [
            # Predictions the detector called unknown ("none of these"), per model version;
            # each is also counted in `predictions` under its closest class. A table of its
            # own, so an app of an earlier release (a rollback) still writes `predictions`.
            """CREATE TABLE unknown_predictions (
                model_version TEXT NOT NULL PRIMARY KEY,
                count BIGINT NOT NULL)""",
        ],
    ),
]
# Every driver error counts: a count or a feedback item is never lost to an unexpected one.
UNAVAILABLE = (sa.exc.DBAPIError, sa.exc.TimeoutError, sa.exc.DisconnectionError, OSError)


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached, is too slow or refused; the message says why (for the
    log). `public` is the same without names, addresses or driver text, for anonymous clients."""

    def __init__(self, message: str, public: str = "the database is unavailable") -> None:
        super().__init__(message)
        self.public = public


def _public(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.TimeoutError):
        return "the database is busy (timed out waiting for a connection)"
    if "timeout" in str(exc).lower():
        return "the database timed out"
    return "the database is unavailable"


def engine_url(target: str) -> sa.URL:
    """A DATABASE_URL (postgres:// as Heroku writes it, or postgresql://) or a SQLite path."""
    for scheme in ("postgres://", "postgresql://"):
        if target.startswith(scheme):
            url = sa.make_url("postgresql://" + target[len(scheme) :])
            return url.set(drivername="postgresql+psycopg")
    if "://" in target:
        raise ValueError(
            f"unsupported database URL scheme in {target.split('://')[0]!r}://...: "
            "use postgres://, postgresql:// or a SQLite file path"
        )
    return sa.URL.create("sqlite", database=str(Path(target).absolute()))


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def safe_name(url: sa.URL) -> str:
    """The URL for logs: no password, also not one given as a query parameter."""
    query = {k: ("***" if "password" in k.lower() else v) for k, v in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True)


def app_database(database: str, url: str | None = None, file: str | Path | None = None) -> str:
    """Where the web app's database is, found the same way by the app and the CLIs: a URL or
    file given on the command line, else $DATABASE_URL, else $DRIFT_DB, else serve.database
    (`database`); '' means none."""
    if url:
        return url
    if file:
        return str(file)
    return os.environ.get("DATABASE_URL") or os.environ.get("DRIFT_DB", database)


class Database:
    def __init__(self, target: str, timeout_s: float = 2.0) -> None:
        self.url = engine_url(target)
        self.name = safe_name(self.url)
        self.dialect = self.url.get_backend_name()
        self.timeout_s = timeout_s
        self._migrated = False
        self._migrating = threading.Lock()
        if self.dialect == "sqlite":
            self.engine = sa.create_engine(
                self.url,
                pool_timeout=timeout_s,
                connect_args={"timeout": timeout_s, "check_same_thread": False},
            )
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            ms = int(timeout_s * 1000)
            self.engine = sa.create_engine(
                self.url,
                # Predictions never touch the database; the timer, feedback, review and drift
                # reads share 2 (+2 when busy) connections a worker: small plans allow few
                # (docs/deploy.md).
                pool_size=2,
                max_overflow=2,
                pool_timeout=timeout_s,
                pool_pre_ping=True,  # a restarted server's dead connections are replaced
                pool_recycle=1800,
                connect_args={
                    "connect_timeout": max(1, math.ceil(timeout_s)),
                    "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
                    "application_name": "image-classifier",
                },
            )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction on an up-to-date schema; DatabaseUnavailableError if not possible.
        SQLite takes its write lock at the start (see _sqlite_begin)."""
        self.ensure_schema()
        try:
            with self.engine.begin() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise self._error(exc) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads: one snapshot for all its statements, and on SQLite
        no write lock, so reads (drift, review) never wait for a writer or stop one."""
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except UNAVAILABLE as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> DatabaseUnavailableError:
        return DatabaseUnavailableError(f"{self.name}: {_reason(exc)}", _public(exc))

    def ensure_schema(self) -> None:
        if self._migrated:
            return
        # Bounded too: while one thread tries a database that is down, the others fail fast.
        if not self._migrating.acquire(timeout=self.timeout_s):
            raise DatabaseUnavailableError(f"{self.name}: still connecting", "the database is busy")
        try:
            if self._migrated:
                return
            try:
                if self.dialect == "sqlite":
                    Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
                with self.engine.begin() as conn:
                    migrate(conn)
            except UNAVAILABLE as exc:
                raise self._error(exc) from exc
            self._migrated = True
        finally:
            self._migrating.release()

    def close(self) -> None:
        self.engine.dispose()


def migrate(conn: Connection) -> int:
    """Apply the migrations this database lacks; return its schema version."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # Long enough for the other instances' migrations to finish first.
        conn.execute(sa.text("SET LOCAL statement_timeout = '60s'"))
        conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    conn.execute(sa.text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
    current = conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() or 0
    for version, statements in MIGRATIONS:
        if version <= current:
            continue
        for statement in statements:
            conn.execute(sa.text(statement.format(**_TYPES[dialect])))
        conn.execute(sa.text("INSERT INTO schema_version VALUES (:v)"), {"v": version})
        current = version
    return current


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Transactions are begun by _sqlite_begin, not by the sqlite3 module's implicit BEGIN.
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def _sqlite_begin(conn: Connection) -> None:
    # A transaction that writes takes the write lock at the start: two workers that read then
    # write (a migration, a bounded insert) never both read the old state. One that only
    # reads (Database.read) takes none: in WAL mode it reads its snapshot beside the writer.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
