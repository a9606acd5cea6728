"""Cancelling payments with the provider: once per reservation that ended before charging, through outages.

Whatever ends a reservation without charging (a user's cancel, a declined payment, a
busy connector at confirm, a failed remote start, unlock-connector, the reservation or
start timeout) only marks its provider cancel due, in the same unit of work as the move
(`db.reservation_store.move_reservation`). This task makes the calls: it claims a due
cancel (so no other worker or round calls it meanwhile), calls `provider.cancel`, and
records the outcome. A failure is audited and retried after 1, 2, 4 ... times
`--payment-retry-seconds` (at most an hour apart) until the provider says yes; after
that the reservation is never cancelled again. Every attempt is in `audit_events`
(`payment.cancelled`, `payment.cancel_failed`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import trio
from sqlalchemy.orm import Session

from . import metrics
from .context import Context
from .db.cleanup_store import audit
from .db.reservation_store import (
    claim_due_cancel,
    due_cancels,
    next_cancel_due,
    record_cancel_done,
    record_cancel_failed,
)
from .reservations import cancel_retry_delay

__all__ = ["cancel_now", "cancel_due", "run_payment_cancels"]

log = logging.getLogger("csms.payments")
ACTOR = "system:payments"
_IDLE_POLL_S = 30.0  # a due cancel is found within this even without a nudge


def _provider_timeout(ctx: Context) -> float:
    return max(5.0, ctx.settings.call_timeout_seconds)


async def cancel_now(ctx: Context, reservation_id: str) -> bool | None:
    """Make this reservation's provider cancel if it is due: True done, False failed (retried later),
    None not due (nothing to cancel, already cancelled, or someone else is on it)."""
    now = ctx.clock.now()
    lease = now + timedelta(seconds=2 * _provider_timeout(ctx) + 60)
    due = await ctx.db.write(lambda s: claim_due_cancel(s, reservation_id, now=now, lease_until=lease))
    if due is None:
        return None
    try:
        with trio.fail_after(_provider_timeout(ctx)):
            await ctx.payments.cancel(due.provider_ref)
    except Exception as exc:  # any provider failure: audited, retried with back-off
        attempts = due.attempts + 1
        failed_at = ctx.clock.now()
        retry_at = failed_at + cancel_retry_delay(
            attempts, base=timedelta(seconds=max(0.01, ctx.settings.payment_retry_seconds)))
        error = repr(exc) if str(exc) else type(exc).__name__

        def failed(s: Session) -> None:
            record_cancel_failed(s, reservation_id, attempts=attempts, retry_at=retry_at)
            audit(s, actor=ACTOR, action="payment.cancel_failed", at=failed_at, charge_point_id=due.charge_point_id,
                  connector_id=due.connector_id, subject=reservation_id, provider=ctx.payments.name,
                  provider_ref=due.provider_ref, attempt=attempts, error=error, retry_at=retry_at.isoformat())

        await ctx.db.write(failed)
        metrics.PAYMENT_CANCELS.labels("failed").inc()
        log.warning("payment.cancel_failed reservation=%s provider=%s attempt=%d error=%s retry_in=%.1fs",
                    reservation_id, ctx.payments.name, attempts, error, (retry_at - failed_at).total_seconds())
        return False
    done_at = ctx.clock.now()

    def done(s: Session) -> None:
        record_cancel_done(s, reservation_id, now=done_at)
        audit(s, actor=ACTOR, action="payment.cancelled", at=done_at, charge_point_id=due.charge_point_id,
              connector_id=due.connector_id, subject=reservation_id, provider=ctx.payments.name,
              provider_ref=due.provider_ref, attempt=due.attempts + 1)

    await ctx.db.write(done)
    metrics.PAYMENT_CANCELS.labels("cancelled").inc()
    log.info("payment.cancelled reservation=%s provider=%s attempt=%d", reservation_id, ctx.payments.name,
             due.attempts + 1)
    return True


async def cancel_due(ctx: Context) -> int:
    """Every cancel due now, one after the other; returns how many succeeded."""
    now = ctx.clock.now()
    ids = await ctx.db.read(lambda s: due_cancels(s, now))
    done = 0
    for reservation_id in ids:
        done += bool(await cancel_now(ctx, reservation_id))
    return done


async def run_payment_cancels(ctx: Context, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Until cancelled: make due cancels, then sleep until the next one is due or someone nudges."""
    task_status.started()
    while True:
        try:
            await cancel_due(ctx)
            upcoming = await ctx.db.read(next_cancel_due)
        except Exception:
            log.exception("payment.cancel_round_failed (will retry)")
            upcoming = None
        wait = _IDLE_POLL_S
        if upcoming is not None:
            from .clock import as_utc

            wait = min(wait, max(0.05, (as_utc(upcoming) - ctx.clock.now()).total_seconds()))
        with trio.move_on_after(wait):
            await ctx.payment_cancels_due.wait()
        ctx.payment_cancels_due = trio.Event()
