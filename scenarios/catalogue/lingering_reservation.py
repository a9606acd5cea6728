"""Seed 001 "Lingering reservation": a payment is begun in the app and abandoned.

A client creates a paid reservation and never pays or cancels it. Meanwhile the CSMS
holds the connector (another client's reservation and an app start are refused),
but once the reservation timeout has passed it must cancel the reservation by itself
and report the connector free, and a start from the app must then work.
"""

from decimal import Decimal

from scenarios.adapters.base import Outcome
from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED

TARIFF = Decimal("0.29")


@scenario(
    code="LRS",
    purpose="reservation created, payment abandoned -> connector held until the reservation "
    "timeout, then free and startable",
    seed="001 Common false positives: Lingering reservation",
    quick_s=20,
    needs=("reservations", "remote_start"),
)
async def test_lingering_reservation(fleet, oracle, csms):
    f = await fleet()
    cp = f.ids[0]
    t = oracle.profile
    timeout = t.reservation_timeout

    created = await csms.create_reservation(cp, 1, "TAG0001", TARIFF)  # ... and the client walks away
    await oracle.require(created.accepted, f"a reservation of a free connector was refused: {created}", cp=cp)
    granted_at = oracle.now()
    # Granted: not free until (almost) the timeout; the last second is left to clock skew.
    oracle.hold(cp, 1, granted_at, granted_at + timeout - 1.0)
    oracle.recovery_starts()
    oracle.note(f"reservation {created.session_id} created at t={granted_at:.1f}s, never paid")

    await oracle.wait(1.0)
    other = await csms.create_reservation(cp, 1, "TAG0002", TARIFF)
    oracle.expect(
        not other.accepted and other.code == Outcome.CONNECTOR_BUSY,
        f"a second reservation of a held connector was not refused as busy: {other}",
        cp=cp,
        connector=1,
    )
    start = await csms.start(cp, 1, "TAG0003", TARIFF)
    oracle.expect(
        not start.accepted and start.code == Outcome.CONNECTOR_BUSY,
        f"a start on a held connector was not refused as busy: {start}",
        cp=cp,
        connector=1,
    )
    oracle.note(
        f"while held: reservation {other.status} {other.code}, start {start.status} {start.code} {list(start.reasons)}"
    )

    # After the timeout: one maintenance round to cancel it, plus slack.
    window = 2 * t.sweep_interval + 2.0
    await oracle.wait(max(0.0, granted_at + timeout - 1.0 + window + 1.0 - oracle.now()))
    again = await csms.start(cp, 1, "TAG0004", TARIFF)
    oracle.note(f"start after the timeout: {again.status} {again.code or ''} {list(again.reasons)}")
    if again.accepted:
        oracle.session_tariff(again.session_id, TARIFF)
        await oracle.until(
            lambda: f[cp].connector_truth(1).transaction_id is not None,
            10,
            "the car to charge",
            blame=NEVER_STARTED,
            cp=cp,
            connector=1,
        )
    oracle.expect(again.accepted, f"the start after the reservation timed out was refused: {again}", cp=cp)
    await oracle.wait(1.0)
    await oracle.judge(window=window)
