"""The ConcurrentTx check by the tag's match key: an index on upper(id_tag) of open transactions.

The check compared the spellings of a start's idTag (as given, upper- and lower-case) with the open
transactions' id_tag, so a transaction opened as "GoodTag" hid from a "GOODTAG" start elsewhere: one listed
tag charged twice. It now compares `upper(id_tag)` with `csms.core.id_tags.match_key`; this partial
expression index keeps that a look-up on SQLite and PostgreSQL alike.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_OPEN = sa.text("stop_time IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_transactions_tag_key_open",
        "transactions",
        [sa.text("upper(id_tag)")],
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_tag_key_open", table_name="transactions")
