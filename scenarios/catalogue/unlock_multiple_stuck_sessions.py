"""Seed 000, test 2: three sessions stuck on one connector, one unlock cleans them all.

Two app starts reach a charger that answers Accepted and then does nothing: their
sessions wait forever for a car. A third start charges for real, but the car leaves,
the charger drops its StopTransaction and ignores status requests, so the gun is "in
use". unlock-connector force-ends all three (each listed, count 3), closes the
transaction from its last meter sample, and the connector takes the next car.
"""

from decimal import Decimal

from scenarios.meta import scenario

TARIFF = Decimal("0.30")


@scenario(
    code="UMS",
    purpose="two never-started app sessions + one with a lost stop -> one unlock cleans all three",
    seed="000 Testing Scenarios, Test 2: Multiple Stuck Sessions",
    quick_s=9,
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
        assert started.accepted, f"an app start on a free connector was refused: {started}"
        ghosts.append(started.session_id)
    oracle.note(f"two app starts accepted by the charger and never started: {ghosts}")

    real = await csms.start(cp, 1, "TAG0003", TARIFF)  # the third one charges
    assert real.accepted, real
    oracle.session_tariff(real.session_id, TARIFF)
    await oracle.until(lambda: f[cp].connector_truth(1).transaction_id is not None, 10, "the car to charge")
    await oracle.wait(2.5)  # a few meter samples
    await f[cp].unplug(1)  # the car leaves; StopTransaction is never sent, status requests are ignored

    await oracle.wait(oracle.timings.live_evidence + 1.0)  # its last meter sample is no longer live evidence
    refused = await csms.start(cp, 1, "TAG0004", TARIFF)  # "Charging gun is already in use"
    assert not refused.accepted and refused.code == "ConnectorBusy", refused
    oracle.note(f"next start refused: {refused.status} {refused.code} {list(refused.reasons)}")

    stuck = (*ghosts, real.session_id)
    unlocked = await csms.unlock(cp, 1)  # the admin action
    oracle.recovery_starts()
    oracle.note(f"unlock: {unlocked.status} {unlocked.message} cleaned={list(unlocked.cleaned_sessions)}")
    assert unlocked.unlocked, unlocked
    assert sorted(unlocked.cleaned_sessions) == sorted(stuck), f"cleaned {unlocked.cleaned_sessions}, stuck {stuck}"
    assert unlocked.sessions_cleared == len(stuck), unlocked
    assert unlocked.message.endswith(f". {len(stuck)} stuck session(s) automatically cleared."), unlocked.message
    assert all(f"Session {sid} was automatically ended" in unlocked.warnings for sid in stuck), unlocked.warnings
    for sid in ghosts:  # no transaction, no energy: ended at no cost
        s = await csms.session(sid)
        assert (s.status, s.energy_wh, s.fee, s.end_reason) == ("Ended", 0, Decimal("0.00"), "ForceEnded"), s
    s = await csms.session(real.session_id)
    oracle.note(f"charged session force-ended: {s.energy_wh} Wh, fee {s.fee} ({s.meter_source})")

    await oracle.wait(1.0)
    again = await csms.start(cp, 1, "TAG0005", TARIFF)  # the connector takes the next car
    oracle.note(f"start after unlock: {again.status} {again.code or ''} {list(again.reasons)}")
    if again.accepted:
        oracle.session_tariff(again.session_id, TARIFF)
        await oracle.until(lambda: f[cp].connector_truth(1).transaction_id is not None, 10, "the new car to charge")
    await oracle.wait(2.0)
    # The admin told the CSMS the truth: from here on nothing excuses a busy connector or an open transaction.
    await oracle.judge(window=2.0, excuse_blinded=False)
    assert again.accepted, f"the start after unlock was refused: {again}"
