"""Why a force-ended session's fee was waived (--force-end-fee waive).

Commit b256f4c. Nullable: older sessions were never waived.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charging_sessions") as t:
        t.add_column(sa.Column("fee_waived_reason", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("charging_sessions") as t:
        t.drop_column("fee_waived_reason")
