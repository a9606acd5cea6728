"""SQLAlchemy 2.x typed models: the persisted half of connector state.

Times are stored as UTC. Money and tariffs are exact decimals stored as text,
so SQLite and PostgreSQL round the same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "ChargePoint",
    "Station",
    "ConnectorStatus",
    "Transaction",
    "ChargingSession",
    "PaymentReservation",
    "AuditEvent",
    "ChargePointPassword",
    "IdTag",
    "ClusterNode",
    "ClusterPresence",
    "ClusterCall",
    "SiteTariff",
    "IdempotencyKey",
    "WebhookOutbox",
    "new_id",
]


def new_id() -> str:
    return str(uuid.uuid4())


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal kept as its exact text (SQLite has no exact numeric type)."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value)


UtcDateTime = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class ChargePoint(Base):
    __tablename__ = "charge_points"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    serial_number: Mapped[str | None] = mapped_column(String(64))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_boot_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ocpp_version: Mapped[str | None] = mapped_column(String(8))  # "1.6" or "2.0.1", from its last connection


class Station(Base):
    """The user-facing charging station; maps to one OCPP charge point."""

    __tablename__ = "stations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    charge_point_id: Mapped[str] = mapped_column(String(64), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ConnectorStatus(Base):
    """Last StatusNotification per connector, with when it arrived."""

    __tablename__ = "connector_statuses"
    charge_point_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Transaction(Base):
    """An OCPP transaction; open while stop_time IS NULL."""

    __tablename__ = "transactions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    charge_point_id: Mapped[str] = mapped_column(String(64))
    connector_id: Mapped[int] = mapped_column(Integer)
    id_tag: Mapped[str] = mapped_column(String(32))
    meter_start: Mapped[int] = mapped_column(BigInteger)
    meter_stop: Mapped[int | None] = mapped_column(BigInteger)
    start_time: Mapped[datetime] = mapped_column(UtcDateTime)
    # When the CSMS stored it (start_time is the charge point's clock).
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stop_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    latest_meter_wh: Mapped[int | None] = mapped_column(BigInteger)
    # The sample's own timestamp (the charger's clock): a buffered, older sample never replaces it.
    latest_meter_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the CSMS last received an energy sample for it (our clock: the idle and quiet rules).
    meter_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # OCPP 2.0.1: the station's own id for it, the last seqNo seen, and whether meterStart waits for a sample.
    station_tx_id: Mapped[str | None] = mapped_column(String(64))
    seq_no: Mapped[int | None] = mapped_column(Integer)
    meter_start_missing: Mapped[bool | None] = mapped_column(Boolean)
    __table_args__ = (
        Index("ix_transactions_connector_open", "charge_point_id", "connector_id", "stop_time"),
        Index("ix_transactions_tag_open", "id_tag", "stop_time"),  # the console's tag filter
        # ConcurrentTx: is this tag (any case) charging? csms.core.id_tags.match_key, folded in SQL.
        Index(
            "ix_transactions_tag_key_open",
            text("upper(id_tag)"),
            sqlite_where=text("stop_time IS NULL"),
            postgresql_where=text("stop_time IS NULL"),
        ),
        Index("ix_transactions_station_tx", "charge_point_id", "station_tx_id"),
    )


class _ConnectorClaim:
    """Who wants which connector at what price: shared by sessions and reservations."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    station_id: Mapped[str] = mapped_column(String(64))
    charge_point_id: Mapped[str] = mapped_column(String(64))
    connector_id: Mapped[int] = mapped_column(Integer)
    id_tag: Mapped[str] = mapped_column(String(32))
    tariff: Mapped[Decimal] = mapped_column(DecimalText)


class ChargingSession(_ConnectorClaim, Base):
    """The user-facing session (the seeds' ChargingSessions)."""

    __tablename__ = "charging_sessions"
    status: Mapped[str] = mapped_column(String(24))
    transaction_id: Mapped[int | None] = mapped_column(Integer, index=True)
    reservation_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    start_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    meter_start: Mapped[int | None] = mapped_column(BigInteger)
    end_meter_wh: Mapped[int | None] = mapped_column(BigInteger)
    energy_wh: Mapped[int | None] = mapped_column(BigInteger)
    fee: Mapped[Decimal | None] = mapped_column(DecimalText)
    meter_source: Mapped[str | None] = mapped_column(String(16))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    reconciled: Mapped[bool] = mapped_column(default=False)
    # Why a person should check this bill (its readings contradict each other), or None.
    review_reason: Mapped[str | None] = mapped_column(Text)
    # Why its fee is 0.00 although energy was delivered (--force-end-fee waive), or None.
    fee_waived_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    __table_args__ = (Index("ix_sessions_connector_open", "charge_point_id", "connector_id", "end_time"),)


# Statuses of a reservation that no longer hold the connector (see csms.core.reservations).
_INACTIVE_SQL = "status NOT IN ('Completed', 'Cancelled', 'Failed')"


class PaymentReservation(_ConnectorClaim, Base):
    """A paid hold on a connector; at most one active per connector (partial unique index)."""

    __tablename__ = "payment_reservations"
    amount: Mapped[Decimal | None] = mapped_column(DecimalText)
    status: Mapped[str] = mapped_column(String(24))
    provider_ref: Mapped[str | None] = mapped_column(String(128))
    session_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The provider's cancel of a reservation that ended before charging: due (and retried) from
    # provider_cancel_due_at until provider_cancelled_at is set (see csms.services.payment_calls).
    provider_cancel_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    provider_cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    provider_cancel_attempts: Mapped[int | None] = mapped_column(Integer)
    # A reservation that charged: its session's fee captured with the provider when the session
    # ends (a cancel instead when the fee is zero), due and retried the same way.
    provider_capture_amount: Mapped[Decimal | None] = mapped_column(DecimalText)
    provider_capture_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    provider_captured_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    provider_capture_attempts: Mapped[int | None] = mapped_column(Integer)
    # The worker making a due provider call holds it until then (see csms.services.payment_calls).
    provider_call_claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    __table_args__ = (
        Index(
            "ux_payment_reservations_active_connector",
            "charge_point_id",
            "connector_id",
            unique=True,
            sqlite_where=text(_INACTIVE_SQL),
            postgresql_where=text(_INACTIVE_SQL),
        ),
    )


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    charge_point_id: Mapped[str | None] = mapped_column(String(64))
    connector_id: Mapped[int | None] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ChargePointPassword(Base):
    """A charge point's HTTP Basic password (security profiles 1 and 2), as a salted scrypt hash only."""

    __tablename__ = "charge_point_passwords"
    charge_point_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdTag(Base):
    """The id tag list (OCPP 1.6 IdToken, kept upper-case): who may charge."""

    __tablename__ = "id_tags"
    id_tag: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # Accepted, Blocked, Expired, Invalid
    expiry_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    parent_id_tag: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


# ----------------------------------------------------------------- cluster (csms.cluster, `--node-id`)
class ClusterNode(Base):
    """A running `csms serve --node-id`: its word (presence rows) counts while lease_until is ahead."""

    __tablename__ = "cluster_nodes"
    node_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[datetime] = mapped_column(UtcDateTime)


class ClusterPresence(Base):
    """Which node holds a charge point's WebSocket, and its connectors' live statuses there.

    Not connector_statuses: that is the persisted status (maintenance may reset it, it outlives
    the connection); this is exactly the holding node's in-memory view, gone with the connection.
    """

    __tablename__ = "cluster_presence"
    charge_point_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(40), index=True)
    connected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    connectors: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When the database first saw this connection (its clock, not the node's): which of two connections of
    # one charge point on two nodes is the newer.
    first_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A disconnect leaves a tombstone (gone) rather than deleting the row, and every write stamps
    # updated_at (the database's clock): nodes read only the rows changed since their last read.
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ClusterCall(Base):
    """A command for a charge point held by another node: the NOTIFY carries only this row's id."""

    __tablename__ = "cluster_calls"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    origin_node: Mapped[str] = mapped_column(String(40))
    target_node: Mapped[str] = mapped_column(String(40), index=True)
    charge_point_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))  # sent, running, answered
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# ----------------------------------------------------------------- dashboard (csms.ui)
class WebUser(Base):
    """A person who signs in to the dashboard: a role and an argon2 hash of the password, never the password."""

    __tablename__ = "web_users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer, operator, admin (csms.core.web_access.ROLES)
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RevokedSession(Base):
    """A dashboard session signed out before its cookie expires: every node refuses it, restarts too."""

    __tablename__ = "ui_revoked_sessions"
    sid: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class SiteSecret(Base):
    """Secrets the site's processes share (the dashboard's cookie key): sign-ins outlive restarts and nodes."""

    __tablename__ = "site_secrets"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


# ----------------------------------------------------------------- meter samples (the console's charts)
class MeterSample(Base):
    """A kept energy sample of a transaction (`csms.core.meter_samples`: at most one per N seconds).

    `at` is the sample's own stamp (the charger's clock); `w` the active power sampled with it, if any.
    """

    __tablename__ = "meter_samples"
    transaction_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    wh: Mapped[int] = mapped_column(BigInteger)
    w: Mapped[int | None] = mapped_column(BigInteger)


# ----------------------------------------------------------------- the site's prices
class SiteTariff(Base):
    """A price per kWh an admin set for a station's connector, or for the whole station (connector 0).

    A start is billed at the most specific one, else the process's --tariff (csms.core.tariffs).
    """

    __tablename__ = "site_tariffs"
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tariff: Mapped[Decimal] = mapped_column(DecimalText)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


# ----------------------------------------------------------------- commands run once
class IdempotencyKey(Base):
    """A REST command's Idempotency-Key: claimed before the command runs, its answer kept for replays.

    The primary key makes the claim cluster-wide: of two nodes given one key, one inserts and runs, the
    other finds the row (csms.api.idempotency). Kept a day (maintenance prunes older ones).
    """

    __tablename__ = "idempotency_keys"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)  # the caller's hash : its key
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path, caller and body
    state: Mapped[str] = mapped_column(String(16))  # running | done
    status: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# ----------------------------------------------------------------- webhooks, durable and cluster-wide
class WebhookOutbox(Base):
    """One webhook event for one receiver, from the moment it is known until delivered, failed or dropped.

    Any node writes events (an audit fact's event has an id derived from the audit row, a presence event
    from the charge point and its connection time, so two nodes writing one event write one row); the
    node holding the cluster duties (a single node always) delivers them, in order per receiver. A node
    that dies leaves its rows to the next holder: delivered at least once, each with its event id.
    """

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        UniqueConstraint("event_id", "receiver", name="uq_webhook_outbox_event_receiver"),
        Index("ix_webhook_outbox_receiver_state", "receiver", "state", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    receiver: Mapped[str] = mapped_column(String(300))  # the target's label (its URL without secrets)
    type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)  # the JSON body, as signed and sent
    state: Mapped[str] = mapped_column(String(16))  # pending | sending | delivered | failed | dropped
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
