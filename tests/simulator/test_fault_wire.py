"""Each fault mode produces exactly the wire behaviour its row in the fault table claims.

Every test reads both sides: what the independent ocpp-library CSMS received
(or was answered), and the simulator's own trace and ground truth.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import trio
from ocpp.v16 import call

from .conftest import ask, eventually, make_spec, start_fleet


def _statuses(central, cp="CP0001", connector=1):
    return [
        r.payload["status"] for r in central.received(cp, "StatusNotification") if r.payload["connectorId"] == connector
    ]


def _actions(central, cp="CP0001"):
    return [r.action for r in central.received(cp)]


def _faults(fleet, name):
    return [r for r in fleet.trace.records if r["kind"] == "fault" and r["fault"] == name]


async def _session(fleet, central, *, local_stop: bool = False):
    """Plug in, start, wait for the CSMS to see it, then stop locally or just leave."""
    cp = fleet["CP0001"]
    tx = await cp.start_by_tag(1, "TAG0001")
    assert tx is not None and tx.transaction_id is not None
    if local_stop:
        await cp.stop(1, "Local")
    await cp.unplug(1)
    await trio.sleep(0.3)
    return tx


@pytest.mark.parametrize("local_stop", [False, True])
async def test_drop_stop_transaction_with_available(nursery, central, local_stop):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["drop_stop_transaction=1"]))
    await _session(fleet, central, local_stop=local_stop)
    assert "StartTransaction" in _actions(central) and "StopTransaction" not in _actions(central)
    assert _statuses(central) == ["Available", "Preparing", "Charging", "Available"]  # no Finishing
    assert len(_faults(fleet, "drop_stop_transaction")) == 1
    truth = fleet["CP0001"].connector_truth(1)
    assert not truth.transaction_running and truth.state == "unplugged"
    assert [f.name for f in truth.faults] == ["drop_stop_transaction"]


async def test_drop_stop_transaction_without_available(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["drop_stop_transaction=1,available=false"]))
    await _session(fleet, central)
    assert "StopTransaction" not in _actions(central)
    assert _statuses(central) == ["Available", "Preparing", "Charging"]  # the CSMS last saw Charging
    suppressed = [r for r in fleet.trace.records if r["kind"] == "status" and not r["sent"]]
    assert [(r["status"], r["why"]) for r in suppressed] == [("Available", "drop_stop_transaction")]
    assert fleet["CP0001"].connector_truth(1).reported_status == "Charging"
    # The next car is reported again (Preparing), with a StartTransaction on a connector the CSMS thinks busy.
    await fleet["CP0001"].start_by_tag(1, "TAG0002")
    await eventually(lambda: _statuses(central)[-2:] == ["Preparing", "Charging"], what="Preparing, Charging")
    assert _actions(central).count("StartTransaction") == 2


async def test_reject_remote_start(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["reject_remote_start=1"]))
    before = len(central.received("CP0001"))
    res = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP01", connector_id=1))
    assert res.status == "Rejected"
    await trio.sleep(0.5)
    assert len(central.received("CP0001")) == before  # no status, no StartTransaction
    assert len(_faults(fleet, "reject_remote_start")) == 1
    assert fleet["CP0001"].connector_truth(1).state == "unplugged"


async def test_accept_remote_start_never_start(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["accept_remote_start_never_start=1"]))
    before = len(central.received("CP0001"))
    res = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP01"))
    assert res.status == "Accepted"
    await trio.sleep(0.5)
    assert len(central.received("CP0001")) == before  # accepted, and then nothing at all
    assert _statuses(central) == ["Available"]
    truth = fleet["CP0001"].connector_truth(1)
    assert truth.state == "unplugged" and not truth.transaction_running
    assert len(_faults(fleet, "accept_remote_start_never_start")) == 1


@pytest.mark.parametrize("ignore_trigger", [True, False])
async def test_silent_connector(nursery, central, ignore_trigger):
    spec = make_spec(connectors=2, faults=[f"silent_connector=1,connectors=1,ignore_trigger={ignore_trigger}"])
    fleet = await start_fleet(nursery, central.url, spec)
    await fleet["CP0001"].start_by_tag(1, "TAG0001")
    await trio.sleep(0.2)
    assert _statuses(central, connector=1) == []  # never, not even after boot
    assert _statuses(central, connector=2) == ["Available"] and _statuses(central, connector=0) == ["Available"]
    assert "StartTransaction" in _actions(central)  # transactions still go out
    res = await ask(central, "CP0001", call.TriggerMessage(requested_message="StatusNotification", connector_id=1))
    assert res.status == "Accepted"
    await trio.sleep(0.3)
    assert _statuses(central, connector=1) == ([] if ignore_trigger else ["Charging"])


@pytest.mark.parametrize("replay", [True, False])
async def test_disconnect_mid_session(nursery, central, replay):
    fault = f"disconnect_mid_session=1,after=0.3:0.3,back_after=1.2,replay={str(replay).lower()}"
    fleet = await start_fleet(nursery, central.url, make_spec(faults=[fault]))
    cp = fleet["CP0001"]
    await cp.start_by_tag(1, "TAG0001")
    await eventually(lambda: not cp.online, timeout=2, what="the link to drop")
    await cp.stop(1, "Local")  # while offline: queued
    await cp.unplug(1)
    with trio.fail_after(5):
        await cp.wait_online()
    await trio.sleep(0.5)
    links = [r["event"] for r in fleet.trace.records if r["kind"] == "link"]
    assert links[:3] == ["connected", "closed", "connected"]
    assert central.connections == ["CP0001", "CP0001"]
    assert _actions(central).count("BootNotification") == 1  # a reconnect, not a reboot
    if replay:
        stops = [r.payload for r in central.received("CP0001", "StopTransaction")]
        assert [s["reason"] for s in stops] == ["Local"]
        actions = _actions(central)
        assert actions.index("StartTransaction") < actions.index("StopTransaction")
    else:
        assert "StopTransaction" not in _actions(central)
        assert any(
            r["kind"] == "link" and r["event"] == "queue_lost" and r["messages"] >= 1 for r in fleet.trace.records
        )
    assert _statuses(central)[-1] == "Available"  # the current status is sent on reconnect


async def test_reboot_mid_session_forgets_the_transaction(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["reboot=1,after=0.3:0.3,boot_delay=0.5"]))
    cp = fleet["CP0001"]
    await cp.start_by_tag(1, "TAG0001")
    await eventually(lambda: _actions(central).count("BootNotification") == 2, timeout=4, what="a second boot")
    await eventually(lambda: _statuses(central)[-1] == "Preparing")
    assert "StopTransaction" not in _actions(central)
    truth = cp.connector_truth(1)
    assert truth.state == "plugged" and not truth.transaction_running
    assert [r["event"] for r in fleet.trace.records if r["kind"] == "tx"][-1] == "lost"
    await cp.unplug(1)
    await eventually(lambda: _statuses(central)[-1] == "Available")
    assert "StopTransaction" not in _actions(central)


@pytest.mark.parametrize("fault, answer", [("unlock_failed", "UnlockFailed"), ("unlock_not_supported", "NotSupported")])
async def test_unlock_refused(nursery, central, fault, answer):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=[f"{fault}=1"]))
    await fleet["CP0001"].start_by_tag(1, "TAG0001")
    res = await ask(central, "CP0001", call.UnlockConnector(connector_id=1))
    assert res.status == answer
    await trio.sleep(0.3)
    assert "StopTransaction" not in _actions(central) and _statuses(central)[-1] == "Charging"
    assert fleet["CP0001"].connector_truth(1).transaction_running
    assert len(_faults(fleet, fault)) == 1


async def test_unlock_no_answer(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["unlock_no_answer=1"]))
    await fleet["CP0001"].start_by_tag(1, "TAG0001")
    with pytest.raises(asyncio.TimeoutError):
        await ask(central, "CP0001", call.UnlockConnector(connector_id=1))
    frames = [r["frame"] for r in fleet.trace.records if r["kind"] == "out"]
    assert not any(f.startswith("[3,") for f in frames[-3:])
    assert fleet["CP0001"].connector_truth(1).transaction_running
    # The connection is still usable afterwards.
    assert (
        await ask(central, "CP0001", call.ChangeConfiguration(key="HeartbeatInterval", value="5"))
    ).status == "Accepted"


async def test_slow_responses(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["slow_responses=1,min=0.6,max=0.8"]))
    start = time.monotonic()
    res = await ask(central, "CP0001", call.GetConfiguration(key=["HeartbeatInterval"]))
    elapsed = time.monotonic() - start
    assert res.configuration_key and 0.6 <= elapsed < 1.4
    assert len(_faults(fleet, "slow_responses")) == 1


async def test_slow_responses_beyond_the_csms_timeout(nursery, central):
    await start_fleet(nursery, central.url, make_spec(faults=["slow_responses=1,min=2,max=2"]))
    with pytest.raises(asyncio.TimeoutError):  # the CSMS gives up after 1.5 s
        await ask(central, "CP0001", call.GetConfiguration())


@pytest.mark.parametrize("status", ["Finishing", "Charging"])
async def test_stuck_status(nursery, central, status):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=[f"stuck_status=1,status={status}"]))
    cp = fleet["CP0001"]
    await _session(fleet, central, local_stop=True)
    assert [r.payload["reason"] for r in central.received("CP0001", "StopTransaction")] == ["Local"]
    expected = ["Available", "Preparing", "Charging"] + (["Finishing"] if status == "Finishing" else [])
    assert _statuses(central) == expected  # never Available again
    await cp.plug_in(1)
    await ask(central, "CP0001", call.TriggerMessage(requested_message="StatusNotification", connector_id=1))
    await trio.sleep(0.3)
    assert _statuses(central)[-1] == status and "Available" not in _statuses(central)[1:]
    assert cp.connector_truth(1).state == "plugged"


async def test_heartbeat_stop(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["heartbeat_stop=@1.2"]))
    cp = fleet["CP0001"]
    await trio.sleep(1.1)
    assert central.received("CP0001", "Heartbeat")  # interval 1 s from the CSMS
    await trio.sleep(0.3)
    count = len(central.received("CP0001"))
    await cp.start_by_tag(1, "TAG0001", wait=False)  # physically the car charges ...
    await trio.sleep(1.8)
    assert len(central.received("CP0001")) == count  # ... but nothing is sent: no Heartbeat, no status
    assert "CP0001" in central.connected() and cp.truth().connected and cp.truth().muted
    with pytest.raises(asyncio.TimeoutError):  # answer_calls=false: requests are not answered either
        await ask(central, "CP0001", call.GetConfiguration())
    assert len(_faults(fleet, "heartbeat_stop")) == 1


def _samples(central, cp="CP0001"):
    """(timestamp, Energy.Active.Import.Register Wh) of each MeterValues, in the order the CSMS got them."""
    out = []
    for r in central.received(cp, "MeterValues"):
        for mv in r.payload["meterValue"]:
            for sv in mv["sampledValue"]:
                if sv.get("measurand") == "Energy.Active.Import.Register":
                    out.append((mv["timestamp"], int(sv["value"])))
    return out


async def test_buffered_meter_values_arrive_out_of_order(nursery, central):
    fault = "buffered_meter_values=1,after=0.5:0.5,hold=2.4"  # samples every 1 s: two held, the third goes first
    fleet = await start_fleet(nursery, central.url, make_spec(faults=[fault]))
    cp = fleet["CP0001"]
    await cp.start_by_tag(1, "TAG0001")
    await eventually(lambda: len(_samples(central)) >= 3, timeout=6, what="three samples")
    got = _samples(central)[:3]
    assert got[1:] == sorted(got[1:]) and got[0] > got[2]  # newest first, then the held ones in order
    assert sorted(got) == sorted(got, key=lambda s: s[1]) and got[0][1] > got[2][1] >= got[1][1]
    assert len(_faults(fleet, "buffered_meter_values")) == 1
    await cp.stop(1, "Local")
    await cp.unplug(1)
    await eventually(lambda: "StopTransaction" in _actions(central), what="StopTransaction")


async def test_buffered_meter_values_still_held_go_out_before_the_stop(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["buffered_meter_values=1,after=0.2:0.2,hold=30"]))
    cp = fleet["CP0001"]
    await cp.start_by_tag(1, "TAG0001")
    await trio.sleep(2.5)
    assert _samples(central) == []  # held
    await cp.stop(1, "Local")
    await eventually(lambda: "StopTransaction" in _actions(central), what="StopTransaction")
    actions = _actions(central)
    assert actions.index("MeterValues") < actions.index("StopTransaction")
    got = _samples(central)
    assert len(got) == 2 and got == sorted(got)


async def test_meter_replaced(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["meter_replaced=1,register=500"]))
    cp = fleet["CP0001"]
    await cp.start_by_tag(1, "TAG0001")
    await eventually(lambda: len(_samples(central)) >= 2, timeout=4, what="two samples")
    await cp.stop(1, "Local")
    await cp.unplug(1)
    await eventually(lambda: "StopTransaction" in _actions(central), what="StopTransaction")
    (start,) = [r.payload for r in central.received("CP0001", "StartTransaction")]
    (stop,) = [r.payload for r in central.received("CP0001", "StopTransaction")]
    sampled = max(wh for _, wh in _samples(central))
    assert stop["meterStop"] == 500 < start["meterStart"] < sampled  # below the start and every sample
    (record,) = [r for r in fleet.trace.records if r["kind"] == "tx" and r["event"] == "stop"]
    assert record["meter"] == 500 and record["energy_wh"] >= sampled - start["meterStart"] > 0  # the car's energy
    assert len(_faults(fleet, "meter_replaced")) == 1
    # The new meter counts on from its reading: the next transaction starts there.
    await cp.start_by_tag(1, "TAG0002")
    await eventually(lambda: len(central.received("CP0001", "StartTransaction")) == 2, what="a second start")
    assert 500 <= central.received("CP0001", "StartTransaction")[1].payload["meterStart"] < start["meterStart"]


async def test_heartbeat_stop_before_the_first_boot_says_nothing_at_all(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=["heartbeat_stop=@0"]), online=False)
    cp = fleet["CP0001"]
    with trio.fail_after(3):  # waiting for the fleet to come online does not wait for a charger that never will
        await fleet.wait_online()
    await eventually(lambda: "CP0001" in central.connected(), what="the connection")
    await trio.sleep(1.5)
    assert central.received("CP0001") == []  # hung before it booted: not even a BootNotification
    assert cp.truth().connected and cp.truth().muted and not cp.online
