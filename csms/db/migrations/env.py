"""Alembic's environment: run migrations on the connection csms.db.schema hands over.

No alembic.ini: csms.db.schema.alembic_config builds the Config, and normally passes an open
connection in config.attributes["connection"] (inside its lock and transaction). A bare URL in
sqlalchemy.url also works, for `alembic` used by hand with a Config made by that function.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from csms.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kw) -> None:
    dialect = kw["connection"].dialect.name if "connection" in kw else kw["url"].split(":", 1)[0]
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=dialect.startswith("sqlite"),  # SQLite alters tables by copy-and-move
        compare_type=True,
        # Every pending revision in one transaction with the alembic_version update: all or nothing.
        # SQLite runs DDL in a transaction once the driver stops autocommitting it (our connections
        # come from csms.db.engine.make_migration_engine); Alembic assumes it does not unless told.
        # With csms.db.schema's connection the transaction is already open and Alembic joins it.
        transactional_ddl=True,
        transaction_per_migration=False,
        **kw,
    )


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    if context.is_offline_mode():  # `--sql`: print the DDL instead of running it
        _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from csms.db.engine import make_engine, make_migration_engine

    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError(
            "no connection in config.attributes and no sqlalchemy.url: make the Config with "
            "csms.db.schema.alembic_config(connection or url=...)"
        )
    engine = make_migration_engine(url) or make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


run_migrations()
