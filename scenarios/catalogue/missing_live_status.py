"""Seed 001 "Missing live status": online, but never a status for that connector after boot.

A car is plugged in (the CSMS stores Preparing), the charger reboots, the car leaves
meanwhile, and after its boot the charger reports every connector but that one. The
stored Preparing is still fresh, so without asking the CSMS would keep the connector
busy; it must ask (TriggerMessage StatusNotification after the status grace), get the
real Available and report the connector free soon after the boot.
"""

from scenarios.meta import scenario

SILENT_AT = 2.0  # s after the fleet started: while the charger is rebooting


@scenario(
    code="MLS",
    purpose="stored Preparing, reboot, car gone, connector never reported after boot -> CSMS asks "
    "for its status and reports it free within the status grace",
    seed="001 Common false positives: Missing live status",
    quick_s=9,
    needs=("occupancy",),
)
async def test_missing_live_status(fleet, oracle, csms):
    f = await fleet(f"silent_connector=@{SILENT_AT},ignore_trigger=false,connectors=1", connectors=2)
    cp = f.ids[0]
    t = oracle.profile

    await f[cp].plug_in(1)  # Preparing: the CSMS stores it
    await f[cp].flush()
    stored_at = oracle.now()

    f[cp].reboot(delay=SILENT_AT + 1.0 - oracle.now())  # power cycle ...
    await oracle.wait(0.3)
    await f[cp].unplug(1)  # ... the car leaves meanwhile; after the boot connector 1 is never reported
    await oracle.until(lambda: f[cp].online, 10, "the charger to boot again")
    back_at = oracle.now()
    oracle.recovery_starts()
    verdict = (await csms.verdicts([(cp, 1)]))[(cp, 1)]
    oracle.note(
        f"booted at t={back_at:.1f}s, Preparing stored at t={stored_at:.1f}s: CSMS says {verdict.verdict} "
        f"{list(verdict.reasons)}"
    )

    # Well before the stored status goes stale: the status grace, the trigger's answer, slack.
    window = t.status_grace + 3.0
    await oracle.recover(window)
    await oracle.judge(window=window)
