"""Charge point passwords, the id tag list, and the open-transaction-per-tag index.

Commit 761d1cd (OCPP 1.6 security profiles 1 and 2, id tags).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "charge_point_passwords",
        sa.Column("charge_point_id", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_table(
        "id_tags",
        sa.Column("id_tag", sa.String(20), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expiry_date", _UTC),
        sa.Column("parent_id_tag", sa.String(20)),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    # ConcurrentTx: is this tag charging somewhere already?
    op.create_index("ix_transactions_tag_open", "transactions", ["id_tag", "stop_time"])


def downgrade() -> None:
    op.drop_index("ix_transactions_tag_open", table_name="transactions")
    op.drop_table("id_tags")
    op.drop_table("charge_point_passwords")
