"""The one step that ends a charging session, whatever closed its transaction.

A StopTransaction, a late one, an unlock's force-end, the orphan and idle sweeps, a
supersede by the next car, an invalid meterStop: each works out the settlement its own
way, then hands it here. In the same unit of work the session gets its end fields
(energy, fee, source, reason), its reservation its final status (Completed once it charged),
the provider the capture of the fee, at most what was held (or the cancel of the hold), as
a due call, and the audit trail a
`session.ended` row, which is also the `session.ended` webhook. The update is conditional
on the session still being open, so it happens exactly once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from csms.core import billing
from csms.core.reservations import ReservationStatus
from csms.db.audit import audit
from csms.db.database import rowcount
from csms.db.models import ChargingSession
from csms.db.reservation_store import move_reservation, settle_with_provider

__all__ = ["end_session", "ESTIMATED_REASONS"]

# Stop reasons we write ourselves when a StopTransaction never came (or came with a reading no meter shows).
ESTIMATED_REASONS = frozenset({"ForceEnded", "Orphaned", "Superseded", "IdleTimeout", "InvalidMeterStop"})

_CS = ChargingSession


def end_session(
    s: Session,
    session_id: str,
    settlement: billing.Settlement,
    *,
    end_time: datetime,
    reason: str,
    now: datetime,
    actor: str,
    fee_waived: str | None = None,
    settle_delay: timedelta = timedelta(0),
) -> bool:
    """End the session with this settlement; False (nothing written) if it had already ended.

    An end by estimate (ESTIMATED_REASONS: no StopTransaction came) makes the provider call due only
    `settle_delay` later, so the charger's StopTransaction, if it comes late, can still set the fee.
    """
    values = {
        "end_time": end_time,
        "end_meter_wh": settlement.end_meter_wh,
        "energy_wh": settlement.energy_wh,
        "fee": settlement.fee,
        "meter_source": settlement.source.value,
        "end_reason": reason,
        "status": "Ended",
        "fee_waived_reason": fee_waived,
        "updated_at": now,
    }
    if settlement.review is not None:
        values["review_reason"] = settlement.review
    claimed = s.execute(
        update(_CS)
        .where(_CS.id == session_id, _CS.end_time.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(claimed) != 1:
        return False
    cp_id, connector_id, tx_id, reservation_id = s.execute(
        select(_CS.charge_point_id, _CS.connector_id, _CS.transaction_id, _CS.reservation_id).where(
            _CS.id == session_id
        )
    ).one()
    provider_call = None
    if reservation_id:
        due = now + settle_delay if reason in ESTIMATED_REASONS else now
        settled = settle_with_provider(s, reservation_id, Decimal(settlement.fee), due)
        provider_call = settled.kind
        if settled.review is not None:
            s.execute(
                update(_CS)
                .where(_CS.id == session_id)
                .values(review_reason=settled.review)
                .execution_options(synchronize_session=False)
            )
        # It charged: Completed (its capture made due above); it never reached Charging: Cancelled, its
        # payment's cancel made due by the move.
        if not move_reservation(s, reservation_id, ReservationStatus.COMPLETED, now):
            move_reservation(s, reservation_id, ReservationStatus.CANCELLED, now)
    audit(
        s,
        actor=actor,
        action="session.ended",
        at=now,
        charge_point_id=cp_id,
        connector_id=connector_id,
        subject=session_id,
        reason=reason,
        transaction_id=tx_id,
        energy_wh=settlement.energy_wh,
        fee=str(settlement.fee),
        meter_source=settlement.source.value,
        fee_waived=fee_waived,
        reservation_id=reservation_id,
        provider_call=provider_call,
    )
    loaded = s.identity_map.get(s.identity_key(_CS, session_id))
    if loaded is not None:
        s.refresh(loaded)  # an ORM copy loaded earlier in this unit of work sees the end
    return True
