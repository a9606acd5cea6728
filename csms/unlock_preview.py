"""What an unlock would clean, changing nothing (`"dryRun": true`, the dashboard's preview).

It follows `csms.unlock` step by step over the same rows: the sessions it would
force-end (with the energy and fee the force-end would bill, the fee policy
applied), the open transactions it would close without a StopTransaction, the
reservations it would cancel and the stored status it would reset. One read
transaction; the preview is what the unlock does if nothing changes meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import billing
from .clock import iso
from .context import Context
from .db.models import (
    ChargePoint,
    ChargingSession,
    ConnectorStatus,
    PaymentReservation,
    Transaction,
)
from .db.ocpp_store import billing_start
from .errors import NotFoundError
from .fee_policy import apply_waiver
from .reservations import TERMINAL
from .sessions import active_station
from .unlock import LIVE_OCCUPIED

__all__ = ["SessionEnd", "TransactionClose", "ReservationCancel", "UnlockPreview", "plan_unlock", "preview_unlock",
           "preview_body", "preview_message"]

_TERMINAL = tuple(s.value for s in TERMINAL)


@dataclass(frozen=True)
class SessionEnd:
    session_id: str
    status: str
    id_tag: str
    transaction_id: int | None
    created_at: datetime
    energy_wh: int
    fee: str
    meter_source: str
    fee_waived: str | None


@dataclass(frozen=True)
class TransactionClose:
    transaction_id: int
    id_tag: str
    start_time: datetime
    meter_start: int
    closing_meter_wh: int
    meter_source: str


@dataclass(frozen=True)
class ReservationCancel:
    reservation_id: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class UnlockPreview:
    station_id: str
    charge_point_id: str
    connector_id: int
    charger_online: bool
    sessions: tuple[SessionEnd, ...]
    transactions: tuple[TransactionClose, ...]
    reservations: tuple[ReservationCancel, ...]
    status_reset_from: str | None

    @property
    def changes_anything(self) -> bool:
        return bool(self.sessions or self.transactions or self.reservations or self.status_reset_from)


def plan_unlock(s: Session, station_id: str, cp_id: str, connector_id: int, *, live_occupied: bool,
                charger_online: bool, fee_policy: str) -> UnlockPreview:
    """Read the rows an unlock would touch and say what it would do to each (a read transaction)."""
    open_txs = {t.id: t for t in s.scalars(select(Transaction).where(
        Transaction.charge_point_id == cp_id, Transaction.connector_id == connector_id,
        Transaction.stop_time.is_(None)).order_by(Transaction.id))}
    sessions = []
    for cs in s.scalars(select(ChargingSession).where(
            ChargingSession.charge_point_id == cp_id, ChargingSession.connector_id == connector_id,
            ChargingSession.end_time.is_(None)).order_by(ChargingSession.created_at)):
        tx = None if cs.transaction_id is None else (open_txs.get(cs.transaction_id) or s.get(Transaction,
                                                                                              cs.transaction_id))
        if tx is not None:
            open_tx = tx.stop_time is None
            st = billing.settle(billing_start(cs, tx), cs.tariff,
                                latest_sample_wh=tx.latest_meter_wh if open_tx else None,
                                meter_stop=None if open_tx else tx.meter_stop)
        else:
            st = billing.settle(cs.meter_start or 0, cs.tariff)
        st, waived = apply_waiver(st, fee_policy, "ForceEnded")
        sessions.append(SessionEnd(cs.id, cs.status, cs.id_tag, cs.transaction_id, cs.created_at, st.energy_wh,
                                   str(st.fee), st.source.value, waived))
    transactions = []
    for tx in open_txs.values():
        end, source = billing.choose_end_meter(tx.meter_start, latest_sample_wh=tx.latest_meter_wh,
                                               meter_stop=tx.meter_stop)
        transactions.append(TransactionClose(tx.id, tx.id_tag, tx.start_time, tx.meter_start, end, source.value))
    reservations = tuple(ReservationCancel(r.id, r.status, r.created_at) for r in s.scalars(
        select(PaymentReservation).where(
            PaymentReservation.charge_point_id == cp_id, PaymentReservation.connector_id == connector_id,
            PaymentReservation.status.not_in(_TERMINAL)).order_by(PaymentReservation.created_at)))
    row = s.get(ConnectorStatus, (cp_id, connector_id))
    reset_from = row.status if row is not None and row.status != "Available" and not live_occupied else None
    return UnlockPreview(station_id, cp_id, connector_id, charger_online, tuple(sessions), tuple(transactions),
                         reservations, reset_from)


async def preview_unlock(ctx: Context, station_id: str, connector_id: int) -> UnlockPreview:
    station = await active_station(ctx, station_id)
    cp_id = station.charge_point_id
    live = ctx.registry.live_status(cp_id, connector_id)
    occupied = live is not None and live.status in LIVE_OCCUPIED

    def read(s: Session) -> UnlockPreview:
        if s.get(ChargePoint, cp_id) is None:
            raise NotFoundError("Charge point not found")
        return plan_unlock(s, station.id, cp_id, connector_id, live_occupied=occupied,
                           charger_online=ctx.registry.is_connected(cp_id), fee_policy=ctx.settings.force_end_fee)

    return await ctx.db.read(read)


def preview_body(p: UnlockPreview) -> dict[str, Any]:
    """The REST answer's data (camelCase, money as exact decimal strings)."""
    return {
        "dryRun": True,
        "chargingStationId": p.station_id, "connectorId": p.connector_id, "chargePointId": p.charge_point_id,
        "chargerOnline": p.charger_online,
        "sessionsToEnd": [
            {"sessionId": x.session_id, "status": x.status, "idTag": x.id_tag, "transactionId": x.transaction_id,
             "createdAt": iso(x.created_at), "energyWh": x.energy_wh, "fee": x.fee, "meterSource": x.meter_source,
             "feeWaived": x.fee_waived} for x in p.sessions],
        "transactionsToClose": [
            {"transactionId": t.transaction_id, "idTag": t.id_tag, "startTime": iso(t.start_time),
             "meterStart": t.meter_start, "closingMeterWh": t.closing_meter_wh, "meterSource": t.meter_source}
            for t in p.transactions],
        "reservationsToCancel": [
            {"reservationId": r.reservation_id, "status": r.status, "createdAt": iso(r.created_at)}
            for r in p.reservations],
        "statusResetFrom": p.status_reset_from,
        "thenSends": "UnlockConnector" if p.charger_online else None,
    }


def preview_message(p: UnlockPreview) -> str:
    what = (f"force-end {len(p.sessions)} session(s), close {len(p.transactions)} transaction(s), cancel "
            f"{len(p.reservations)} reservation(s)"
            + (f", reset stored status {p.status_reset_from} to Available" if p.status_reset_from else ""))
    return f"Dry run: unlock would {what}; nothing was changed"
