"""Webhook events in the database: they survive a node and every node's events reach the receivers.

Until now each node queued its events in memory: a node's death lost them, and a charge point's online and
offline events were only its own node's. The outbox is written by every node and delivered by the duty holder.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("receiver", sa.String(300), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", "receiver", name="uq_webhook_outbox_event_receiver"),
    )
    op.create_index("ix_webhook_outbox_receiver_state", "webhook_outbox", ["receiver", "state", "id"])
    op.create_index("ix_webhook_outbox_created_at", "webhook_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_created_at", "webhook_outbox")
    op.drop_index("ix_webhook_outbox_receiver_state", "webhook_outbox")
    op.drop_table("webhook_outbox")
