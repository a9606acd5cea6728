"""A team's own scenario, outside our catalogue: run it with

    unstuck-scenarios run --scenarios docs/examples/scenarios
    pytest docs/examples/scenarios --csms-url ws://HOST/ocpp --api-url http://HOST --api-token T

A scenario is a pytest test decorated with `@scenario`; the harness's pytest plugin gives it the
fixtures `fleet`, `oracle`, `csms` and `truth` and runs it under trio (docs/harness.md).
"""

from scenarios.meta import scenario


@scenario(
    code="XRB",
    purpose="an idle charger with a car plugged in reboots, the car leaves meanwhile -> free again once it is back",
    seed="team example",
    quick_s=8,
    needs=("occupancy",),
)
async def test_idle_reboot(fleet, oracle):
    f = await fleet(connectors=2)
    cp = f[f.ids[0]]
    await cp.plug_in(1)  # Preparing: the CSMS hears of it
    await cp.flush()
    cp.reboot(delay=1.5)  # power cycle ...
    await oracle.until(lambda: not cp.truth().connected, 5, "the reboot")
    await cp.unplug(1)  # ... the car leaves while the charger is down
    await oracle.until(lambda: cp.online, 10, "the charger to boot again")
    oracle.recovery_starts()  # it reports its connectors after boot: the CSMS must follow
    await oracle.recover(window=3.0)
    await oracle.judge(window=3.0)
