"""OCPP 2.0.1: the Ended is still in the station's queue when the CSMS asks (CitrineOS core PR #1053).

A car charges on a 2.0.1 station that loses its link; the car leaves while the station is away,
so its TransactionEvent(Ended), with the final meter reading, waits in the station's queue. Back
online, the station takes its time to replay that queue (a few seconds, as many do after a long
outage) while it answers the CSMS at once. An admin unlocks the connector meanwhile: asked
GetTransactionStatus, the station says the transaction is not ongoing but has messages queued.
The transaction is ending, not stuck: the CSMS must not force-end it with an estimate and drop
the Ended that follows. Once the queue arrives, the transaction and the app's session end with
the station's own reading.
"""

from decimal import Decimal

from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED

TARIFF = Decimal("4.00")
CUT_AT = 3.0  # s after the fleet started: the link drops
AWAY = 3.0  # s without a link
HOLD = 6.0  # s the station holds its queue back after reconnecting


@scenario(
    code="QEN",
    purpose="2.0.1: unlock while the station's Ended is still queued (messagesInQueue: true) -> the "
    "session is not force-ended, the Ended that follows bills it",
    seed="000 Retrieves final meter readings from OCPP; CitrineOS core PR #1053",
    quick_s=18,
    needs=("remote_start", "unlock_cleanup"),
    ocpp=("2.0.1",),
    quick_ocpp=("2.0.1",),
)
async def test_queued_ended(fleet, oracle, csms):
    f = await fleet(f"disconnect_mid_session=@{CUT_AT},back_after={AWAY}", f"slow_replay=@0,hold={HOLD}")
    cp = f.ids[0]
    started = await csms.start(cp, 1, "TAG0001", TARIFF)
    await oracle.require(started.accepted, f"app start on a free connector refused: {started}", cp=cp, connector=1)
    oracle.session_tariff(started.session_id, TARIFF)
    await oracle.until(
        lambda: f[cp].connector_truth(1).transaction_id is not None, 10, "the car to charge", blame=NEVER_STARTED
    )
    await oracle.until(lambda: not f[cp].online, CUT_AT + 5, "the link to drop")
    oracle.recovery_starts()
    await oracle.wait(1.0)
    await f[cp].unplug(1)  # the car leaves while the station is away: its Ended is queued
    await oracle.until(lambda: f[cp].online, AWAY + 10, "the station to come back")
    oracle.note(f"back at t={oracle.now():.1f}s, replaying its queue in {HOLD:g} s")

    r = await csms.unlock(cp, 1)  # GetTransactionStatus now: {ongoingIndicator: false, messagesInQueue: true}
    oracle.note(f"unlock while the Ended is queued: {r.status} {r.message!r} cleaned={list(r.cleaned_sessions)}")
    oracle.expect(
        started.session_id not in r.cleaned_sessions,
        f"the unlock force-ended session {started.session_id} while its Ended was still queued at the station: {r}",
        claim="unlock_cleanup",
        cp=cp,
        connector=1,
    )
    await f[cp].flush()  # the queue goes out: the Updated events, the Ended
    await oracle.wait(2.5)
    if oracle.profile.claims_all("sessions"):
        s = await csms.session(started.session_id)
        oracle.note(f"session {s.end_reason}: {s.energy_wh} Wh, fee {s.fee} ({s.meter_source})")
        oracle.expect(s.ended, f"the session did not end with the station's Ended: {s}", claim="sessions")
        if oracle.seed_api:
            oracle.expect(
                s.meter_source == "meter_stop" and not s.reconciled,
                f"not billed from the Ended's own reading: {s}",
            )
    # lost_stop if the stored end is not the Ended's reading; fee = energy x tariff; free once the station
    # has said so (it held its queue for HOLD s after coming back: until then nothing could tell the CSMS).
    await oracle.judge(window=HOLD + 2.0)
