import trio

from simulator import DriverSpec, Fleet, FleetSpec, GroupSpec, TraceWriter
from tests.simulator.review.harness import start_central


async def test_long_tag_prefix_wedges_the_charge_point(autojump_clock, nursery):
    c = await start_central(nursery)
    # a fleet file's [driver] tag_prefix = "CUSTOMER-RFID-CARD-" is accepted by load_fleet_file
    spec = FleetSpec(
        seed=1, groups=(GroupSpec(count=1, connectors=1),), driver=DriverSpec(tag_prefix="CUSTOMER-RFID-CARD-")
    )
    fleet = Fleet(spec, c.url, trace=TraceWriter(keep=True))
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await trio.sleep(120)
        run.cancel_scope.cancel()
    acts = [a for a, _ in c.actions("CP0001")]
    print("errors", dict(fleet.stats.errors), "accepts", c.accepts["CP0001"])
    print("CSMS got", {a: acts.count(a) for a in set(acts)})
    assert fleet.stats.errors.get("crash", 0) == 0
