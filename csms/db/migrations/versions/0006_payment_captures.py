"""The provider's capture of a paid session's fee when its session ends.

A reservation that charged ends with a capture of the session's fee (a cancel when the fee is
zero); due from provider_capture_due_at until provider_captured_at is set, retried like cancels.
A worker making a call (cancel or capture) holds it in provider_call_claimed_until.
Nullable: older reservations were never captured.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("payment_reservations") as t:
        t.add_column(sa.Column("provider_capture_amount", sa.String(40)))
        t.add_column(sa.Column("provider_capture_due_at", _UTC))
        t.add_column(sa.Column("provider_captured_at", _UTC))
        t.add_column(sa.Column("provider_capture_attempts", sa.Integer()))
        t.add_column(sa.Column("provider_call_claimed_until", _UTC))


def downgrade() -> None:
    with op.batch_alter_table("payment_reservations") as t:
        t.drop_column("provider_call_claimed_until")
        t.drop_column("provider_capture_attempts")
        t.drop_column("provider_captured_at")
        t.drop_column("provider_capture_due_at")
        t.drop_column("provider_capture_amount")
