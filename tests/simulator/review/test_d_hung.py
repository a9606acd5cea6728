import trio

from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter
from tests.simulator.review.harness import start_central


async def test_outbox_grows_when_csms_stops_answering(autojump_clock, nursery):
    c = await start_central(nursery, interval=10)
    spec = FleetSpec(seed=1, groups=(GroupSpec(count=1, connectors=1),), driver=None)
    fleet = Fleet(spec, c.url, trace=TraceWriter(keep=True))
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await fleet.wait_online()
        await trio.sleep(1)
        c.override["Heartbeat"] = lambda kw: trio.sleep_forever()  # noqa: ASYNC105 - awaited by the override
        await trio.sleep(3600)
        n = len(fleet["CP0001"].link._outbox.items)
        run.cancel_scope.cancel()
    print("outbox after 1 h of a hung CSMS:", n, "heartbeats sent:", sum(1 for a, _ in c.actions() if a == "Heartbeat"))
    assert n < 10
