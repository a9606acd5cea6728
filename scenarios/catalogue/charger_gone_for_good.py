"""A charger drops off the network and never comes back, one connector idle and one charging.

The TCP connection is cut without a WebSocket close and the charger never reconnects.
The CSMS must report both connectors offline from then on, and still offline at the
end: never free (nobody can start on a charger that is gone, and a car may still be
charging there).
"""

from scenarios.meta import scenario

CUT_AT = 3.0  # s after the fleet started


@scenario(
    code="GON",
    purpose="link cut for good with one connector idle and one charging -> both offline, never free, to the end",
    seed="001 Signals: WebSocket presence (offline charger, ChargerOffline)",
    quick_s=10,
    needs=("occupancy",),
)
async def test_charger_gone_for_good(fleet, oracle, csms):
    f = await fleet(f"disconnect_mid_session=@{CUT_AT},back_after=1e9", connectors=2)
    cp = f.ids[0]
    t = oracle.profile

    await f[cp].plug_in(2)  # connector 2 charges, connector 1 stays idle
    await f[cp].start_by_tag(2, "TAG0001")
    await oracle.until(lambda: not f[cp].online, CUT_AT + 5, "the link to drop")
    oracle.recovery_starts()
    oracle.note(f"link cut for good at t={oracle.now():.1f}s")

    # A closed connection is seen at once; stay past the heartbeat timeout to see it stays offline.
    window = 1.0
    await oracle.wait(t.offline_after + 2 * t.sweep_interval)
    await oracle.judge(window=window)
