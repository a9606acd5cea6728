"""TriggerMessage StatusNotification is answered with the real status, for the connector asked."""

import trio
from ocpp.v16 import call

from simulator import parse_fault_option
from tests.simulator.review.harness import one_charge_point, start_central


async def test_trigger_status_after_dropped_stop(autojump_clock, nursery):
    c = await start_central(nursery)
    fault = parse_fault_option("drop_stop_transaction=1,available=false")
    async with one_charge_point(c, faults=[fault]) as (_fleet, cp):
        await cp.plug_in(1)
        await cp.start_by_tag(1, "TAG1")
        await trio.sleep(5)
        await cp.unplug(1)
        await cp.flush()
        n0 = len(c.log)
        # The CSMS tries to recover: what is connector 1's status?
        res = await c.conns["CP0001"].call(call.TriggerMessage(requested_message="StatusNotification", connector_id=1))
        await trio.sleep(2)
        await cp.flush()
        after = [(a, p) for _, a, p in c.log[n0:]]
    assert res.status == "Accepted"
    assert [p["status"] for a, p in after if a == "StatusNotification"] == ["Available"]


async def test_trigger_status_for_connector_0_reports_only_connector_0(autojump_clock, nursery):
    c = await start_central(nursery)
    async with one_charge_point(c, connectors=2):
        await trio.sleep(2)
        before = len(c.log)
        answer = await c.conns["CP0001"].call_raw(
            "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 0}
        )
        assert answer == {"status": "Accepted"}
        await trio.sleep(2)
        sent = [p["connector_id"] for _cp, action, p in c.log[before:] if action == "StatusNotification"]
    assert sent == [0]
