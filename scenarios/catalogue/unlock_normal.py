"""Seed 000, test 3: unlock when nothing is stuck, and unlock of a charger that does it properly.

An admin unlocks a free connector: nothing to clean, "Unlocked", and the connector
stays free. Then the admin unlocks the neighbouring connector while a car charges on
it; the charger honours UnlockConnector the 1.6 way (StopTransaction with reason
UnlockCommand first, then Unlocked), so the transaction ends with the charger's exact
meterStop and the session is billed from it, not from the CSMS's estimate (the charger
samples every 60 s, as many do, so the CSMS has no sample yet and would bill 0 Wh).

With OCPP 2.0.1 stations the second unlock is the 2.0.1 way instead (F05): a station keeps the
cable locked while a transaction runs (OngoingAuthorizedTransaction), so the unlock must not
unlock or end the session; the app stops the session (RequestStopTransaction), the station's
Ended brings its meter, and then the unlock succeeds with nothing left to clean.
"""

from decimal import Decimal

from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED
from simulator import GroupSpec

TARIFF = Decimal("4.00")  # per kWh: a session of seconds delivers a few Wh, this makes its fee a few cents


@scenario(
    code="UNO",
    purpose="unlock a free connector (0 cleared, stays free); unlock a charging one whose charger "
    "stops with UnlockCommand (exact meterStop)",
    seed="000 Testing Scenarios, Test 3: Normal Unlock (No Stuck Sessions)",
    quick_s=6,
    needs=("remote_start",),
)
async def test_unlock_normal(fleet, oracle, csms):
    fast_cars = GroupSpec(
        prefix="",
        count=1,
        connectors=2,
        power_kw=(22.0, 22.0),
        target_kwh=(40.0, 40.0),
        config={"MeterValueSampleInterval": "60"},
    )
    f = await fleet(groups=[fast_cars])
    cp = f.ids[0]
    oracle.recovery_starts()  # no fault anywhere: every idle connector must be free throughout

    started = await csms.start(cp, 2, "TAG0001", TARIFF)  # a car charges on connector 2, started from the app
    await oracle.require(started.accepted, f"app start on a free connector refused: {started}", cp=cp, connector=2)
    oracle.session_tariff(started.session_id, TARIFF)
    await oracle.until(
        lambda: f[cp].connector_truth(2).transaction_id is not None,
        10,
        "the car to charge",
        blame=NEVER_STARTED,
        cp=cp,
        connector=2,
    )

    free = await csms.unlock(cp, 1)  # 1. nothing is stuck on connector 1
    oracle.note(f"unlock of the free connector: {free.status} {free.message!r} cleared={free.sessions_cleared}")
    oracle.expect(free.unlocked, f"unlock of a free connector did not unlock: {free}", cp=cp, connector=1)
    oracle.expect(
        free.cleaned_sessions == (), f"unlock of a free connector ended sessions: {free}", claim="unlock_cleanup"
    )
    if oracle.seed_api:  # the seed's exact answer
        oracle.expect(
            (free.status, free.message, free.sessions_cleared, free.warnings)
            == (200, "Connector unlocked successfully", 0, ()),
            f"not the seed's answer to unlocking a free connector: {free}",
        )

    await oracle.wait(2.5)  # connector 1 keeps being sampled free; connector 2 charges on
    if oracle.ocpp == "2.0.1":
        await _unlock_the_201_way(f, cp, oracle, csms, started.session_id)
        return
    charging = await csms.unlock(cp, 2)  # 2. the charger stops the transaction itself, then unlocks
    oracle.note(
        f"unlock of the charging connector: {charging.status} {charging.message!r} "
        f"cleaned={list(charging.cleaned_sessions)}"
    )
    oracle.expect(charging.unlocked, f"unlock of a charging connector did not unlock: {charging}", cp=cp, connector=2)
    oracle.expect(
        charging.cleaned_sessions == (started.session_id,),
        f"unlock of a charging connector did not end its session {started.session_id}: {charging}",
        claim="unlock_cleanup",
    )
    truth = f[cp].connector_truth(2)
    oracle.expect(
        not truth.transaction_running and truth.state == "unplugged",
        f"the charger was never told to unlock: {truth}",
        cp=cp,
        connector=2,
    )

    await oracle.wait(2.5)  # connector 2 is idle now: it must be reported free
    for tx in [t for t in await csms.transactions(oracle.prefix) if t.connector == 2]:
        oracle.note(f"transaction {tx.transaction_id}: stop {tx.stop_reason} meterStop={tx.meter_stop}")
        oracle.expect(
            tx.stop_reason == "UnlockCommand",
            f"transaction {tx.transaction_id} stored with stop reason {tx.stop_reason}, the charger sent UnlockCommand",
            claim="transactions",
            cp=cp,
            connector=2,
        )
    if oracle.profile.claims_all("sessions"):
        s = await csms.session(started.session_id)
        oracle.note(f"session {s.energy_wh} Wh, fee {s.fee} ({s.meter_source}, reconciled={s.reconciled})")
        if oracle.seed_api:
            oracle.expect(s.meter_source == "meter_stop", f"session billed from {s.meter_source}, not meterStop: {s}")
    # lost_stop if the stored meterStop is not the one the charger sent with UnlockCommand; fee = energy x tariff.
    await oracle.judge(window=2.0)


async def _unlock_the_201_way(f, cp: str, oracle, csms, session_id: str) -> None:
    charging = await csms.unlock(cp, 2)
    oracle.note(f"unlock while it charges: {charging.status} {charging.message!r}")
    oracle.expect(
        not charging.unlocked and charging.cleaned_sessions == (),
        f"an unlock while the station charges unlocked or ended the session (2.0.1 F05): {charging}",
        cp=cp,
        connector=2,
    )
    oracle.expect(
        f[cp].connector_truth(2).transaction_running,
        "the station stopped charging at an unlock it must refuse",
        cp=cp,
        connector=2,
    )
    stopped = await csms.stop(session_id)  # the app ends it: RequestStopTransaction, the station's Ended
    oracle.expect(stopped, f"the app could not stop session {session_id}", cp=cp, connector=2)
    await oracle.until(lambda: not f[cp].connector_truth(2).transaction_running, 10, "the station to end it")
    await f[cp].flush()
    after = await csms.unlock(cp, 2)
    oracle.note(f"unlock after the stop: {after.status} {after.message!r}")
    oracle.expect(after.unlocked, f"unlock after the session ended did not unlock: {after}", cp=cp, connector=2)
    oracle.expect(
        after.cleaned_sessions == (), f"unlock after the stop ended sessions: {after}", claim="unlock_cleanup"
    )
    await oracle.wait(2.5)
    if oracle.profile.claims_all("sessions"):
        s = await csms.session(session_id)
        oracle.note(f"session {s.energy_wh} Wh, fee {s.fee} ({s.meter_source}, reconciled={s.reconciled})")
        if oracle.seed_api:
            oracle.expect(s.meter_source == "meter_stop", f"session billed from {s.meter_source}, not its Ended: {s}")
    await oracle.judge(window=2.0)  # lost_stop if the stored end is not the Ended's meter
