"""A fleet against the independent ocpp-library CSMS: sessions, and every CSMS->CP request."""

from __future__ import annotations

import pytest
import trio
from ocpp.exceptions import NotSupportedError
from ocpp.v16 import call

from simulator import State

from .conftest import FAST_DRIVER, ask, eventually, make_spec, start_fleet


def _payloads(central, cp, action):
    return [r.payload for r in central.received(cp, action)]


async def test_ten_charge_points_run_sessions(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(count=10, connectors=2, driver=FAST_DRIVER))
    await trio.sleep(3.5)
    assert fleet.stats.errors == {} and fleet.stats.connected == 10
    tx_by_id = {}
    for cp in fleet.ids:
        boot = _payloads(central, cp, "BootNotification")
        assert len(boot) == 1 and boot[0]["chargePointVendor"] == fleet[cp].identity.vendor
        statuses = _payloads(central, cp, "StatusNotification")
        assert {s["connectorId"] for s in statuses} == {0, 1, 2}  # connector 0 too
        assert {"Available", "Preparing", "Charging"} <= {s["status"] for s in statuses}
        assert _payloads(central, cp, "Heartbeat"), "the 1 s interval from the CSMS is used"
        assert _payloads(central, cp, "Authorize") and _payloads(central, cp, "MeterValues")
        for start in _payloads(central, cp, "StartTransaction"):
            assert start["idTag"].startswith("TAG")
        for stop in _payloads(central, cp, "StopTransaction"):
            assert stop["reason"] in ("Local", "EVDisconnected")
            tx_by_id[stop["transactionId"]] = stop
    assert len(tx_by_id) >= 10
    # Ground truth agrees with the wire: every StopTransaction carries the register the connector really had.
    records = fleet.trace.records
    ids = {
        (r["cp"], r["local_id"]): r["transaction_id"] for r in records if r["kind"] == "tx" and r["event"] == "answered"
    }
    meters = {
        ids[(r["cp"], r["local_id"])]: r["meter"]
        for r in records
        if r["kind"] == "tx" and r["event"] == "stop" and (r["cp"], r["local_id"]) in ids
    }
    assert {tx_id: stop["meterStop"] for tx_id, stop in tx_by_id.items()} == {t: meters[t] for t in tx_by_id}
    for truth in fleet.truth():
        assert truth.connected and truth.booted and not truth.muted
        for c in truth.connectors:
            assert c.state in {s.value for s in State}
            assert c.transaction_running == (c.state in ("charging", "suspended"))


async def test_meter_values_carry_the_register_and_the_transaction_id(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec())
    cp = fleet["CP0001"]
    tx = await cp.start_by_tag(1, "TAG0001")
    assert tx is not None and tx.transaction_id is not None
    await eventually(lambda: len(_payloads(central, "CP0001", "MeterValues")) >= 2, what="two MeterValues")
    mv = _payloads(central, "CP0001", "MeterValues")
    assert all(m["transactionId"] == tx.transaction_id for m in mv)
    values = [int(m["meterValue"][0]["sampledValue"][0]["value"]) for m in mv]
    assert values == sorted(values) and values[-1] > tx.meter_start  # the register rises while charging
    await cp.unplug(1)
    await eventually(lambda: _payloads(central, "CP0001", "StopTransaction"), what="StopTransaction")
    stop = _payloads(central, "CP0001", "StopTransaction")[0]
    await cp.flush()  # the Available that follows the stop is answered too
    truth = cp.connector_truth(1)
    # The register may still take a few microseconds of energy between the StopTransaction's reading and
    # the unplug (two clock reads): the reading is the register at the stop, give or take that sliver.
    assert stop["reason"] == "EVDisconnected" and 0 <= truth.register_wh - stop["meterStop"] < 1.5
    assert truth.state == "unplugged" and not truth.transaction_running and truth.reported_status == "Available"


async def test_remote_start_and_remote_stop(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(connectors=2))
    res = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP01"))
    assert res.status == "Accepted"
    await eventually(lambda: _payloads(central, "CP0001", "StartTransaction"), what="StartTransaction")
    start = _payloads(central, "CP0001", "StartTransaction")[0]
    assert start["idTag"] == "APP01" and start["connectorId"] == 1
    assert not _payloads(central, "CP0001", "Authorize")  # AuthorizeRemoteTxRequests is false
    await eventually(lambda: fleet["CP0001"].connector_truth(1).transaction_id is not None)
    tx_id = fleet["CP0001"].connector_truth(1).transaction_id
    assert (await ask(central, "CP0001", call.RemoteStopTransaction(transaction_id=tx_id + 100))).status == "Rejected"
    assert (await ask(central, "CP0001", call.RemoteStopTransaction(transaction_id=tx_id))).status == "Accepted"
    await eventually(lambda: _payloads(central, "CP0001", "StopTransaction"), what="StopTransaction")
    assert _payloads(central, "CP0001", "StopTransaction")[0]["reason"] == "Remote"
    assert fleet["CP0001"].connector_truth(1).state == "finishing"
    # connector 1 is still occupied (Finishing): a second remote start without a connector takes connector 2
    assert (await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP02"))).status == "Accepted"
    await eventually(lambda: len(_payloads(central, "CP0001", "StartTransaction")) == 2)
    assert _payloads(central, "CP0001", "StartTransaction")[1]["connectorId"] == 2
    res = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP03", connector_id=2))
    assert res.status == "Rejected"  # busy


async def test_unlock_during_a_transaction_stops_it_with_unlock_command(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec())
    await fleet["CP0001"].start_by_tag(1, "TAG0001")
    res = await ask(central, "CP0001", call.UnlockConnector(connector_id=1))
    assert res.status == "Unlocked"
    stops = _payloads(central, "CP0001", "StopTransaction")
    assert [s["reason"] for s in stops] == ["UnlockCommand"]  # before the answer, as 1.6 asks
    await eventually(lambda: _payloads(central, "CP0001", "StatusNotification")[-1]["status"] == "Available")
    assert fleet["CP0001"].connector_truth(1).state == "unplugged"


async def test_trigger_message(nursery, central):
    await start_fleet(nursery, central.url, make_spec(connectors=2))
    n_boot = len(central.received("CP0001", "BootNotification"))
    for message in ("BootNotification", "Heartbeat", "MeterValues"):
        assert (await ask(central, "CP0001", call.TriggerMessage(requested_message=message))).status == "Accepted"
    res = await ask(central, "CP0001", call.TriggerMessage(requested_message="StatusNotification", connector_id=2))
    assert res.status == "Accepted"
    res = await ask(central, "CP0001", call.TriggerMessage(requested_message="DiagnosticsStatusNotification"))
    assert res.status == "NotImplemented"
    res = await ask(central, "CP0001", call.TriggerMessage(requested_message="Heartbeat", connector_id=7))
    assert res.status == "Rejected"
    await eventually(lambda: len(central.received("CP0001", "BootNotification")) == n_boot + 1)
    await eventually(lambda: len(_payloads(central, "CP0001", "MeterValues")) == 2)  # one per connector
    statuses = _payloads(central, "CP0001", "StatusNotification")
    assert statuses[-1]["connectorId"] == 2 and statuses[-1]["status"] == "Available"


async def test_change_availability_now_and_scheduled(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(connectors=2))
    cp = fleet["CP0001"]
    await cp.start_by_tag(2, "TAG0001")
    res = await ask(central, "CP0001", call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert res.status == "Accepted"
    await eventually(
        lambda: (
            _payloads(central, "CP0001", "StatusNotification")[-1]
            == {**_payloads(central, "CP0001", "StatusNotification")[-1], "connectorId": 1, "status": "Unavailable"}
        )
    )
    res = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP", connector_id=1))
    assert res.status == "Rejected"
    res = await ask(central, "CP0001", call.ChangeAvailability(connector_id=2, type="Inoperative"))
    assert res.status == "Scheduled"
    await cp.unplug(2)
    await eventually(lambda: _payloads(central, "CP0001", "StatusNotification")[-1]["status"] == "Unavailable")
    assert not cp.connector_truth(2).operative


async def test_reset_stops_transactions_then_boots_again(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec())
    await fleet["CP0001"].start_by_tag(1, "TAG0001")
    assert (await ask(central, "CP0001", call.Reset(type="Soft"))).status == "Accepted"
    await eventually(lambda: len(central.received("CP0001", "BootNotification")) == 2, what="second boot")
    actions = [r.action for r in central.received("CP0001")]
    assert actions.index("StopTransaction") < len(actions) - 1 - actions[::-1].index("BootNotification")
    assert _payloads(central, "CP0001", "StopTransaction")[0]["reason"] == "SoftReset"
    await eventually(lambda: _payloads(central, "CP0001", "StatusNotification")[-1]["status"] == "Preparing")
    assert fleet["CP0001"].connector_truth(1).state == "plugged"  # the car is still there


async def test_get_and_change_configuration(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec())
    res = await ask(central, "CP0001", call.GetConfiguration(key=["HeartbeatInterval", "Nope"]))
    assert res.configuration_key == [{"key": "HeartbeatInterval", "readonly": False, "value": "1"}]
    assert res.unknown_key == ["Nope"]
    assert len((await ask(central, "CP0001", call.GetConfiguration())).configuration_key) >= 15
    for key, value, expected in [
        ("MeterValueSampleInterval", "7", "Accepted"),
        ("NumberOfConnectors", "4", "Rejected"),
        ("HeartbeatInterval", "x", "Rejected"),
        ("Nope", "1", "NotSupported"),
    ]:
        res = await ask(central, "CP0001", call.ChangeConfiguration(key=key, value=value))
        assert res.status == expected, key
    assert fleet["CP0001"].config.int("MeterValueSampleInterval") == 7


async def test_unknown_requests_get_not_supported(nursery, central):
    await start_fleet(nursery, central.url, make_spec())
    with pytest.raises(NotSupportedError):
        await ask(central, "CP0001", call.ClearCache())


async def test_data_transfer_is_answered_unknown_vendor_id(nursery, central):
    """DataTransfer is Core in 1.6: a charger without vendor extensions answers a status, not a CallError."""
    fleet = await start_fleet(nursery, central.url, make_spec())
    res = await ask(central, "CP0001", call.DataTransfer(vendor_id="com.example.csms", message_id="Ping", data="x"))
    assert res.status == "UnknownVendorId" and res.data is None
    answers = [r["frame"] for r in fleet.trace.records if r["kind"] == "out" and r["frame"].startswith("[3,")]
    assert answers[-1].endswith('{"status":"UnknownVendorId"}]')


def _remote_rejections(fleet):
    return [r for r in fleet.trace.records if r["kind"] == "tx" and r["event"] == "remote_start_rejected"]


AUTHORIZE_REMOTE = {"MeterValueSampleInterval": "1", "AuthorizeRemoteTxRequests": "true"}


async def test_second_remote_start_while_the_first_is_pending_is_rejected(nursery, central):
    """The first remote start claims the connector before it answers; the second is Rejected, and says why."""
    central.authorize_delay = 0.6  # the first remote start is still authorizing its tag when the second arrives
    fleet = await start_fleet(nursery, central.url, make_spec(config=AUTHORIZE_REMOTE))
    first = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP01", connector_id=1))
    second = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP02", connector_id=1))
    assert (first.status, second.status) == ("Accepted", "Rejected")
    await eventually(lambda: _payloads(central, "CP0001", "StartTransaction"), what="StartTransaction")
    await trio.sleep(0.8)  # long enough for a second session to have authorized and started, had it been accepted
    assert [s["idTag"] for s in _payloads(central, "CP0001", "StartTransaction")] == ["APP01"]
    assert [a["idTag"] for a in _payloads(central, "CP0001", "Authorize")] == ["APP01"]
    assert [(r["connector"], r["tag"], r["why"]) for r in _remote_rejections(fleet)] == [
        (1, "APP02", "connector already claimed by a remote start")
    ]


async def test_remote_start_that_gives_up_releases_its_claim(nursery, central):
    central.authorize_delay = 0.3
    fleet = await start_fleet(nursery, central.url, make_spec(config=AUTHORIZE_REMOTE))
    refused = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="BAD01", connector_id=1))
    assert refused.status == "Accepted"  # accepted, then the tag is refused by Authorize: the session gives up
    await eventually(
        lambda: any(r["kind"] == "tx" and r["event"] == "refused" for r in fleet.trace.records), what="the tag refused"
    )
    again = await ask(central, "CP0001", call.RemoteStartTransaction(id_tag="APP02", connector_id=1))
    assert again.status == "Accepted"
    await eventually(lambda: _payloads(central, "CP0001", "StartTransaction"), what="StartTransaction")
    assert [s["idTag"] for s in _payloads(central, "CP0001", "StartTransaction")] == ["APP02"]
    assert _remote_rejections(fleet) == []
