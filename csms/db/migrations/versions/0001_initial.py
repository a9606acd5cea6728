"""The first versioned schema: connector state, transactions, sessions, reservations, audit.

The tables as of commit 5b38ddc (before charge point passwords and id tags). Databases made by
create_all before Alembic came in are matched against each revision and stamped (csms.db.schema).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)
_DECIMAL = sa.String(40)  # csms.db.models.DecimalText: exact decimals kept as text
_INACTIVE_SQL = "status NOT IN ('Completed', 'Cancelled', 'Failed')"


def _claim_columns() -> list[sa.Column]:
    """csms.db.models._ConnectorClaim: shared by sessions and reservations."""
    return [
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("id_tag", sa.String(32), nullable=False),
        sa.Column("tariff", _DECIMAL, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "charge_points",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("vendor", sa.String(64)),
        sa.Column("model", sa.String(64)),
        sa.Column("serial_number", sa.String(64)),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("registered_at", _UTC, nullable=False),
        sa.Column("last_boot_at", _UTC),
        sa.Column("last_seen_at", _UTC),
    )
    op.create_table(
        "stations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
    )
    op.create_index("ix_stations_charge_point_id", "stations", ["charge_point_id"])
    op.create_table(
        "connector_statuses",
        sa.Column("charge_point_id", sa.String(64), primary_key=True),
        sa.Column("connector_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("id_tag", sa.String(32), nullable=False),
        sa.Column("meter_start", sa.BigInteger(), nullable=False),
        sa.Column("meter_stop", sa.BigInteger()),
        sa.Column("start_time", _UTC, nullable=False),
        sa.Column("opened_at", _UTC),
        sa.Column("stop_time", _UTC),
        sa.Column("stop_reason", sa.String(32)),
        sa.Column("latest_meter_wh", sa.BigInteger()),
        sa.Column("latest_meter_at", _UTC),
    )
    op.create_index("ix_transactions_connector_open", "transactions", ["charge_point_id", "connector_id", "stop_time"])
    op.create_table(
        "charging_sessions",
        *_claim_columns(),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("transaction_id", sa.Integer()),
        sa.Column("reservation_id", sa.String(64)),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("start_time", _UTC),
        sa.Column("end_time", _UTC),
        sa.Column("meter_start", sa.BigInteger()),
        sa.Column("end_meter_wh", sa.BigInteger()),
        sa.Column("energy_wh", sa.BigInteger()),
        sa.Column("fee", _DECIMAL),
        sa.Column("meter_source", sa.String(16)),
        sa.Column("end_reason", sa.String(32)),
        sa.Column("failure_reason", sa.Text()),
        sa.Column("reconciled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_index("ix_charging_sessions_transaction_id", "charging_sessions", ["transaction_id"])
    op.create_index("ix_sessions_connector_open", "charging_sessions", ["charge_point_id", "connector_id", "end_time"])
    op.create_table(
        "payment_reservations",
        *_claim_columns(),
        sa.Column("amount", _DECIMAL),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("provider_ref", sa.String(128)),
        sa.Column("session_id", sa.String(64)),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_index(
        "ux_payment_reservations_active_connector",
        "payment_reservations",
        ["charge_point_id", "connector_id"],
        unique=True,
        sqlite_where=sa.text(_INACTIVE_SQL),
        postgresql_where=sa.text(_INACTIVE_SQL),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", _UTC, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("charge_point_id", sa.String(64)),
        sa.Column("connector_id", sa.Integer()),
        sa.Column("subject", sa.String(64)),
        sa.Column("details", sa.JSON()),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])


def downgrade() -> None:
    for table in (
        "audit_events",
        "payment_reservations",
        "charging_sessions",
        "transactions",
        "connector_statuses",
        "stations",
        "charge_points",
    ):
        op.drop_table(table)
