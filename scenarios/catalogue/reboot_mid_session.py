"""Seed 000 "system crashes": the charger reboots mid-session and forgets its transaction.

Power is lost during a session: the connection drops, the charger boots again and
reports the connector Preparing (the car is still plugged in), but its transaction is
gone: no StopTransaction will ever come. When the car leaves and the charger says
Available, the CSMS must close the orphaned transaction by itself (energy of the last
meter sample) and report the connector free within the orphan grace; no admin needed.
"""

from decimal import Decimal

from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED
from simulator import GroupSpec

TARIFF = Decimal("4.00")  # per kWh: a session of seconds delivers a few Wh, this makes its fee a few cents


@scenario(
    code="RBT",
    purpose="charger reboots mid-session (transaction forgotten) -> car leaves -> orphan sweep "
    "closes it from the last sample, connector free",
    seed="000 Problem Statement: system crashes",
    quick_s=11,
    needs=("remote_start",),
)
async def test_reboot_mid_session(fleet, oracle, csms):
    cars = GroupSpec(prefix="", count=1, connectors=1, power_kw=(11.0, 11.0), target_kwh=(40.0, 40.0))
    f = await fleet("reboot=1,after=2:2,boot_delay=1.5", groups=[cars])
    cp = f.ids[0]
    t = oracle.profile
    window = t.orphan_grace + 2 * t.sweep_interval + 1.0  # the sweep that must free the connector

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
    await oracle.until(lambda: not f[cp].truth().connected, 10, "the reboot")
    await oracle.until(lambda: f[cp].online, 10, "the charger to boot again")
    truth = f[cp].connector_truth(1)
    oracle.note(
        f"rebooted at t≈{oracle.now():.1f}s: connector {truth.state}, transaction running: "
        f"{truth.transaction_running}, reported {truth.reported_status}"
    )

    await oracle.wait(1.0)  # the car is still plugged in (Preparing): busy, rightly
    await f[cp].unplug(1)  # the car leaves; the charger says Available
    oracle.recovery_starts()
    await oracle.recover(window)
    for tx in await csms.transactions(oracle.prefix):
        oracle.note(
            f"transaction {tx.transaction_id}: closed={tx.closed} {tx.stop_reason} "
            f"{None if tx.meter_stop is None else tx.meter_stop - tx.meter_start} Wh"
        )
        if oracle.seed_api and oracle.profile.claims_all("sessions"):
            s = await csms.session(started.session_id)
            oracle.expect(
                (tx.stop_reason, s.end_reason, s.meter_source) == ("Orphaned", "Orphaned", "meter_values"),
                f"not the seed's orphan sweep: {tx} {s}",
            )
    # Free within the window, the transaction closed with the energy of its last sample, the fee from it.
    await oracle.judge(window=window)
