"""Seed 000 "network failures during charging": the admin unlocks while the charger is offline.

The charger's connection drops mid-session (no WebSocket close). Offline, the car
charges on and then leaves; the StopTransaction waits in the charger's queue. The admin
unlocks meanwhile: the charger cannot be reached, but the session is force-ended from
the last meter sample the CSMS has. When the charger comes back it replays its queue,
and the late StopTransaction reconciles the session: the exact energy, and the fee from it.
"""

from decimal import Decimal

import trio

from scenarios.adapters.base import OFFLINE
from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED
from simulator import GroupSpec

TARIFF = Decimal("4.00")  # per kWh: a session of seconds delivers a few Wh, this makes its fee a few cents
BACK_AFTER = 8.0  # s the charger stays away (long enough for the unlock to land while it is away, under load too)


async def _until_verdict(csms, key: tuple[str, int], want: str, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        while (await csms.verdicts([key]))[key].verdict != want:
            await trio.sleep(0.2)
        return True
    return False


@scenario(
    code="DMS",
    purpose="connection lost mid-session, car leaves offline, admin unlocks meanwhile -> queued "
    "StopTransaction reconciles the force-ended session",
    seed="000 Problem Statement: network failures during charging; FAQ: billing accuracy",
    quick_s=14,
    needs=("remote_start", "unlock_cleanup", "sessions"),
)
async def test_disconnect_mid_session(fleet, oracle, csms):
    cars = GroupSpec(prefix="", count=1, connectors=1, power_kw=(22.0, 22.0), target_kwh=(40.0, 40.0))
    away = max(BACK_AFTER, oracle.profile.offline_after + oracle.profile.live_evidence + 4.0)
    f = await fleet(f"disconnect_mid_session=1,after=2:2,back_after={away},replay=true", groups=[cars])
    cp = f.ids[0]

    started = await csms.start(cp, 1, "TAG0001", TARIFF)
    await oracle.require(started.accepted, f"app start on a free connector refused: {started}", cp=cp, connector=1)
    oracle.session_tariff(started.session_id, TARIFF)
    await oracle.until(
        lambda: f[cp].connector_truth(1).transaction_id is not None,
        10,
        "the car to charge",
        blame=NEVER_STARTED,
        cp=cp,
        connector=1,
    )
    await oracle.until(lambda: not f[cp].truth().connected, 10, "the connection to drop")
    noticed = await _until_verdict(csms, (cp, 1), OFFLINE, oracle.profile.offline_after + 3.0)
    oracle.expect(noticed, "the charger's connection closed, but the CSMS never said offline", cp=cp, connector=1)
    oracle.note(f"connection lost at t={oracle.now():.1f}s with the car charging; the CSMS says offline: {noticed}")

    # The car charges on, unseen, past the CSMS's live-evidence window: its last sample, received before the
    # connection dropped, no longer says it is charging, so the admin's unlock cleans the session.
    await oracle.wait(oracle.profile.live_evidence + 0.5)
    await f[cp].unplug(1)  # it leaves: StopTransaction is queued in the charger
    queued = f[cp].truth().queued
    unlocked = await csms.unlock(cp, 1)  # the admin, meanwhile
    oracle.note(
        f"car left offline ({queued} message(s) queued); unlock: {unlocked.status} {unlocked.message!r} "
        f"cleaned={list(unlocked.cleaned_sessions)}"
    )
    oracle.expect(not unlocked.unlocked, f"unlock of an offline charger said unlocked: {unlocked}", cp=cp, connector=1)
    if oracle.seed_api:
        oracle.expect(
            (unlocked.status, unlocked.message) == (400, "Charger is offline"),
            f"not the seed's answer to unlocking an offline charger: {unlocked}",
        )
    await oracle.require(
        unlocked.cleaned_sessions == (started.session_id,),
        f"unlock did not end the stuck session {started.session_id}: {unlocked}",
        claim="unlock_cleanup",
        cp=cp,
        connector=1,
    )
    estimate = await csms.session(started.session_id)
    oracle.note(f"force-ended while offline: {estimate.energy_wh} Wh, fee {estimate.fee} ({estimate.meter_source})")

    await oracle.until(lambda: f[cp].truth().connected, away + 10, "the charger to come back")
    oracle.recovery_starts()  # it says Available as soon as it is back
    with trio.fail_after(10):
        await f[cp].flush()  # the queue is replayed: MeterValues, StopTransaction
    late = await csms.session(started.session_id)
    real = f[cp].connector_truth(1).session_energy_wh
    oracle.note(
        f"after the replay: {late.energy_wh} Wh (charger measured {real:.1f}), fee {late.fee} "
        f"({late.meter_source}, reconciled={late.reconciled})"
    )
    oracle.expect(
        estimate.energy_wh is not None and late.energy_wh is not None and estimate.energy_wh < late.energy_wh,
        f"the late StopTransaction did not correct the estimate: {estimate.energy_wh} Wh then {late.energy_wh} Wh",
        claim="sessions",
        cp=cp,
        connector=1,
    )
    if oracle.seed_api:
        oracle.expect(
            (estimate.meter_source, late.reconciled, late.meter_source, late.end_reason)
            == ("meter_values", True, "meter_stop", "ForceEnded"),
            f"not the seed's reconciled session: {estimate} then {late}",
        )
    await oracle.wait(2.5)
    # Nothing lost: the stored meterStop is the acknowledged one, session energy = transaction energy, fee follows.
    await oracle.judge(window=2.0)
