"""Dashboard users with roles, and the cookie key every node shares.

People sign in to the dashboard by name and password (argon2 hashes only); the key that signs
their session cookies lives in the database so that a restart or another cluster node keeps
them signed in, and so do the sessions signed out before their cookies expire.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ui_revoked_sessions",
        sa.Column("sid", sa.String(32), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ui_revoked_sessions_expires_at", "ui_revoked_sessions", ["expires_at"])
    op.create_table(
        "site_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("site_secrets")
    op.drop_index("ix_ui_revoked_sessions_expires_at", table_name="ui_revoked_sessions")
    op.drop_table("ui_revoked_sessions")
    op.drop_table("web_users")
