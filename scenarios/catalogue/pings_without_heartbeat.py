"""A charger that keeps its WebSocket alive with pings and pongs but never sends a Heartbeat.

OCPP-J allows it: the transport's ping/pong is a sign of life as good as a Heartbeat.
The charger stops sending OCPP messages early on but answers every ping (and every
call). For several heartbeat timeouts the CSMS must keep it online, its idle
connectors free: never offline, never its connection closed for silence.
"""

from scenarios.meta import scenario

QUIET_AT = 1.0  # s after the fleet started: no OCPP message from here on


@scenario(
    code="PNG",
    purpose="no Heartbeat, only WebSocket pings/pongs -> stays online, idle connectors free "
    "for several heartbeat timeouts",
    seed="001 Signals: WebSocket presence (open WebSocket, no Heartbeat)",
    quick_s=14,
    needs=("occupancy",),
)
async def test_pings_without_heartbeat(fleet, oracle, csms):
    f = await fleet(f"heartbeat_stop=@{QUIET_AT},answer_calls=true", connectors=2)
    cp = f.ids[0]
    t = oracle.profile

    await oracle.until(lambda: f[cp].truth().muted, QUIET_AT + 5, "the charger to fall quiet")
    oracle.recovery_starts()
    timeouts = 2.5
    oracle.note(
        f"no OCPP message from t={oracle.now():.1f}s; watching for {timeouts:g} heartbeat timeouts "
        f"({timeouts * t.offline_after:g}s)"
    )
    await oracle.wait(timeouts * t.offline_after)
    # The charger answers pings: it was there all the time, so nothing excuses an offline verdict.
    await oracle.judge(window=1.0, excuse_blinded=False)
