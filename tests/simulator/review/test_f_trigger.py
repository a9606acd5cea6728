import trio
from ocpp.v16 import call

from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option
from tests.simulator.review.harness import start_central


async def test_trigger_status_after_dropped_stop(autojump_clock, nursery):
    c = await start_central(nursery)
    spec = FleetSpec(seed=1, groups=(GroupSpec(count=1, connectors=1),), driver=None,
                     faults=(parse_fault_option("drop_stop_transaction=1,available=false"),))
    fleet = Fleet(spec, c.url, trace=TraceWriter(keep=True))
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await fleet.wait_online()
        cp = fleet["CP0001"]
        await cp.plug_in(1)
        await cp.start_by_tag(1, "TAG1")
        await trio.sleep(5)
        await cp.unplug(1)
        await cp.flush()
        n0 = len(c.log)
        # the CSMS tries to recover: what is connector 1's status?
        res = await c.conns["CP0001"].call(call.TriggerMessage(requested_message="StatusNotification", connector_id=1))
        await trio.sleep(2)
        await cp.flush()
        after = [(a, p) for _, a, p in c.log[n0:]]
        run.cancel_scope.cancel()
    print("trigger answer", res.status, "then CSMS got", after, "truth", cp.connector_truth(1).state)
    assert any(a == "StatusNotification" for a, _ in after), "Accepted but no StatusNotification"


async def test_trigger_status_for_connector_0_reports_only_connector_0(autojump_clock, nursery):
    c = await start_central(nursery)
    spec = FleetSpec(seed=1, groups=(GroupSpec(count=1, connectors=2),), driver=None)
    fleet = Fleet(spec, c.url, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    await fleet.wait_online()
    await trio.sleep(2)
    before = len(c.log)
    answer = await c.conns["CP0001"].call_raw("TriggerMessage", {"requestedMessage": "StatusNotification",
                                                                 "connectorId": 0})
    assert answer == {"status": "Accepted"}
    await trio.sleep(2)
    sent = [p["connector_id"] for cp, action, p in c.log[before:] if action == "StatusNotification"]
    assert sent == [0]
