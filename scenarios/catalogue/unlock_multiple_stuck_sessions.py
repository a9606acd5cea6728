"""Seed 000, test 2: three sessions stuck on one connector, one unlock cleans them all.

Two app starts reach a charger that answers Accepted and then does nothing: their
sessions wait forever for a car. A third start charges for real, but the car leaves,
the charger drops its StopTransaction and ignores status requests, so the gun is "in
use". unlock-connector force-ends all three (each listed, count 3), closes the
transaction from its last meter sample, and the connector takes the next car.
"""

from decimal import Decimal

from scenarios.adapters.base import Outcome
from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED

TARIFF = Decimal("0.30")


@scenario(
    code="UMS",
    purpose="two never-started app sessions + one with a lost stop -> one unlock cleans all three",
    seed="000 Testing Scenarios, Test 2: Multiple Stuck Sessions",
    quick_s=9,
    needs=("remote_start", "unlock_cleanup"),
)
async def test_unlock_multiple_stuck_sessions(fleet, oracle, csms):
    f = await fleet(
        # The first two RemoteStartTransactions are accepted and never started (two schedules: one firing each).
        "accept_remote_start_never_start=@0",
        "accept_remote_start_never_start=@0",
        "drop_stop_transaction=1,available=false",
        "silent_connector=1,ignore_trigger=true",
    )
    cp = f.ids[0]

    ghosts = []
    for tag in ("TAG0001", "TAG0002"):  # accepted, then nothing: no Preparing, no StartTransaction
        started = await csms.start(cp, 1, tag, TARIFF)
        await oracle.require(started.accepted, f"app start on a free connector refused: {started}", cp=cp, connector=1)
        ghosts.append(started.session_id)
    oracle.note(f"two app starts accepted by the charger and never started: {ghosts}")

    real = await csms.start(cp, 1, "TAG0003", TARIFF)  # the third one charges
    await oracle.require(real.accepted, f"app start on a free connector refused: {real}", cp=cp, connector=1)
    oracle.session_tariff(real.session_id, TARIFF)
    await oracle.until(
        lambda: f[cp].connector_truth(1).transaction_id is not None,
        10,
        "the car to charge",
        blame=NEVER_STARTED,
        cp=cp,
        connector=1,
    )
    await oracle.wait(2.5)  # a few meter samples
    await f[cp].unplug(1)  # the car leaves; StopTransaction is never sent, status requests are ignored

    await oracle.wait(oracle.profile.live_evidence + 1.0)  # its last meter sample is no longer live evidence
    refused = await csms.start(cp, 1, "TAG0004", TARIFF)  # "Charging gun is already in use"
    oracle.expect(
        not refused.accepted and refused.code == Outcome.CONNECTOR_BUSY,
        f"a start on the connector holding stuck sessions was not refused as busy: {refused}",
        cp=cp,
        connector=1,
    )
    oracle.note(f"next start refused: {refused.status} {refused.code} {list(refused.reasons)}")

    stuck = (*ghosts, real.session_id)
    unlocked = await csms.unlock(cp, 1)  # the admin action
    oracle.recovery_starts()
    oracle.note(f"unlock: {unlocked.status} {unlocked.message} cleaned={list(unlocked.cleaned_sessions)}")
    oracle.expect(unlocked.unlocked, f"the charger unlocks, the CSMS answered {unlocked}", cp=cp, connector=1)
    oracle.expect(
        sorted(unlocked.cleaned_sessions) == sorted(stuck),
        f"unlock ended {list(unlocked.cleaned_sessions)}, the stuck sessions are {list(stuck)}",
        claim="unlock_cleanup",
        cp=cp,
        connector=1,
    )
    if oracle.seed_api:  # the seed's answer: the count, the sentence, one warning per session
        oracle.expect(
            unlocked.sessions_cleared == len(stuck)
            and unlocked.message.endswith(f". {len(stuck)} stuck session(s) automatically cleared.")
            and all(f"Session {sid} was automatically ended" in unlocked.warnings for sid in stuck),
            f"not the seed's answer to an unlock that cleared {len(stuck)} sessions: {unlocked}",
        )
    if oracle.profile.claims_all("sessions"):
        for sid in ghosts:  # no transaction, no energy: ended at no cost
            s = await csms.session(sid)
            oracle.expect(
                s.ended is not False and s.energy_wh in (0, None) and s.fee in (Decimal("0.00"), None),
                f"a session that never started was not ended at no cost by the unlock: {s}",
                claim="sessions",
                cp=cp,
                connector=1,
            )
            if oracle.seed_api:
                oracle.expect(
                    (s.status, s.energy_wh, s.fee, s.end_reason) == ("Ended", 0, Decimal("0.00"), "ForceEnded"),
                    f"not the seed's force-ended session: {s}",
                )
        s = await csms.session(real.session_id)
        oracle.note(f"charged session force-ended: {s.energy_wh} Wh, fee {s.fee} ({s.meter_source})")

    await oracle.wait(1.0)
    again = await csms.start(cp, 1, "TAG0005", TARIFF)  # the connector takes the next car
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
    await oracle.wait(2.0)
    # The admin told the CSMS the truth: from here on nothing excuses a busy connector or an open transaction.
    await oracle.judge(window=2.0, excuse_blinded=False)
