"""Seed 000, test 1: a stuck session blocks the gun until the admin unlocks it; then it starts again.

The charger drops its StopTransaction and ignores status requests, so nothing
but the admin can tell the CSMS the car has gone: exactly the seed's "Charging
gun is already in use". After unlock-connector the session is force-ended with
the energy of the last meter sample and its fee, and a new start succeeds.
"""

from decimal import Decimal

from scenarios.adapters.base import Outcome
from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED

TARIFF = Decimal("0.25")


@scenario(
    code="UNL",
    purpose="stuck session -> start refused -> admin unlock force-ends it -> start works",
    seed="000 Testing Scenarios, Test 1: Unlock with Stuck Session",
    quick_s=12,
    needs=("remote_start", "unlock_cleanup"),
)
async def test_unlock_stuck_session(fleet, oracle, csms):
    f = await fleet("drop_stop_transaction=1,available=false", "silent_connector=1,ignore_trigger=true")
    cp = f.ids[0]

    first = await csms.start(cp, 1, "TAG0001", TARIFF)  # 1. start a session from the app
    await oracle.require(first.accepted, f"app start on a free connector refused: {first}", cp=cp, connector=1)
    oracle.session_tariff(first.session_id, TARIFF)
    await oracle.until(
        lambda: f[cp].connector_truth(1).transaction_id is not None,
        10,
        "the car to charge",
        blame=NEVER_STARTED,
        cp=cp,
        connector=1,
    )
    await oracle.wait(3.5)  # a few meter samples
    await f[cp].unplug(1)  # 2. the car leaves; StopTransaction is never sent

    await oracle.wait(oracle.profile.live_evidence + 1.0)  # its last meter sample is no longer live evidence
    refused = await csms.start(cp, 1, "TAG0002", TARIFF)  # 3. "Charging gun is already in use"
    oracle.expect(
        not refused.accepted and refused.code == Outcome.CONNECTOR_BUSY,
        f"a start on the connector holding a stuck session was not refused as busy: {refused}",
        cp=cp,
        connector=1,
    )
    oracle.note(f"second start refused: {refused.status} {refused.code} {list(refused.reasons)}")

    unlocked = await csms.unlock(cp, 1)  # 4. the admin action
    oracle.expect(unlocked.unlocked, f"the charger unlocks, the CSMS answered {unlocked}", cp=cp, connector=1)
    oracle.expect(
        unlocked.cleaned_sessions == (first.session_id,),
        f"unlock did not end the stuck session {first.session_id}: {unlocked}",
        claim="unlock_cleanup",
        cp=cp,
        connector=1,
    )
    oracle.recovery_starts()
    oracle.note(f"unlock: {unlocked.message}")

    await oracle.wait(1.0)
    again = await csms.start(cp, 1, "TAG0003", TARIFF)  # 5. success
    oracle.note(f"start after unlock: {again.status} {again.code or ''} {list(again.reasons)}")
    if again.accepted:
        oracle.session_tariff(again.session_id, TARIFF)
        await oracle.until(
            lambda: f[cp].connector_truth(1).transaction_id is not None,
            10,
            "the new car to charge",
            blame=NEVER_STARTED,
            cp=cp,
            connector=1,
        )
    oracle.expect(again.accepted, f"the start after unlock was refused: {again}", cp=cp, connector=1)
    await oracle.wait(1.5)
    # The admin told the CSMS the truth: from here on nothing excuses a busy connector.
    await oracle.judge(window=2.0, excuse_blinded=False)
