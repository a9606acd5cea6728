"""Which of two connections of a charge point is the newer, by the database's clock.

Until now the nodes compared `connected_at`, each node's own wall clock: a node whose clock ran ahead kept
a charger's old connection over its newer one on another node (and the other node closed its live socket).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cluster_presence", sa.Column("first_seen_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("cluster_presence", "first_seen_at")
