"""Engines for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

__all__ = ["normalise_url", "make_engine", "create_schema", "redact", "CONNECT_TIMEOUT", "STATEMENT_TIMEOUT_MS"]

CONNECT_TIMEOUT = 5  # seconds
STATEMENT_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Accept the short spellings people type: postgres://, postgresql://."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    """An engine tuned for many small writes: SQLite in WAL mode with a busy timeout."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"timeout": 30, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if parsed.database and parsed.database != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns (the writer groups
            # commits, so the fsync is paid once per batch, not per message).
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # A hung or unreachable server turns into errors after a bounded wait (issue 11): connect within
    # CONNECT_TIMEOUT, each statement within STATEMENT_TIMEOUT_MS (a URL's own connect_timeout wins).
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                           pool_timeout=CONNECT_TIMEOUT * 2, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _pg_timeouts(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
        dbapi_conn.commit()

    return engine


def create_schema(engine: Engine, *, upgrade_older: bool = True) -> None:
    """Bring the database to this code's schema with its Alembic migrations (csms.db.schema.prepare):
    create an empty one, upgrade an older one, refuse a newer one (SchemaError)."""
    from .schema import prepare

    prepare(engine, upgrade_older=upgrade_older)
