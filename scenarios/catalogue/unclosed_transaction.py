"""Seed 001 "Unclosed transaction: StopTransaction never received", the charger still says Available.

Two cars charge, one started from the app, one with a card. Both leave; the charger
never sends their StopTransaction but reports the connectors Available. The CSMS must
close both transactions by itself (energy within one meter sample, the app session
billed at its tariff) and report both connectors free within the window.
"""

from decimal import Decimal

from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED

TARIFF = Decimal("0.31")


@scenario(
    code="UTX",
    purpose="StopTransaction lost, connector reported Available -> orphaned transaction closed "
    "with the last meter sample, connector free",
    seed="001 Common false positives: Unclosed transaction (StopTransaction never received)",
    quick_s=10,
    needs=("remote_start",),
)
async def test_unclosed_transaction(fleet, oracle, csms):
    f = await fleet("drop_stop_transaction=1,available=true", connectors=2)
    cp = f.ids[0]
    t = oracle.profile

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
        await f[cp].unplug(c)  # the car leaves: Available is sent, StopTransaction is not
    await f[cp].flush()
    oracle.recovery_starts()

    # The orphan rule: Available for the grace period, then closed at the next maintenance round.
    window = t.orphan_grace + 2 * t.sweep_interval + 2.0
    await oracle.recover(window)
    await oracle.judge(window=window)
