"""Seed 000 "OCPP Unlock Failed (But Sessions Still Cleaned)", three ways, and a car still charging.

Three chargers whose cars have gone but whose StopTransaction was lost: one answers
UnlockFailed (the gun is stuck), one NotSupported, one never answers. Each unlock answers
400 with the seed's failure shape and message, and each stuck session is cleaned all the
same; the connectors are free again. On a fourth charger (one that also answers
UnlockFailed) the car is still charging, its meter samples coming in: that session is not
stuck, so the unlock must leave it open, and the CSMS must never call the connector free.
The car leaves later; its own StopTransaction ends and bills the session.
"""

from decimal import Decimal

import trio

from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED
from simulator import GroupSpec, parse_fault_option

TARIFF = Decimal("4.00")  # per kWh: a session of seconds delivers a few Wh, this makes its fee a few cents
LOST_STOP = (
    parse_fault_option("drop_stop_transaction=1,available=false"),
    parse_fault_option("silent_connector=1,ignore_trigger=true"),
)
CHARGERS = {  # group prefix -> (its faults, what unlock-connector must answer)
    "FAILED": (
        (parse_fault_option("unlock_failed=1"), *LOST_STOP),
        "UnlockFailed: the charge point could not unlock the connector",
    ),
    "NOTSUP": (
        (parse_fault_option("unlock_not_supported=1"), *LOST_STOP),
        "NotSupported: the charge point does not support remote unlock",
    ),
    "NOANSWER": ((parse_fault_option("unlock_no_answer=1"), *LOST_STOP), "Charge point did not respond in time"),
}


LIVE = "LIVE"  # answers UnlockFailed too, but its car is still charging


@scenario(
    code="UFX",
    purpose="unlock answered UnlockFailed / NotSupported / nothing: 400, sessions still cleaned; "
    "a session still charging is left open and its connector never free",
    seed="000 Response Examples: OCPP Unlock Failed (But Sessions Still Cleaned)",
    quick_s=14,
    needs=("remote_start", "unlock_cleanup"),
)
async def test_unlock_failures(fleet, oracle, csms):
    groups = [GroupSpec(prefix=p, count=1, connectors=1, faults=faults) for p, (faults, _) in CHARGERS.items()]
    groups.append(GroupSpec(prefix=LIVE, count=1, connectors=1, faults=(parse_fault_option("unlock_failed=1"),)))
    f = await fleet(groups=groups)
    cp = {p: next(i for i in f.ids if i.endswith(f"-{p}0001")) for p in (*CHARGERS, LIVE)}

    sessions = {}
    for p, cp_id in cp.items():
        started = await csms.start(cp_id, 1, f"TAG{len(sessions) + 1:04d}", TARIFF)
        await oracle.require(
            started.accepted, f"app start on a free connector refused: {started}", cp=cp_id, connector=1
        )
        oracle.session_tariff(started.session_id, TARIFF)
        sessions[p] = started.session_id
    await oracle.until(
        lambda: all(f[i].connector_truth(1).transaction_id is not None for i in cp.values()),
        10,
        "four cars charging",
        blame=NEVER_STARTED,
    )
    await oracle.wait(2.0)
    for p in CHARGERS:  # these cars leave; their chargers drop StopTransaction and stay silent
        await f[cp[p]].unplug(1)
    await oracle.wait(oracle.profile.live_evidence + 1.0)  # their last meter samples are no longer live evidence

    unlocked = {}

    async def unlock(p: str) -> None:
        unlocked[p] = await csms.unlock(cp[p], 1)

    async with trio.open_nursery() as n:  # the admin unlocks all four at once
        for p in cp:
            n.start_soon(unlock, p)
    oracle.recovery_starts()
    for p, r in unlocked.items():
        oracle.note(f"{p}: unlock {r.status} {r.message!r} cleaned={list(r.cleaned_sessions)}")
    still = f[cp[LIVE]].connector_truth(1)
    oracle.expect(
        still.transaction_running,
        f"the unlock stopped a car that was still charging: {still}",
        cp=cp[LIVE],
        connector=1,
    )
    for p, (_, message) in CHARGERS.items():
        r = unlocked[p]
        oracle.expect(not r.unlocked, f"the charger could not unlock, the CSMS said unlocked: {r}", cp=cp[p])
        oracle.expect(
            r.cleaned_sessions == (sessions[p],),
            f"a failed unlock did not end the stuck session {sessions[p]}: {r}",
            claim="unlock_cleanup",
            cp=cp[p],
            connector=1,
        )
        if oracle.seed_api:  # the seed's failure shape: only cleanedSessions and warnings
            oracle.expect(
                (r.status, r.message, r.sessions_cleared, r.warnings)
                == (400, message, None, (f"Session {sessions[p]} was automatically ended",)),
                f"not the seed's answer to a failed unlock: {r}",
            )
    live = unlocked[LIVE]
    oracle.expect(
        not live.unlocked and sessions[LIVE] not in live.cleaned_sessions,
        f"the unlock ended the session of a car still charging: {live}",
        claim="unlock_cleanup",
        cp=cp[LIVE],
        connector=1,
    )

    await oracle.wait(3.0)  # LIVE charges on (never free); the others are idle (free)
    await f[cp[LIVE]].stop(1)  # now the driver stops and takes the gun out
    await f[cp[LIVE]].unplug(1)
    await oracle.wait(2.5)
    if oracle.profile.claims_all("sessions"):
        billed = await csms.session(sessions[LIVE])  # ended by its own StopTransaction, not by the unlock
        oracle.note(f"{LIVE}: session ended {billed.end_reason} with {billed.energy_wh} Wh ({billed.meter_source})")
        if oracle.seed_api:
            oracle.expect(
                (billed.end_reason, billed.meter_source, billed.reconciled) == ("Local", "meter_stop", False),
                f"the charging car's session was not ended by its own StopTransaction: {billed}",
            )
    # Never free while a car charges; free once idle, unlock failed or not; nothing lost.
    await oracle.judge(window=2.0, excuse_blinded=False)
