import trio

from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter
from tests.simulator.review.harness import start_central


async def test_backoff_when_csms_accepts_then_closes(autojump_clock, nursery):
    c = await start_central(nursery)
    c.close_after_accept = True
    spec = FleetSpec(seed=1, groups=(GroupSpec(count=1, connectors=1),), driver=None)
    fleet = Fleet(spec, c.url, trace=TraceWriter(keep=True))
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await trio.sleep(120)
        run.cancel_scope.cancel()
    print("accepts in 120 s:", c.accepts["CP0001"])
    # README: reconnects back off 1, 2, 4 ... 60 s => ~7-8 attempts in 120 s
    assert c.accepts["CP0001"] <= 15, c.accepts["CP0001"]
