"""Seed 001 "Race after remote start": an accepted remote start is not an occupied connector.

A charger that never reports its connectors' status (so the CSMS has only what it
stored itself) gets two starts from the app: connector 1 rejects the remote start,
connector 2 accepts it and then nothing happens (no car, no StartTransaction). Neither
may be reported busy, and both can be started again at once: an accept must not be
stored as Occupied.
"""

from decimal import Decimal

from scenarios.adapters.base import Outcome
from scenarios.meta import scenario

TARIFF = Decimal("0.35")


@scenario(
    code="RRS",
    purpose="remote start Rejected / Accepted-but-never-started on a charger that reports no "
    "status -> both connectors stay free",
    seed="001 Common false positives: Race after remote start",
    quick_s=5,
    needs=("occupancy", "remote_start"),
)
async def test_race_after_remote_start(fleet, oracle, csms):
    f = await fleet(
        "reject_remote_start=1,connectors=1",
        "accept_remote_start_never_start=1,connectors=2",
        "silent_connector=1,ignore_trigger=true",
        connectors=2,
    )
    cp = f.ids[0]

    rejected = await csms.start(cp, 1, "TAG0001", TARIFF)
    oracle.expect(
        not rejected.accepted and rejected.code == Outcome.REMOTE_START_REJECTED,
        f"the charger rejected the remote start, the CSMS answered {rejected}",
        cp=cp,
        connector=1,
    )
    ghost = await csms.start(cp, 2, "TAG0002", TARIFF)
    await oracle.require(ghost.accepted, f"the charger accepted the remote start: {ghost}", cp=cp, connector=2)
    # ... and then nothing happens on connector 2
    oracle.recovery_starts()
    oracle.note(f"connector 1: {rejected.status} {rejected.code}; connector 2: {ghost.status} (never started)")

    window = 2.0  # nothing to heal: a correct CSMS never says busy here
    await oracle.wait(window + 1.0)
    again = {c: await csms.start(cp, c, f"TAG000{2 + c}", TARIFF) for c in (1, 2)}
    oracle.note(
        "starts again: "
        + ", ".join(f"connector {c}: {r.status} {r.code or ''} {list(r.reasons)}" for c, r in again.items())
    )
    for c, r in again.items():
        oracle.expect(
            r.code != Outcome.CONNECTOR_BUSY,
            f"a start on connector {c}, free all along, was refused as busy: {r}",
            cp=cp,
            connector=c,
        )
    await oracle.wait(2.0)
    await oracle.judge(window=window)
