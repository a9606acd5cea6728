"""Databases as older csms versions left them: a schema revision (or pre-Alembic tables) and rows
written with plain SQL of that time, plus the checks that an upgrade kept every one of them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from alembic import command
from sqlalchemy import JSON, DateTime, bindparam, select, text

from csms.db.engine import make_engine
from csms.db.models import (
    AuditEvent,
    ChargePoint,
    ChargingSession,
    ConnectorStatus,
    PaymentReservation,
    Station,
    Transaction,
)
from csms.db.schema import VERSION_TABLE, alembic_config, current_revision

FIRST = "0001"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
DETAILS = {"reason": "stuck", "connectorId": 1}


def migrate_to(url: str, revision: str, *, keep_version: bool = True) -> None:
    """Run the real migrations up to `revision`; without the version table, the database looks like
    one made by create_all before Alembic came in."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
            if not keep_version:
                conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    finally:
        engine.dispose()


def _insert(conn: Any, table: str, **values: Any) -> None:
    typed = [bindparam(k, type_=DateTime(timezone=True)) for k, v in values.items() if isinstance(v, datetime)]
    typed += [bindparam(k, type_=JSON) for k, v in values.items() if isinstance(v, dict)]
    names = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({params})").bindparams(*typed), values)


def store_first_revision_rows(url: str) -> None:
    """A day of a site on revision 0001: a charge point, its station, statuses, a closed and an open
    transaction with their sessions, a completed reservation, an audit event."""
    engine = make_engine(url)
    claim = dict(station_id="CP1", charge_point_id="CP1", id_tag="TAG1", tariff="0.30")
    try:
        with engine.begin() as conn:
            _insert(
                conn,
                "charge_points",
                id="CP1",
                vendor="Acme",
                model="X1",
                serial_number="S-1",
                firmware_version="1.2",
                registered_at=T0,
                last_boot_at=T0,
                last_seen_at=T1,
            )
            _insert(conn, "stations", id="CP1", charge_point_id="CP1", active=True, created_at=T0)
            _insert(
                conn,
                "connector_statuses",
                charge_point_id="CP1",
                connector_id=1,
                status="Charging",
                error_code="NoError",
                updated_at=T1,
            )
            _insert(
                conn,
                "connector_statuses",
                charge_point_id="CP1",
                connector_id=2,
                status="Available",
                error_code="NoError",
                updated_at=T1,
            )
            _insert(
                conn,
                "transactions",
                id=1,
                charge_point_id="CP1",
                connector_id=2,
                id_tag="TAG1",
                meter_start=1000,
                meter_stop=5000,
                start_time=T0,
                opened_at=T0,
                stop_time=T1,
                stop_reason="Local",
                latest_meter_wh=5000,
                latest_meter_at=T1,
            )
            _insert(
                conn,
                "transactions",
                id=2,
                charge_point_id="CP1",
                connector_id=1,
                id_tag="TAG1",
                meter_start=7_000_000_000,
                start_time=T1,
                opened_at=T1,
                latest_meter_wh=7_000_002_500,
                latest_meter_at=T1,
            )
            _insert(
                conn,
                "charging_sessions",
                id="sess-1",
                connector_id=2,
                **claim,
                status="Completed",
                transaction_id=1,
                created_at=T0,
                start_time=T0,
                end_time=T1,
                meter_start=1000,
                end_meter_wh=5000,
                energy_wh=4000,
                fee="1.20",
                meter_source="StopTransaction",
                end_reason="Local",
                reconciled=True,
                updated_at=T1,
            )
            _insert(
                conn,
                "charging_sessions",
                id="sess-2",
                connector_id=1,
                **claim,
                status="Charging",
                transaction_id=2,
                created_at=T1,
                start_time=T1,
                meter_start=7_000_000_000,
                reconciled=False,
                updated_at=T1,
            )
            _insert(
                conn,
                "payment_reservations",
                id="res-1",
                connector_id=2,
                **claim,
                amount="10.00",
                status="Completed",
                provider_ref="sim-1",
                session_id="sess-1",
                created_at=T0,
                updated_at=T1,
            )
            _insert(
                conn,
                "audit_events",
                at=T1,
                actor="cli:ops",
                action="connector.unlocked",
                charge_point_id="CP1",
                connector_id=1,
                subject="sess-0",
                details=DETAILS,
            )
    finally:
        engine.dispose()


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive UTC; PostgreSQL aware."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def check_first_revision_rows(session: Any) -> None:
    """Every row of store_first_revision_rows, read through today's models: intact, and the columns
    added since read as empty."""
    cp = session.get(ChargePoint, "CP1")
    assert (cp.vendor, cp.serial_number, _utc(cp.last_seen_at)) == ("Acme", "S-1", T1)
    assert session.get(Station, "CP1").active is True
    statuses = {s.connector_id: s.status for s in session.scalars(select(ConnectorStatus))}
    assert statuses == {1: "Charging", 2: "Available"}
    closed, open_ = session.get(Transaction, 1), session.get(Transaction, 2)
    assert (closed.meter_start, closed.meter_stop, closed.stop_reason, _utc(closed.stop_time)) == (
        1000,
        5000,
        "Local",
        T1,
    )
    assert (open_.stop_time, open_.latest_meter_wh) == (None, 7_000_002_500)
    assert closed.meter_seen_at is None and open_.meter_seen_at is None  # added by 0003
    done = session.get(ChargingSession, "sess-1")
    assert (done.fee, done.tariff, done.energy_wh, done.reconciled) == (Decimal("1.20"), Decimal("0.30"), 4000, True)
    assert done.review_reason is None and done.fee_waived_reason is None  # 0003, 0004
    res = session.get(PaymentReservation, "res-1")
    assert (res.amount, res.status, res.session_id) == (Decimal("10.00"), "Completed", "sess-1")
    assert res.provider_cancel_due_at is None and res.provider_cancel_attempts is None  # 0003
    (event,) = session.scalars(select(AuditEvent))
    assert (event.action, event.details) == ("connector.unlocked", DETAILS)


def revision_of(url: str) -> str | None:
    """The schema revision a database is at (None: no alembic_version)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()
