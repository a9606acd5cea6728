"""A charger drops off the network for a while, one connector idle and one charging.

The TCP connection is cut without a WebSocket close. While the charger is away the
CSMS must report both connectors offline (never free: nobody can start there, and one
car is still charging); the car leaves meanwhile. When the charger is back, its queued
StopTransaction is replayed and both connectors must be reported free again at once.
"""

from scenarios.meta import scenario

CUT_AT = 3.0  # s after the fleet started
AWAY = 8.0  # s without a connection


@scenario(
    code="OFL",
    purpose="link cut with one connector idle and one charging -> both offline (never free) while "
    "away, correct again right after the charger is back",
    seed="001 Signals: WebSocket presence (offline charger, ChargerOffline)",
    quick_s=14,
    needs=("occupancy",),
)
async def test_charger_offline(fleet, oracle, csms):
    f = await fleet(f"disconnect_mid_session=@{CUT_AT},back_after={AWAY}", connectors=2)
    cp = f.ids[0]

    await f[cp].plug_in(2)  # connector 2 charges, connector 1 stays idle
    await f[cp].start_by_tag(2, "TAG0001")
    await oracle.until(lambda: not f[cp].online, CUT_AT + 5, "the link to drop")
    oracle.recovery_starts()
    oracle.note(f"link cut at t={oracle.now():.1f}s for {AWAY:g}s")

    await oracle.wait(2.0)
    await f[cp].unplug(2)  # the car leaves while the charger is away: its StopTransaction waits in the queue
    await oracle.until(lambda: f[cp].online, AWAY + 10, "the charger to come back")
    await f[cp].flush()  # the queued messages are replayed
    oracle.note(f"back at t={oracle.now():.1f}s")

    # A closed connection is seen at once: no heartbeat timeout to wait for, either way.
    window = 1.0
    await oracle.wait(window + 1.5)
    await oracle.judge(window=window)
