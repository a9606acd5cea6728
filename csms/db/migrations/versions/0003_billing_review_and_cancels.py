"""Every kWh billed once: when a sample was received, bills to review, provider cancels.

Commit bf79d84. All columns nullable: existing rows read as "never" / "nothing to review" /
"no cancel due", which is what they were.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("transactions") as t:
        t.add_column(sa.Column("meter_seen_at", _UTC))
    with op.batch_alter_table("charging_sessions") as t:
        t.add_column(sa.Column("review_reason", sa.Text()))
    with op.batch_alter_table("payment_reservations") as t:
        t.add_column(sa.Column("provider_cancel_due_at", _UTC))
        t.add_column(sa.Column("provider_cancelled_at", _UTC))
        t.add_column(sa.Column("provider_cancel_attempts", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("payment_reservations") as t:
        t.drop_column("provider_cancel_attempts")
        t.drop_column("provider_cancelled_at")
        t.drop_column("provider_cancel_due_at")
    with op.batch_alter_table("charging_sessions") as t:
        t.drop_column("review_reason")
    with op.batch_alter_table("transactions") as t:
        t.drop_column("meter_seen_at")
