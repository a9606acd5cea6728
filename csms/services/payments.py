"""Paid starts: reserve a connector, take the payment, then start remotely.

The reservation lifecycle is the table in `csms.core.reservations`; every move here
is a conditional update from an allowed source status, so two requests racing
on one reservation cannot both move it. At most one active reservation per
connector is enforced by a partial unique index; a conflict is ConnectorBusy.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csms.context import Context
from csms.core.reservations import ReservationStatus as R
from csms.core.times import iso
from csms.db.models import PaymentReservation
from csms.db.reservation_store import move_reservation
from csms.errors import ConflictError, ConnectorBusyError, CsmsError, NotFoundError
from csms.services.payment_calls import cancel_now
from csms.services.sessions import (
    _create_session,
    active_station,
    check_connector_free,
    remote_start,
)
from csms.services.tariffs import price_for_start

__all__ = [
    "PaymentProviderError",
    "PaymentDeclinedError",
    "create_reservation",
    "confirm_reservation",
    "cancel_reservation",
    "reservation_view",
]

log = logging.getLogger("csms.payments")


class PaymentProviderError(CsmsError):
    """The payment provider failed (unreachable, an error of its own)."""

    code = "PaymentProviderError"


class PaymentDeclinedError(CsmsError):
    """The payment provider declined the payment."""

    code = "PaymentDeclined"


def reservation_view(r: PaymentReservation) -> dict[str, Any]:
    return {
        "reservationId": r.id,
        "chargingStationId": r.station_id,
        "chargePointId": r.charge_point_id,
        "connectorId": r.connector_id,
        "chargeTagId": r.id_tag,
        "chargingTariff": str(r.tariff),
        "amount": None if r.amount is None else str(r.amount),
        "status": r.status,
        "providerRef": r.provider_ref,
        "sessionId": r.session_id,
        "createdAt": iso(r.created_at),
        "updatedAt": iso(r.updated_at),
        "paymentCancelledAt": iso(r.provider_cancelled_at),
        "paymentCancelDueAt": iso(r.provider_cancel_due_at),
        "paymentCancelAttempts": r.provider_cancel_attempts or 0,
        "paymentCaptureAmount": None if r.provider_capture_amount is None else str(r.provider_capture_amount),
        "paymentCapturedAt": iso(r.provider_captured_at),
        "paymentCaptureDueAt": iso(r.provider_capture_due_at),
        "paymentCaptureAttempts": r.provider_capture_attempts or 0,
    }


def _move(reservation_id: str, dst: R, now: datetime, **values: Any):
    """Move a reservation to dst from any status the lifecycle table allows; False if it was elsewhere.

    Ending it before charging makes its provider cancel due (`csms.services.payment_calls` makes it).
    """

    def work(s: Session) -> bool:
        return move_reservation(s, reservation_id, dst, now, **values)

    return work


async def _cancel_payment(ctx: Context, reservation_id: str) -> None:
    """Cancel with the provider now if due; a failure is retried with back-off by the background task."""
    if await cancel_now(ctx, reservation_id) is False:
        ctx.nudge_payment_cancels()


async def _load(ctx: Context, reservation_id: str) -> dict[str, Any]:
    view = await ctx.db.read(
        lambda s: (lambda r: None if r is None else reservation_view(r))(s.get(PaymentReservation, reservation_id))
    )
    if view is None:
        raise NotFoundError("Payment reservation not found")
    return view


async def create_reservation(
    ctx: Context,
    *,
    station_id: str,
    connector_id: int,
    id_tag: str,
    tariff: Decimal | None,
    amount: Decimal | None,
    may_set_price: bool,
) -> dict[str, Any]:
    """A paid reservation at the site's tariff (`tariff` must be it unless `may_set_price`; None: the site's)."""
    station = await active_station(ctx, station_id)
    tariff = await price_for_start(ctx, station, connector_id, tariff, may_set_price=may_set_price)
    cp_id = station.charge_point_id
    async with ctx.connector_lock(cp_id, connector_id):
        await check_connector_free(ctx, station, connector_id, action="payment_create")
        now = ctx.clock.now()

        def insert(s: Session) -> dict[str, Any]:
            row = PaymentReservation(
                station_id=station.id,
                charge_point_id=cp_id,
                connector_id=connector_id,
                id_tag=id_tag,
                tariff=tariff,
                amount=amount,
                status=R.PENDING_PAYMENT.value,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            return reservation_view(row)

        try:
            view = await ctx.db.write(insert)
        except IntegrityError:
            log.warning(
                "payment_create.refused code=ConnectorBusy charge_point=%s connector=%s "
                "reasons=active_reservation_unique_index",
                cp_id,
                connector_id,
            )
            raise ConnectorBusyError(["active_reservation:unique_index_conflict"]) from None
    try:
        intent = await ctx.payments.create_intent(view["reservationId"], amount)
    except Exception as exc:
        # Release the connector at once: the client never learned this reservation's id.
        await ctx.db.write(_move(view["reservationId"], R.FAILED, ctx.clock.now()))
        log.error(
            "reservation.provider_failed reservation=%s provider=%s error=%r",
            view["reservationId"],
            ctx.payments.name,
            exc,
        )
        raise PaymentProviderError(f"Payment provider {ctx.payments.name} failed: {exc}") from None

    def store_ref(s: Session) -> None:
        s.execute(
            update(PaymentReservation)
            .where(PaymentReservation.id == view["reservationId"])
            .values(provider_ref=intent.ref)
        )
        row = s.get(PaymentReservation, view["reservationId"])
        assert row is not None  # created above; reservations are never deleted
        s.refresh(row)
        if row.status in (R.CANCELLED.value, R.FAILED.value) and row.provider_cancelled_at is None:
            row.provider_cancel_due_at = ctx.clock.now()  # ended while the intent was being created

    await ctx.db.write(store_ref)
    log.info(
        "reservation.created reservation=%s charge_point=%s connector=%s provider=%s",
        view["reservationId"],
        cp_id,
        connector_id,
        ctx.payments.name,
    )
    return view | {"providerRef": intent.ref, "clientSecret": intent.client_secret}


async def _abandon(ctx: Context, view: dict[str, Any], dst: R, why: str) -> None:
    await ctx.db.write(_move(view["reservationId"], dst, ctx.clock.now()))
    await _cancel_payment(ctx, view["reservationId"])
    log.warning(
        "reservation.%s reservation=%s charge_point=%s connector=%s why=%s",
        dst.value.lower(),
        view["reservationId"],
        view["chargePointId"],
        view["connectorId"],
        why,
    )


async def confirm_reservation(ctx: Context, reservation_id: str, payment_method: str | None) -> dict[str, Any]:
    """Take the payment, re-check the connector, then start remotely.

    The whole confirmation holds the connector's lock and re-reads the
    reservation inside it, so two confirms of one reservation cannot both pay
    or both start: the second sees StartRequested and is refused.
    """
    first = await _load(ctx, reservation_id)
    async with ctx.connector_lock(first["chargePointId"], first["connectorId"]):
        view = await _load(ctx, reservation_id)
        if view["status"] not in (R.PENDING_PAYMENT, R.AUTHORIZED):
            raise ConflictError(f"Reservation is {view['status']}, it cannot be confirmed", code="InvalidState")
        if view["status"] == R.PENDING_PAYMENT:
            try:
                paid = await ctx.payments.confirm(view["providerRef"], payment_method)
            except Exception as exc:  # the reservation stays PendingPayment: the user may retry
                log.error("reservation.provider_failed reservation=%s error=%r", reservation_id, exc)
                raise PaymentProviderError(f"Payment provider {ctx.payments.name} failed: {exc}") from None
            if not paid:
                await ctx.db.write(_move(reservation_id, R.FAILED, ctx.clock.now()))
                await _cancel_payment(ctx, reservation_id)  # release the declined intent too
                raise PaymentDeclinedError("Payment was declined")
            if not await ctx.db.write(_move(reservation_id, R.AUTHORIZED, ctx.clock.now())):
                raise ConflictError("Reservation changed while confirming", code="InvalidState")
        station = await active_station(ctx, view["chargingStationId"])
        connector_id = view["connectorId"]
        try:
            live = await check_connector_free(
                ctx, station, connector_id, action="payment_confirm", exclude_reservation_id=reservation_id
            )
        except CsmsError as exc:
            await _abandon(ctx, view, R.CANCELLED, exc.code or exc.message)
            raise
        now = ctx.clock.now()
        create = _create_session(
            station, connector_id, view["chargeTagId"], Decimal(view["chargingTariff"]), now, reservation_id
        )

        def claim(s: Session) -> str | None:
            """StartRequested and the session row in one unit of work: both or neither."""
            if not _move(reservation_id, R.START_REQUESTED, now)(s):
                return None  # cancelled or expired meanwhile: no session is created
            session_id = create(s)
            s.execute(
                update(PaymentReservation).where(PaymentReservation.id == reservation_id).values(session_id=session_id)
            )
            return session_id

        session_id = await ctx.db.write(claim)
        if session_id is None:
            raise ConflictError("Reservation changed while confirming", code="InvalidState")
        try:
            await remote_start(ctx, live, session_id, connector_id, view["chargeTagId"])
        except CsmsError as exc:
            await _abandon(ctx, view, R.FAILED, exc.code or exc.message)
            raise
    log.info("reservation.start_requested reservation=%s session=%s", reservation_id, session_id)
    return {"reservationId": reservation_id, "sessionId": session_id, "status": R.START_REQUESTED.value}


async def cancel_reservation(ctx: Context, reservation_id: str) -> dict[str, Any]:
    view = await _load(ctx, reservation_id)
    if view["status"] == R.CHARGING:
        raise ConflictError("Reservation is charging; stop the session instead", code="InvalidState")
    if not await ctx.db.write(_move(reservation_id, R.CANCELLED, ctx.clock.now())):
        raise ConflictError(f"Reservation is {view['status']}, it cannot be cancelled", code="InvalidState")
    await _cancel_payment(ctx, reservation_id)
    log.info("reservation.cancelled reservation=%s by=user", reservation_id)
    return {"reservationId": reservation_id, "status": R.CANCELLED.value}
