"""The simulator's OCPP 2.0.1 stations against a strict 2.0.1 central system we did not write.

The `ocpp` library's v201 ChargePoint (tests/interop201/libcentral201.py) checks every Call it receives
against the 2.0.1 JSON schemas and answers a CallError to any that breaks them; it checks the station's
answers to its own Calls as well. A fleet with car visits, remote starts and stops, unlocks, triggers
and resets: 0 schema failures, and the wire says what ground truth says.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from ocpp.v201 import call

from simulator import GroupSpec, parse_fault_option
from tests.interop201.libcentral201 import LibCentral201

from .conftest import FAST_DRIVER, eventually, make_spec, start_fleet


@pytest.fixture
def central201() -> Iterator[LibCentral201]:
    lib = LibCentral201(heartbeat_interval=1, response_timeout=3.0)
    lib.start()
    try:
        yield lib
    finally:
        lib.stop()


def _base(central: LibCentral201) -> str:
    return f"ws://127.0.0.1:{central.port}/ocpp"


def spec201(**kw):
    spec = make_spec(**kw)
    return spec.with_overrides(groups=tuple(GroupSpec(**{**g.__dict__, "ocpp": "2.0.1"}) for g in spec.groups))


def _sent(central: LibCentral201, station: str, action: str) -> list[dict]:
    return [r.payload for r in central.received(station, action)]


async def ask(central: LibCentral201, station: str, request: object) -> object:
    return await trio.to_thread.run_sync(central.send, station, request)


async def test_a_fleet_runs_sessions_with_no_schema_failure(nursery, central201):
    fleet = await start_fleet(nursery, _base(central201), spec201(count=4, connectors=2, driver=FAST_DRIVER))
    await trio.sleep(4.0)
    assert fleet.stats.errors == {}, fleet.stats.errors  # a CallError for any schema failure would count here
    assert central201.connections and all(proto == "ocpp2.0.1" for _, proto in central201.connections)
    for cp in fleet.ids:
        (boot,) = _sent(central201, cp, "BootNotification")
        assert boot["reason"] == "PowerUp" and boot["chargingStation"]["vendorName"] == fleet[cp].identity.vendor
        statuses = _sent(central201, cp, "StatusNotification")
        assert {(s["evseId"], s["connectorId"]) for s in statuses} == {(1, 1), (2, 1)}  # no connector 0 in 2.0.1
        assert {s["connectorStatus"] for s in statuses} == {"Available", "Occupied"}
        events = _sent(central201, cp, "TransactionEvent")
        by_tx: dict[str, list[dict]] = {}
        for e in events:
            by_tx.setdefault(e["transactionInfo"]["transactionId"], []).append(e)
        assert by_tx, f"{cp} sent no TransactionEvent"
        for tx_id, evs in by_tx.items():
            assert [e["seqNo"] for e in evs] == list(range(len(evs))), tx_id  # numbered from 0, in order
            assert evs[0]["eventType"] == "Started" and "evse" in evs[0] and "idToken" in evs[0]
            assert all("evse" not in e for e in evs[1:])  # only the first event names the EVSE
            assert {e["eventType"] for e in evs[1:-1]} <= {"Updated"}
            if evs[-1]["eventType"] == "Ended":
                end = evs[-1]
                reason = end["transactionInfo"]["stoppedReason"]
                assert reason in ("Local", "EVDisconnected")
                assert ("idToken" in end) == (reason == "Local")  # no idToken when the car just left
                start_wh = evs[0]["meterValue"][0]["sampledValue"][0]["value"]
                end_wh = end["meterValue"][0]["sampledValue"][0]["value"]
                assert end_wh >= start_wh


async def test_remote_start_and_stop_carry_the_remote_start_id_and_the_stations_transaction_id(nursery, central201):
    fleet = await start_fleet(nursery, _base(central201), spec201(connectors=2))
    token = {"id_token": "APP01", "type": "Central"}
    res = await ask(central201, "CP0001", call.RequestStartTransaction(id_token=token, remote_start_id=77, evse_id=2))
    assert res.status == "Accepted"
    await eventually(lambda: _sent(central201, "CP0001", "TransactionEvent"), what="the Started")
    started = _sent(central201, "CP0001", "TransactionEvent")[0]
    assert started["triggerReason"] == "RemoteStart" and started["transactionInfo"]["remoteStartId"] == 77
    assert started["evse"] == {"id": 2, "connectorId": 1} and started["idToken"]["idToken"] == "APP01"
    tx_id = started["transactionInfo"]["transactionId"]
    await eventually(lambda: fleet["CP0001"].connector_truth(2).transaction_id == tx_id, what="acknowledged")

    status = await ask(central201, "CP0001", call.GetTransactionStatus(transaction_id=tx_id))
    assert status.ongoing_indicator is True and status.messages_in_queue is False
    unlock = await ask(central201, "CP0001", call.UnlockConnector(evse_id=2, connector_id=1))
    assert unlock.status == "OngoingAuthorizedTransaction"  # F05: the cable stays locked while it charges
    assert (await ask(central201, "CP0001", call.UnlockConnector(evse_id=9, connector_id=1))).status == (
        "UnknownConnector"
    )
    assert (await ask(central201, "CP0001", call.RequestStopTransaction(transaction_id="nope"))).status == "Rejected"
    assert (await ask(central201, "CP0001", call.RequestStopTransaction(transaction_id=tx_id))).status == "Accepted"
    await eventually(lambda: len(_sent(central201, "CP0001", "TransactionEvent")) >= 2, what="the Ended")
    ended = _sent(central201, "CP0001", "TransactionEvent")[-1]
    assert ended["eventType"] == "Ended" and ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote" and "idToken" not in ended  # libocpp #577
    status = await ask(central201, "CP0001", call.GetTransactionStatus(transaction_id=tx_id))
    assert status.ongoing_indicator is False and status.messages_in_queue is False
    await fleet["CP0001"].flush()
    assert (await ask(central201, "CP0001", call.UnlockConnector(evse_id=2, connector_id=1))).status == "Unlocked"
    assert fleet.stats.errors == {}


async def test_events_made_offline_say_so_and_keep_their_time(nursery, central201):
    fleet = await start_fleet(nursery, _base(central201), spec201())
    cp = fleet["CP0001"]
    tx = await cp.start_by_tag(1, "TAG0001")
    assert tx is not None
    cp.disconnect(back_after=1.5)
    await trio.sleep(0.2)
    status = cp.transaction_status(tx.station_tx_id)
    await cp.unplug(1)  # the car leaves while the station is offline: its Ended waits in the queue
    assert cp.transaction_status(tx.station_tx_id) == (False, True)  # over here, but the CSMS does not know yet
    assert status == (True, False)
    await eventually(lambda: any(e["eventType"] == "Ended" for e in _sent(central201, "CP0001", "TransactionEvent")))
    ended = _sent(central201, "CP0001", "TransactionEvent")[-1]
    assert ended["offline"] is True and ended["triggerReason"] == "EVCommunicationLost" and "idToken" not in ended
    await eventually(lambda: _sent(central201, "CP0001", "StatusNotification")[-1]["connectorStatus"] == "Available")
    # Stamped when the car left (offline), before the Available the station sent once it was back.
    assert ended["timestamp"] < _sent(central201, "CP0001", "StatusNotification")[-1]["timestamp"]
    assert fleet.stats.errors == {}


async def test_variables_triggers_availability_and_reset(nursery, central201):
    fleet = await start_fleet(nursery, _base(central201), spec201(connectors=2))
    interval = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    got = await ask(central201, "CP0001", call.GetVariables(get_variable_data=[interval]))
    assert got.get_variable_result[0]["attribute_value"] == "1"
    res = await ask(central201, "CP0001", call.SetVariables(set_variable_data=[{**interval, "attribute_value": "30"}]))
    assert (
        res.set_variable_result[0]["attribute_status"] == "Accepted"
        and fleet["CP0001"].config.int("HeartbeatInterval") == 30
    )
    unknown = {"component": {"name": "Nope"}, "variable": {"name": "Nope"}}
    got = await ask(central201, "CP0001", call.GetVariables(get_variable_data=[unknown]))
    assert got.get_variable_result[0]["attribute_status"] == "UnknownVariable"

    before = len(_sent(central201, "CP0001", "StatusNotification"))
    trig = call.TriggerMessage(requested_message="StatusNotification", evse={"id": 2, "connector_id": 1})
    assert (await ask(central201, "CP0001", trig)).status == "Accepted"
    await eventually(lambda: len(_sent(central201, "CP0001", "StatusNotification")) > before)
    assert _sent(central201, "CP0001", "StatusNotification")[-1]["evseId"] == 2

    change = call.ChangeAvailability(operational_status="Inoperative", evse={"id": 1})
    assert (await ask(central201, "CP0001", change)).status == "Accepted"
    await eventually(lambda: _sent(central201, "CP0001", "StatusNotification")[-1]["connectorStatus"] == "Unavailable")

    await fleet["CP0001"].start_by_tag(2, "TAG0002")
    assert (await ask(central201, "CP0001", call.Reset(type="OnIdle"))).status == "Scheduled"
    await fleet["CP0001"].stop(2)
    await eventually(lambda: len(_sent(central201, "CP0001", "BootNotification")) == 2, timeout=10, what="reboot")
    assert _sent(central201, "CP0001", "BootNotification")[-1]["reason"] == "RemoteReset"
    assert fleet.stats.errors == {}


async def test_a_201_fleet_against_csms_serve_is_stored_and_billed_as_the_stations_meter_says(nursery, tmp_path):
    """Car visits on 2.0.1 stations (one of them loses its link mid-session and replays its queue, offline):
    every Started the CSMS acknowledged is one transaction, closed with the station's own meter readings."""
    from tests.support.server import start_csms

    proc = start_csms(f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, ["--allow-unknown-chargers"])
    try:
        spec = spec201(count=4, connectors=2, driver=FAST_DRIVER)
        spec = spec.with_overrides(
            groups=(
                *spec.groups,
                GroupSpec(prefix="OFF", count=1, connectors=1, ocpp="2.0.1", config=dict(spec.groups[0].config)),
            ),
            faults=(
                parse_fault_option("disconnect_mid_session=1,after=0.3:0.3,back_after=1.0,replay=true,cp=OFF0001"),
            ),
        )
        fleet = await start_fleet(nursery, proc.ocpp, spec)
        await trio.sleep(4.0)
        await fleet.stop_driving()
        with trio.fail_after(15):
            for cp in fleet:
                await cp.wait_online()
                await cp.flush()
        assert fleet.stats.errors == {}, fleet.stats.errors
        async with proc.client() as http:
            rows = (await http.get("/api/transactions")).json()["data"]
            stations = (await http.get("/api/charge-points")).json()["data"]
        assert {s["id"]: s["ocppVersion"] for s in stations} == dict.fromkeys(fleet.ids, "2.0.1")
        stored = {(r["chargePointId"], r["stationTransactionId"]): r for r in rows}
        assert len(stored) == len(rows)  # one row per station transaction
        records = fleet.trace.records
        acked = {(r["cp"], r["local_id"]): r["transaction_id"] for r in records if r.get("event") == "answered"}
        stops = {(r["cp"], r["local_id"]): r for r in records if r["kind"] == "tx" and r["event"] == "stop"}
        starts = {(r["cp"], r["local_id"]): r for r in records if r["kind"] == "tx" and r["event"] == "start"}
        assert len(acked) >= 8 and set(stored) == {(cp, tx_id) for (cp, _), tx_id in acked.items()}
        for key, tx_id in acked.items():
            row = stored[(key[0], tx_id)]
            assert row["meterStart"] == starts[key]["meter"], row
            assert row["stopTime"] is not None and row["meterStop"] == stops[key]["meter"], (row, stops.get(key))
        assert any(r["kind"] == "fault" and r["cp"] == "OFF0001" for r in records)
        offline = [r for r in records if r["kind"] == "out" and r["cp"] == "OFF0001" and '"offline":true' in r["frame"]]
        assert offline, "the station's queue went out after the reconnect, marked offline"
    finally:
        proc.stop()


async def test_the_201_faults_on_the_wire(nursery, central201):
    """seq_no_gaps, no_evse, replay_after_end, slow_replay and reuse_transaction_ids, each as the field shows it."""
    faults = [
        "seq_no_gaps=1,every=2,cp=CP0001",
        "no_evse=1,cp=CP0001",
        "replay_after_end=1,cp=CP0001",
        "slow_replay=@0,hold=1.5,cp=CP0002",
        "reuse_transaction_ids=@0,cp=CP0003",
    ]
    fleet = await start_fleet(nursery, _base(central201), spec201(count=3, faults=faults))
    one, two, three = (fleet[c] for c in ("CP0001", "CP0002", "CP0003"))

    tx = await one.start_by_tag(1, "TAG0001")
    await trio.sleep(3.2)  # three periodic samples
    await one.unplug(1)
    await one.flush()
    events = _sent(central201, "CP0001", "TransactionEvent")
    ended = next(i for i, e in enumerate(events) if e["eventType"] == "Ended")
    first = events[: ended + 1]
    assert "evse" not in first[0] and all("evse" not in e for e in events)  # no_evse
    seq = [e["seqNo"] for e in first]
    assert seq == sorted(seq) and len(set(seq)) == len(seq) and seq[-1] > len(seq) - 1  # gaps, never repeats
    again = events[ended + 1 :]  # replay_after_end: the Updated events again, after the Ended, marked offline
    assert [e["seqNo"] for e in again] == [e["seqNo"] for e in first if e["eventType"] == "Updated"]
    assert all(e["eventType"] == "Updated" and e["offline"] is True for e in again) and again

    tx2 = await two.start_by_tag(1, "TAG0002")
    two.disconnect(back_after=0.5)
    await two.unplug(1)  # the Ended waits in the queue
    await eventually(lambda: two.online, timeout=10, what="CP0002 back")
    status = await ask(central201, "CP0002", call.GetTransactionStatus(transaction_id=tx2.station_tx_id))
    assert (status.ongoing_indicator, status.messages_in_queue) == (False, True)  # slow_replay: still held
    await two.flush()
    status = await ask(central201, "CP0002", call.GetTransactionStatus(transaction_id=tx2.station_tx_id))
    assert (status.ongoing_indicator, status.messages_in_queue) == (False, False)

    old = await three.start_by_tag(1, "TAG0003")
    await three.stop(1)
    await three.unplug(1)
    await three.flush()
    three.reboot(delay=0.5)
    await eventually(lambda: three.online, timeout=10, what="CP0003 back")
    new = await three.start_by_tag(1, "TAG0004")
    assert new.station_tx_id == old.station_tx_id and new is not old  # reuse_transaction_ids
    assert tx is not None and fleet.stats.errors == {}
    fired = {r["fault"] for r in fleet.trace.records if r["kind"] == "fault"}
    assert fired == {"seq_no_gaps", "no_evse", "replay_after_end", "slow_replay", "reuse_transaction_ids"}


async def test_a_seeded_201_run_replays_to_the_same_decisions(tmp_path):
    """Same seed, same decisions (2.0.1 faults included); `replay` of its trace makes them again."""
    from simulator import Fleet, ReplayScript, TraceWriter

    from .test_determinism import CUT, DRIVER, RUN, _fault_schedule

    async def run(spec, trace, replay=None):
        central = LibCentral201(heartbeat_interval=1)
        central.start()
        try:
            fleet = Fleet(spec, f"ws://127.0.0.1:{central.port}/ocpp", trace=trace, replay=replay)
            async with trio.open_nursery() as nursery:
                await nursery.start(fleet.run)
                await trio.sleep(RUN)
                nursery.cancel_scope.cancel()
            trace.close()
            assert fleet.stats.errors == {}
            return [r for r in trace.records if r["t"] < CUT]
        finally:
            central.stop()

    faults = ["drop_stop_transaction=0.4", "seq_no_gaps=0.5,every=2", "no_evse=0.3", "replay_after_end=0.3"]
    spec = spec201(count=3, connectors=2, driver=DRIVER, seed=13, faults=faults)
    path = tmp_path / "trace.jsonl"
    first = await run(spec, TraceWriter(path, keep=True))
    again = await run(spec, TraceWriter(keep=True))
    assert _fault_schedule(first) == _fault_schedule(again) and _fault_schedule(first)
    _same_course(first, again)
    script = ReplayScript.from_trace(path)
    assert script.spec == spec and script.spec.groups[0].ocpp == "2.0.1"
    replayed = await run(script.spec, TraceWriter(keep=True), script)
    _same_course(replayed, first)
    assert _fault_schedule(replayed) == _fault_schedule(first)


def _same_course(a: list[dict], b: list[dict]) -> None:
    """The same decisions in the same order for every connector. A run on a loaded machine may have made fewer
    of them by the cut (a charger that booted a second late), never other ones; most must be there."""
    from simulator import decisions

    da, db = decisions(a), decisions(b)
    compared = 0
    for key in da.keys() | db.keys():
        shorter, longer = sorted((da.get(key, []), db.get(key, [])), key=len)
        assert longer[: len(shorter)] == shorter, key
        compared += len(shorter)
    assert compared >= 0.6 * max(sum(map(len, da.values())), sum(map(len, db.values()))), (compared, len(a), len(b))
