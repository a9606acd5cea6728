"""Cluster mode (`csms serve --node-id`): node leases, presence, forwarded calls.

Used only by nodes of a cluster (PostgreSQL); a single node leaves them empty.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(40), primary_key=True),
        sa.Column("started_at", _UTC, nullable=False),
        sa.Column("heartbeat_at", _UTC, nullable=False),
        sa.Column("lease_until", _UTC, nullable=False),
    )
    op.create_table(
        "cluster_presence",
        sa.Column("charge_point_id", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(40), nullable=False),
        sa.Column("connected_at", _UTC, nullable=False),
        sa.Column("last_seen", _UTC, nullable=False),
        sa.Column("connectors", sa.JSON()),
        sa.Column("gone", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_index("ix_cluster_presence_node_id", "cluster_presence", ["node_id"])
    op.create_index("ix_cluster_presence_updated_at", "cluster_presence", ["updated_at"])
    op.create_table(
        "cluster_calls",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("origin_node", sa.String(40), nullable=False),
        sa.Column("target_node", sa.String(40), nullable=False),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON()),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("answer", sa.JSON()),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("answered_at", _UTC),
    )
    op.create_index("ix_cluster_calls_target_node", "cluster_calls", ["target_node"])
    op.create_index("ix_cluster_calls_created_at", "cluster_calls", ["created_at"])


def downgrade() -> None:
    op.drop_table("cluster_calls")
    op.drop_table("cluster_presence")
    op.drop_table("cluster_nodes")
