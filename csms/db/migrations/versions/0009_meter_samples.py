"""Kept energy samples of transactions, for the console's meter charts.

Until now a transaction kept only its latest sample (latest_meter_wh/latest_meter_at). The console
charts energy over time, so the CSMS keeps at most one sample per transaction per
`--meter-sample-seconds` (`csms.core.meter_samples`), with the power sampled beside it when the
charger sends one. Keyed by (transaction, the sample's own stamp): the rows of one transaction are
read in order, and pruned with their transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_samples",
        sa.Column("transaction_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("w", sa.BigInteger()),
    )


def downgrade() -> None:
    op.drop_table("meter_samples")
