"""Ground truth agrees with the wire: ended transactions and statuses across a reboot."""

import trio

from simulator import parse_fault_option
from simulator.truth import truth_at
from tests.simulator.review.harness import one_charge_point, start_central


async def test_truth_at_forgets_the_id_of_an_ended_transaction(autojump_clock, nursery):
    c = await start_central(nursery)
    async with one_charge_point(c) as (fleet, cp):
        await cp.plug_in(1)
        await cp.start_by_tag(1, "TAG1")
        await trio.sleep(5)
        await cp.stop(1, "Local")
        await cp.unplug(1)
        await cp.flush()
        await trio.sleep(1)
        live = cp.connector_truth(1)
        past = truth_at(fleet.trace.records, "CP0001", 1, cp.now)
    assert (live.transaction_running, live.transaction_id) == (False, None)
    assert past["transaction_id"] == live.transaction_id


async def test_reported_status_survives_a_reboot(autojump_clock, nursery):
    """The CSMS was told Charging; the charger reboots and (silent_connector) never reports again."""
    c = await start_central(nursery)
    async with one_charge_point(c, faults=[parse_fault_option("silent_connector=@20")]) as (_fleet, cp):
        await cp.plug_in(1)
        await cp.start_by_tag(1, "TAG1")
        await cp.flush()
        await trio.sleep(30)
        cp.reboot(delay=2)
        await trio.sleep(10)
        await cp.flush()
        truth = cp.connector_truth(1)
    last = [p["status"] for a, p in c.actions("CP0001") if a == "StatusNotification" and p["connector_id"] == 1][-1]
    assert truth.reported_status == last
