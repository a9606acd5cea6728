"""Seed 000 "OCPP Unlock Failed (But Sessions Still Cleaned)", three ways, on three chargers at once.

One charger answers UnlockFailed (the gun is stuck in a car that is still charging), one
NotSupported, one never answers. Each unlock answers 400 with the seed's failure shape and
message, and each stuck session is cleaned all the same. Where the car had really gone,
the connector is free again; where it still charges, the CSMS must never call it free,
whatever the cleanup did to its own records. That car leaves later; its StopTransaction
then reconciles the force-ended session.
"""

from decimal import Decimal

import trio

from scenarios.meta import scenario
from simulator import GroupSpec, parse_fault_option

TARIFF = Decimal("4.00")  # per kWh: a session of seconds delivers a few Wh, this makes its fee a few cents
LOST_STOP = (parse_fault_option("drop_stop_transaction=1,available=false"),
             parse_fault_option("silent_connector=1,ignore_trigger=true"))
CHARGERS = {  # group prefix -> (its faults, what unlock-connector must answer)
    "FAILED": ((parse_fault_option("unlock_failed=1"),),
               "UnlockFailed: the charge point could not unlock the connector"),
    "NOTSUP": ((parse_fault_option("unlock_not_supported=1"), *LOST_STOP),
               "NotSupported: the charge point does not support remote unlock"),
    "NOANSWER": ((parse_fault_option("unlock_no_answer=1"), *LOST_STOP), "Charge point did not respond in time"),
}


@scenario(code="UFX", purpose="unlock answered UnlockFailed / NotSupported / nothing: 400, sessions still cleaned, "
                              "a still-charging car's connector never free",
          seed="000 Response Examples: OCPP Unlock Failed (But Sessions Still Cleaned)", quick_s=12)
async def test_unlock_failures(fleet, oracle, csms):
    f = await fleet(groups=[GroupSpec(prefix=p, count=1, connectors=1, faults=faults)
                            for p, (faults, _) in CHARGERS.items()])
    cp = {p: next(i for i in f.ids if i.endswith(f"-{p}0001")) for p in CHARGERS}

    sessions = {}
    for p, cp_id in cp.items():
        started = await csms.start(cp_id, 1, f"TAG{len(sessions) + 1:04d}", TARIFF)
        assert started.accepted, (p, started)
        oracle.session_tariff(started.session_id, TARIFF)
        sessions[p] = started.session_id
    await oracle.until(lambda: all(f[i].connector_truth(1).transaction_id is not None for i in cp.values()),
                       10, "three cars charging")
    await oracle.wait(2.0)
    for p in ("NOTSUP", "NOANSWER"):  # these cars leave; their chargers drop StopTransaction and stay silent
        await f[cp[p]].unplug(1)
    await oracle.wait(0.5)

    unlocked = {}

    async def unlock(p: str) -> None:
        unlocked[p] = await csms.unlock(cp[p], 1)

    async with trio.open_nursery() as n:  # the admin unlocks all three at once
        for p in CHARGERS:
            n.start_soon(unlock, p)
    oracle.recovery_starts()
    for p, r in unlocked.items():
        oracle.note(f"{p}: unlock {r.status} {r.message!r} cleaned={list(r.cleaned_sessions)}")
    still = f[cp["FAILED"]].connector_truth(1)
    assert still.transaction_running, f"UnlockFailed must leave the car charging: {still}"

    await oracle.wait(3.0)  # FAILED charges on (never free); NOTSUP and NOANSWER are idle (free)
    await f[cp["FAILED"]].stop(1)  # now the driver gets the gun out
    await f[cp["FAILED"]].unplug(1)
    await oracle.wait(2.5)
    # Never free while a car charges; free once idle, unlock failed or not; nothing lost.
    await oracle.judge(window=2.0, excuse_blinded=False)

    for p, (_, message) in CHARGERS.items():  # the seed's failure shape: only cleanedSessions and warnings
        r = unlocked[p]
        assert (r.unlocked, r.status, r.message) == (False, 400, message), (p, r)
        assert r.cleaned_sessions == (sessions[p],) and r.sessions_cleared is None, (p, r)
        assert r.warnings == (f"Session {sessions[p]} was automatically ended",), (p, r)
    late = await csms.session(sessions["FAILED"])
    assert late.reconciled and late.meter_source == "meter_stop", late  # its StopTransaction came after all
