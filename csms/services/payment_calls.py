"""Telling the payment provider how a reservation ended: once per reservation, through outages.

Whatever ends a reservation without charging (a user's cancel, a declined payment, a
busy connector at confirm, a failed remote start, unlock-connector, the reservation or
start timeout) only marks its provider cancel due, in the same unit of work as the move
(`db.reservation_store.move_reservation`); the end of a session that charged marks the
capture of its fee due (a cancel when the fee is zero), in the unit of work that ends the
session (`db.session_end.end_session`). This task makes the calls: it claims a due call
(so no other worker or round makes it meanwhile), calls `provider.cancel` or
`provider.capture`, and records the outcome. A failure is audited and retried after 1, 2,
4 ... times `--payment-retry-seconds` (at most an hour apart) until the provider says yes;
after that the call is never made again. Every attempt is in `audit_events`
(`payment.cancelled`, `payment.cancel_failed`, `payment.captured`, `payment.capture_failed`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from functools import partial

import trio
from sqlalchemy.orm import Session

from csms import metrics
from csms.context import Context
from csms.core.reservations import cancel_retry_delay
from csms.db.cleanup_store import audit
from csms.db.reservation_store import (
    CANCEL,
    PROVIDER_CALLS,
    ProviderCall,
    claim_due_call,
    due_calls,
    next_call_due,
    record_call_done,
    record_call_failed,
)

__all__ = ["cancel_now", "cancel_due", "run_payment_cancels"]

log = logging.getLogger("csms.payments")
ACTOR = "system:payments"
_COUNTERS = {"cancel": metrics.PAYMENT_CANCELS, "capture": metrics.PAYMENT_CAPTURES}
_IDLE_POLL_S = 30.0  # a due cancel is found within this even without a nudge


def _provider_timeout(ctx: Context) -> float:
    return max(5.0, ctx.settings.call_timeout_seconds)


async def cancel_now(ctx: Context, reservation_id: str, call: ProviderCall = CANCEL) -> bool | None:
    """Make this reservation's provider call (its cancel, or with `call=CAPTURE` its capture) if it is due:
    True done, False failed (retried later), None not due (nothing owed, already made, or someone else is on it)."""
    now = ctx.clock.now()
    lease = now + timedelta(seconds=2 * _provider_timeout(ctx) + 60)
    due = await ctx.db.write(lambda s: claim_due_call(s, reservation_id, call, now=now, lease_until=lease))
    if due is None:
        return None
    past = "cancelled" if call.kind == "cancel" else "captured"
    amount = {} if due.amount is None else {"amount": str(due.amount)}
    try:
        with trio.fail_after(_provider_timeout(ctx)):
            if call.kind == "capture":
                await ctx.payments.capture(due.provider_ref, due.amount or Decimal(0))
            else:
                await ctx.payments.cancel(due.provider_ref)
    except Exception as exc:  # any provider failure: audited, retried with back-off
        attempts = due.attempts + 1
        failed_at = ctx.clock.now()
        retry_at = failed_at + cancel_retry_delay(
            attempts, base=timedelta(seconds=max(0.01, ctx.settings.payment_retry_seconds))
        )
        error = repr(exc) if str(exc) else type(exc).__name__

        def failed(s: Session) -> None:
            record_call_failed(s, reservation_id, call, attempts=attempts, retry_at=retry_at)
            audit(
                s,
                actor=ACTOR,
                action=f"payment.{call.kind}_failed",
                at=failed_at,
                charge_point_id=due.charge_point_id,
                connector_id=due.connector_id,
                subject=reservation_id,
                provider=ctx.payments.name,
                provider_ref=due.provider_ref,
                attempt=attempts,
                error=error,
                retry_at=retry_at.isoformat(),
                **amount,
            )

        await ctx.db.write(failed)
        _COUNTERS[call.kind].labels("failed").inc()
        log.warning(
            "payment.%s_failed reservation=%s provider=%s attempt=%d error=%s retry_in=%.1fs",
            call.kind,
            reservation_id,
            ctx.payments.name,
            attempts,
            error,
            (retry_at - failed_at).total_seconds(),
        )
        return False
    done_at = ctx.clock.now()

    def done(s: Session) -> None:
        record_call_done(s, reservation_id, call, now=done_at)
        audit(
            s,
            actor=ACTOR,
            action=f"payment.{past}",
            at=done_at,
            charge_point_id=due.charge_point_id,
            connector_id=due.connector_id,
            subject=reservation_id,
            provider=ctx.payments.name,
            provider_ref=due.provider_ref,
            attempt=due.attempts + 1,
            **amount,
        )

    await ctx.db.write(done)
    _COUNTERS[call.kind].labels(past).inc()
    log.info(
        "payment.%s reservation=%s provider=%s attempt=%d%s",
        past,
        reservation_id,
        ctx.payments.name,
        due.attempts + 1,
        f" amount={due.amount}" if due.amount is not None else "",
    )
    return True


async def cancel_due(ctx: Context) -> int:
    """Every provider call due now (cancels, then captures), one after the other; returns how many succeeded."""
    now = ctx.clock.now()
    done = 0
    for call in PROVIDER_CALLS:
        ids = await ctx.db.read(partial(due_calls, now=now, call=call))
        for reservation_id in ids:
            done += bool(await cancel_now(ctx, reservation_id, call))
    return done


async def run_payment_cancels(ctx: Context, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Until cancelled: make due cancels, then sleep until the next one is due or someone nudges."""
    task_status.started()
    while True:
        try:
            await cancel_due(ctx)
            upcoming = await ctx.db.read(next_call_due)
        except Exception:
            log.exception("payment.cancel_round_failed (will retry)")
            upcoming = None
        wait = _IDLE_POLL_S
        if upcoming is not None:
            from csms.core.times import as_utc

            wait = min(wait, max(0.05, (as_utc(upcoming) - ctx.clock.now()).total_seconds()))
        with trio.move_on_after(wait):
            await ctx.payment_cancels_due.wait()
        ctx.payment_cancels_due = trio.Event()
