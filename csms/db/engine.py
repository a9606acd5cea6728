"""Engines for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["normalise_url", "make_engine", "make_migration_engine", "redact", "CONNECT_TIMEOUT", "STATEMENT_TIMEOUT_MS"]

CONNECT_TIMEOUT = 5  # seconds
STATEMENT_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Accept the short spellings people type: postgres://, postgresql://."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(url: str) -> Any:
    """The connect hook every SQLite connection of csms runs (the hot path's and the migrations')."""
    parsed = make_url(url)

    def set_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if parsed.database and parsed.database != ":memory:":
            cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns (the writer groups
        # commits, so the fsync is paid once per batch, not per message).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return set_pragmas


def _private_file(path: str | None) -> None:
    """A new SQLite file is readable by its owner only (0600): it holds password hashes and tokens' names."""
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    """An engine tuned for many small writes: SQLite in WAL mode with a busy timeout."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _private_file(parsed.database)
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas(url))
        return engine
    # A hung or unreachable server turns into errors after a bounded wait: connect within
    # CONNECT_TIMEOUT, each statement within STATEMENT_TIMEOUT_MS (a URL's own connect_timeout wins).
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=CONNECT_TIMEOUT * 2,
        connect_args=connect_args,
    )

    @event.listens_for(engine, "connect")
    def _pg_timeouts(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
        dbapi_conn.commit()

    return engine


def make_migration_engine(url: str) -> Engine | None:
    """A one-connection SQLite engine whose transactions include DDL, for schema migrations only;
    None where the hot-path engine already has them (PostgreSQL) or a second engine would see
    another database (an in-memory SQLite).

    pysqlite (legacy transaction control, Python < 3.16) begins a transaction only before DML, so
    each CREATE/ALTER/DROP of a migration commits on its own: a migration that fails halfway left
    columns behind while alembic_version named the revision before, and the next start failed on
    "duplicate column name". SQLAlchemy's documented recipe ("Using SQLAlchemy to emit BEGIN in lieu
    of SQLite's transaction control"): the driver never BEGINs (isolation_level None), SQLAlchemy's
    begin event does. BEGIN IMMEDIATE takes the write lock up front: the version check and the
    upgrade are one step, as under PostgreSQL's advisory lock, and a second process starting at
    once waits (busy_timeout) instead of failing on a stale snapshot. Not for the hot path: it
    would make every read a transaction holding a WAL snapshot, and the group-commit writer and the
    readers are tuned for today's driver behaviour.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    _private_file(parsed.database)
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas(url))

    @event.listens_for(engine, "connect")
    def _driver_never_begins(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # sqlite3 still sends COMMIT/ROLLBACK on commit()/rollback()

    @event.listens_for(engine, "begin")
    def _begin_with_the_write_lock(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
