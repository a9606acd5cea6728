"""OCPP 2.0.1 stations: which version a charge point speaks, and the station's own transaction ids.

A 2.0.1 station names its transactions (a string, `transactionId`); the CSMS keeps its own
integer id for every transaction (sessions, billing, REST) and the station's beside it, with the
last `seqNo` seen. A Started that carried no energy register takes its meterStart from the first
sample (`meter_start_missing` until then). Nullable: 1.6 transactions have none of these.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charge_points") as t:
        t.add_column(sa.Column("ocpp_version", sa.String(8)))
    with op.batch_alter_table("transactions") as t:
        t.add_column(sa.Column("station_tx_id", sa.String(64)))
        t.add_column(sa.Column("seq_no", sa.Integer()))
        t.add_column(sa.Column("meter_start_missing", sa.Boolean()))
    op.create_index("ix_transactions_station_tx", "transactions", ["charge_point_id", "station_tx_id"])


def downgrade() -> None:
    op.drop_index("ix_transactions_station_tx", table_name="transactions")
    with op.batch_alter_table("transactions") as t:
        t.drop_column("meter_start_missing")
        t.drop_column("seq_no")
        t.drop_column("station_tx_id")
    with op.batch_alter_table("charge_points") as t:
        t.drop_column("ocpp_version")
