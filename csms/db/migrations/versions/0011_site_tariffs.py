"""The site's tariffs: a price per kWh per station (connector 0) or connector, set by an admin.

Until now a start's own `chargingTariff` was the price, so whoever called the API set it. A start is
now billed at the site's tariff (csms.core.tariffs): this table, else `--tariff`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_tariffs",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("connector_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("tariff", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("site_tariffs")
