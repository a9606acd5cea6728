import trio

from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter
from simulator.truth import truth_at
from tests.simulator.review.harness import start_central


async def test_truth_at_keeps_transaction_id_of_ended_tx(autojump_clock, nursery):
    c = await start_central(nursery)
    spec = FleetSpec(seed=1, groups=(GroupSpec(count=1, connectors=1),), driver=None)
    fleet = Fleet(spec, c.url, trace=TraceWriter(keep=True))
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await fleet.wait_online()
        cp = fleet["CP0001"]
        await cp.plug_in(1)
        await cp.start_by_tag(1, "TAG1")
        await trio.sleep(5)
        await cp.stop(1, "Local")
        await cp.unplug(1)
        await cp.flush()
        await trio.sleep(1)
        live = cp.connector_truth(1)
        past = truth_at(fleet.trace.records, "CP0001", 1, cp.now)
        run.cancel_scope.cancel()
    print("live:", live.transaction_running, live.transaction_id, " trace:", past)
    assert past["transaction_id"] == live.transaction_id

async def test_reported_status_after_reboot(autojump_clock, nursery):
    """CSMS was told Charging; the charger reboots and (silent_connector) never reports again."""
    from simulator import parse_fault_option
    c = await start_central(nursery)
    spec = FleetSpec(seed=1, groups=(GroupSpec(count=1, connectors=1),), driver=None,
                     faults=(parse_fault_option("silent_connector=@20"),))
    fleet = Fleet(spec, c.url, trace=TraceWriter(keep=True))
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await fleet.wait_online()
        cp = fleet["CP0001"]
        await cp.plug_in(1)
        await cp.start_by_tag(1, "TAG1")
        await cp.flush()
        await trio.sleep(30)
        cp.reboot(delay=2)
        await trio.sleep(10)
        await cp.flush()
        t = cp.connector_truth(1)
        run.cancel_scope.cancel()
    last = [p["status"] for a, p in c.actions("CP0001") if a == "StatusNotification" and p["connector_id"] == 1][-1]
    print("CSMS last got", last, "truth.reported_status", t.reported_status)
    assert t.reported_status == last
