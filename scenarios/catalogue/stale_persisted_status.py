"""Seed 001 "Stale persisted status": a stored status counts only while it is fresh.

A car is plugged in (the charger reports Preparing, the CSMS stores it), the charger
loses its connection, the car leaves while it is away, and it comes back without ever
reporting that connector again (it ignores status requests too). With no live status
the CSMS may say busy from the stored Preparing only while that is fresh, then free.
"""

from scenarios.meta import scenario

SILENT_AT = 2.5  # s after the fleet started: while the charger is away


@scenario(
    code="SPS",
    purpose="stored Preparing, car gone while the charger was away, no live status -> busy "
    "only while the stored status is fresh, then free",
    seed="001 Common false positives: Stale persisted status",
    quick_s=16,
    needs=("occupancy",),
)
async def test_stale_persisted_status(fleet, oracle, csms):
    f = await fleet(f"silent_connector=@{SILENT_AT},ignore_trigger=true,connectors=1")
    cp = f.ids[0]
    freshness = oracle.profile.status_freshness

    await f[cp].plug_in(1)  # Preparing: the CSMS stores it
    await f[cp].flush()
    stored_at = oracle.now()

    f[cp].disconnect(back_after=SILENT_AT + 1.5 - oracle.now())  # the link drops ...
    await oracle.wait(0.5)
    await f[cp].unplug(1)  # ... the car leaves meanwhile (nobody hears of it) ...
    await oracle.until(
        lambda: any(x.name == "silent_connector" for x in f[cp].connector_truth(1).faults),
        5,
        "the connector to fall silent",
    )
    await oracle.until(lambda: f[cp].online, 10, "the charger to come back")  # ... and it returns, silent
    back_at = oracle.now()
    oracle.recovery_starts()
    verdict = (await csms.verdicts([(cp, 1)]))[(cp, 1)]
    oracle.note(
        f"back at t={back_at:.1f}s, Preparing stored at t={stored_at:.1f}s: CSMS says {verdict.verdict} "
        f"{list(verdict.reasons)}"
    )

    # Busy is allowed while the stored Preparing is fresh (plus a little slack), never later.
    window = max(stored_at + freshness + 2.0 - back_at, 2.0)
    await oracle.recover(window)
    await oracle.judge(window=window)
