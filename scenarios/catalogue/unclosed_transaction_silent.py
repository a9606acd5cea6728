"""Seed 001 "Unclosed transaction", the silent kind: after the car leaves the charger says nothing at all.

Two cars charge (one from the app, one with a card) and leave; the charger sends neither
StopTransaction nor any status, so the CSMS last heard Charging. It must notice the
transactions went quiet, ask the charger for the connectors' status (TriggerMessage,
answered with the real Available), close the transactions (energy within one meter
sample) and report the connectors free within the recovery window.
"""

from decimal import Decimal

from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED

TARIFF = Decimal("0.42")


@scenario(
    code="UTQ",
    purpose="StopTransaction lost and no status after the car left -> quiet transaction "
    "probed, closed with the last meter sample, connector free",
    seed="001 Common false positives: Unclosed transaction (offline charger, watchdog missing)",
    quick_s=15,
    needs=("remote_start",),
)
async def test_unclosed_transaction_silent(fleet, oracle, csms):
    f = await fleet("drop_stop_transaction=1,available=false", connectors=2)
    cp = f.ids[0]

    app = await csms.start(cp, 1, "TAG0001", TARIFF)  # connector 1: started from the app
    await oracle.require(app.accepted, f"app start on a free connector refused: {app}", cp=cp, connector=1)
    oracle.session_tariff(app.session_id, TARIFF)
    await f[cp].plug_in(2)  # connector 2: a card at the charger
    await f[cp].start_by_tag(2, "TAG0002")
    await oracle.until(
        lambda: all(f[cp].connector_truth(c).transaction_id is not None for c in (1, 2)),
        10,
        "both cars to charge",
        blame=NEVER_STARTED,
        cp=cp,
    )
    await oracle.wait(3.0)  # a few meter samples (one a second)

    for c in (1, 2):
        await f[cp].unplug(c)  # the car leaves: no StopTransaction, no status, silence
    oracle.recovery_starts()

    await oracle.recover()  # the default window is made for this path: quiet probe, then the orphan rule
    await oracle.judge()
