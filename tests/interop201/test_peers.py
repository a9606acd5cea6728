"""The 2.0.1 test peers work against a central system we did not write (the `ocpp` library's v201 one).

Each peer exchanges every message it offers, both directions, with LibCentral201 before any test points it
at our CSMS: a failure here is the peer's (or the library's), not the CSMS's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import trio
import websockets
from ocpp.v201 import call

from tests.interop201.libcentral201 import LibCentral201
from tests.interop201.libstation import ENERGY, CallErrorAnswer, LibStation
from tests.interop201.ocpp_rpc import OcppRpcStation, require_node


async def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a peer's blocking method in a worker thread, as a trio test against our CSMS would."""
    return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))


@pytest.fixture
def central() -> Iterator[LibCentral201]:
    central = LibCentral201(heartbeat_interval=120)
    central.start()
    try:
        yield central
    finally:
        central.stop()


@pytest.fixture
def station() -> Iterator[LibStation]:
    with LibStation("LIB201") as station:
        yield station


def _payloads(central: LibCentral201, action: str) -> list[dict[str, Any]]:
    return [r.payload for r in central.received("LIB201", action)]


async def test_libstation_sends_every_station_message_and_returns_the_answers(central, station):
    central.passwords["LIB201"] = "s3cret"
    station.password = "s3cret"
    assert await blocking(station.connect, central.url("LIB201")) == "ocpp2.0.1"

    boot = await blocking(station.boot)
    assert (boot.status, boot.interval) == ("Accepted", 120)
    assert (await blocking(station.heartbeat)).current_time
    await blocking(station.status, 1, 1, "Available")
    assert (await blocking(station.authorize, "TAG1")).id_token_info == {"status": "Accepted"}
    assert (await blocking(station.authorize, "BADTAG", "eMAID")).id_token_info == {"status": "Invalid"}

    started = await blocking(
        station.transaction_event,
        "Started",
        "TX-1",
        "Authorized",
        charging_state="EVConnected",
        evse_id=1,
        connector_id=1,
        id_token="TAG1",
        meter_wh=1000,
    )
    assert started.id_token_info == {"status": "Accepted"}
    updated = await blocking(
        station.transaction_event, "Updated", "TX-1", "MeterValuePeriodic", charging_state="Charging", meter_wh=2500
    )
    assert updated.id_token_info is None  # no idToken sent, none answered
    await blocking(
        station.transaction_event,
        "Ended",
        "TX-1",
        "EVCommunicationLost",
        charging_state="Idle",
        stopped_reason="EVDisconnected",
        remote_start_id=42,
        meter_wh=4000,
        offline=True,
        timestamp="2026-01-02T03:04:05Z",
    )
    await blocking(station.meter_values, 1, 4000)
    await blocking(station.notify_event, actual_value="Available")
    await blocking(station.security_event, "FirmwareUpdated", tech_info="v2")
    await blocking(station.firmware_status, "Installed", request_id=3)
    await blocking(station.log_status, "Uploaded", request_id=4)
    report = [{"component": {"name": "EVSE"}, "variable": {"name": "Power"}, "variable_attribute": [{"value": "22"}]}]
    await blocking(station.notify_report, 5, report)

    events = _payloads(central, "TransactionEvent")
    assert [(e["eventType"], e["seqNo"], e["triggerReason"]) for e in events] == [
        ("Started", 0, "Authorized"),
        ("Updated", 1, "MeterValuePeriodic"),
        ("Ended", 2, "EVCommunicationLost"),
    ]
    assert events[0]["evse"] == {"id": 1, "connectorId": 1}
    assert events[0]["idToken"] == {"idToken": "TAG1", "type": "ISO14443"}
    assert "evse" not in events[1] and "idToken" not in events[1] and "offline" not in events[1]
    samples = [e["meterValue"][0]["sampledValue"][0] for e in events]
    assert [(s["value"], s["context"], s["measurand"]) for s in samples] == [
        (1000, "Transaction.Begin", ENERGY),
        (2500, "Sample.Periodic", ENERGY),
        (4000, "Transaction.End", ENERGY),
    ]
    assert events[2]["transactionInfo"] == {
        "transactionId": "TX-1",
        "chargingState": "Idle",
        "stoppedReason": "EVDisconnected",
        "remoteStartId": 42,
    }
    assert (events[2]["offline"], events[2]["timestamp"]) == (True, "2026-01-02T03:04:05Z")
    assert station.transactions() == {}  # Ended closed it

    assert _payloads(central, "StatusNotification")[0]["connectorStatus"] == "Available"
    assert _payloads(central, "MeterValues")[0]["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic"
    assert _payloads(central, "NotifyEvent")[0]["eventData"][0]["component"] == {
        "name": "Connector",
        "evse": {"id": 1, "connectorId": 1},
    }
    assert _payloads(central, "SecurityEventNotification")[0]["techInfo"] == "v2"
    assert _payloads(central, "FirmwareStatusNotification") == [{"status": "Installed", "requestId": 3}]
    assert _payloads(central, "LogStatusNotification") == [{"status": "Uploaded", "requestId": 4}]
    assert _payloads(central, "NotifyReport")[0]["reportData"] == [
        {"component": {"name": "EVSE"}, "variable": {"name": "Power"}, "variableAttribute": [{"value": "22"}]}
    ]
    # What it sent is recorded as the central system saw it, each with its answer.
    sent = station.sent()
    assert [e.action for e in sent] == [r.action for r in central.received("LIB201")]
    assert all(e.answer is not None and e.answer[0] == 3 for e in sent)

    # A CallError comes back as an answer, not an exception (LibCentral201 has no DataTransfer handler).
    refused = await blocking(station.send, call.DataTransfer(vendor_id="unstuck"))
    assert isinstance(refused, CallErrorAnswer) and refused.code == "NotImplemented"

    await blocking(station.disconnect)
    assert (station.connected, station.close_code) == (False, 1000)


async def test_libstation_with_a_wrong_password_is_refused_at_the_handshake(central, station):
    central.passwords["LIB201"] = "right"
    station.password = "wrong"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await blocking(station.connect, central.url("LIB201"))
    assert refused.value.response.status_code == 401
    assert central.connections == []


async def test_libstation_answers_the_central_systems_calls_from_its_state(central, station):
    await blocking(station.connect, central.url("LIB201"))
    await blocking(station.boot)
    station.meter_wh = 700
    send = partial(blocking, central.send, "LIB201")

    # A remote start is accepted, then followed by TransactionEvent Started carrying its remoteStartId.
    start = await send(call.RequestStartTransaction(id_token={"id_token": "R1", "type": "Central"}, remote_start_id=7))
    assert start.status == "Accepted"
    assert await blocking(central.wait_for, lambda: len(_payloads(central, "TransactionEvent")) == 1)
    began = _payloads(central, "TransactionEvent")[0]
    assert (began["eventType"], began["triggerReason"], began["seqNo"]) == ("Started", "RemoteStart", 0)
    assert began["transactionInfo"]["remoteStartId"] == 7
    assert began["idToken"] == {"idToken": "R1", "type": "Central"}
    assert began["meterValue"][0]["sampledValue"][0]["value"] == 700
    tx = began["transactionInfo"]["transactionId"]
    assert list(station.transactions()) == [tx]

    assert (await send(call.GetTransactionStatus(transaction_id=tx))).ongoing_indicator is True
    status = await send(call.GetTransactionStatus())
    assert (status.messages_in_queue, status.ongoing_indicator) == (False, None)  # none asked about, none said
    busy = await send(call.RequestStartTransaction(id_token={"id_token": "R2", "type": "Central"}, remote_start_id=8))
    assert busy.status == "Rejected"
    assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "OngoingAuthorizedTransaction"
    assert (await send(call.UnlockConnector(evse_id=2, connector_id=1))).status == "UnknownConnector"

    # Triggered messages follow the Accepted answer.
    assert (await send(call.TriggerMessage(requested_message="TransactionEvent"))).status == "Accepted"
    assert await blocking(central.wait_for, lambda: len(_payloads(central, "TransactionEvent")) == 2)
    triggered = _payloads(central, "TransactionEvent")[1]
    assert (triggered["eventType"], triggered["triggerReason"], triggered["seqNo"]) == ("Updated", "Trigger", 1)
    await blocking(station.status, 1, 1, "Occupied")
    trigger_status = call.TriggerMessage(requested_message="StatusNotification", evse={"id": 1, "connector_id": 1})
    assert (await send(trigger_status)).status == "Accepted"
    assert await blocking(central.wait_for, lambda: len(_payloads(central, "StatusNotification")) == 2)
    assert _payloads(central, "StatusNotification")[1]["connectorStatus"] == "Occupied"  # what it last said
    assert (await send(call.TriggerMessage(requested_message="Heartbeat"))).status == "Accepted"
    assert await blocking(central.wait_for, lambda: len(_payloads(central, "Heartbeat")) == 1)
    assert (await send(call.TriggerMessage(requested_message="LogStatusNotification"))).status == "NotImplemented"

    # A remote stop is accepted, then followed by TransactionEvent Ended (RemoteStop, Remote).
    assert (await send(call.RequestStopTransaction(transaction_id=tx))).status == "Accepted"
    assert await blocking(central.wait_for, lambda: len(_payloads(central, "TransactionEvent")) == 3)
    ended = _payloads(central, "TransactionEvent")[2]
    assert (ended["eventType"], ended["triggerReason"], ended["seqNo"]) == ("Ended", "RemoteStop", 2)
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert station.transactions() == {}
    assert (await send(call.GetTransactionStatus(transaction_id=tx))).ongoing_indicator is False
    assert (await send(call.RequestStopTransaction(transaction_id=tx))).status == "Rejected"
    assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "Unlocked"
    assert (await send(call.TriggerMessage(requested_message="TransactionEvent"))).status == "Rejected"

    # Reset, availability (followed by the connector's new status) and variables.
    assert (await send(call.Reset(type="OnIdle"))).status == "Accepted"
    assert (await send(call.ChangeAvailability(operational_status="Inoperative"))).status == "Accepted"
    assert await blocking(
        central.wait_for, lambda: _payloads(central, "StatusNotification")[-1]["connectorStatus"] == "Unavailable"
    )
    setting = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    set_result = await send(call.SetVariables(set_variable_data=[{**setting, "attribute_value": "60"}]))
    assert set_result.set_variable_result[0]["attribute_status"] == "Accepted"
    got = await send(
        call.GetVariables(get_variable_data=[setting, {"component": {"name": "Nope"}, "variable": {"name": "X"}}])
    )
    assert [(r["attribute_status"], r.get("attribute_value")) for r in got.get_variable_result] == [
        ("Accepted", "60"),
        ("UnknownComponent", None),
    ]

    # Every Call it received is recorded, in order, with its time and the answer it gave.
    received = station.received()
    assert [r.action for r in received][:3] == [
        "RequestStartTransaction",
        "GetTransactionStatus",
        "GetTransactionStatus",
    ]
    assert received[0].payload == {"idToken": {"idToken": "R1", "type": "Central"}, "remoteStartId": 7}
    assert received[0].answer is not None and received[0].answer[2] == {"status": "Accepted"}
    assert all(a.at <= b.at for a, b in zip(received, received[1:], strict=False))
    assert station.errors == []


async def test_libstation_behaviour_forces_its_answers(central, station):
    await blocking(station.connect, central.url("LIB201"))
    send = partial(blocking, central.send, "LIB201")
    b = station.behaviour
    b.request_start, b.unlock, b.trigger = "Rejected", "UnlockFailed", "Rejected"
    b.ongoing_indicator, b.messages_in_queue = True, True

    remote = {"id_token": "R", "type": "Central"}
    rejected = await send(call.RequestStartTransaction(id_token=remote, remote_start_id=1))
    assert rejected.status == "Rejected"
    assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "UnlockFailed"
    assert (await send(call.TriggerMessage(requested_message="StatusNotification"))).status == "Rejected"
    status = await send(call.GetTransactionStatus(transaction_id="unknown"))
    assert (status.ongoing_indicator, status.messages_in_queue) == (True, True)
    await trio.sleep(0.2)
    assert _payloads(central, "TransactionEvent") == [] and _payloads(central, "StatusNotification") == []

    # Accepted without the follow-up: the CSMS's view of a start that never began.
    b.request_start, b.start_after_accept = "Accepted", False
    quiet = await send(call.RequestStartTransaction(id_token=remote, remote_start_id=2))
    assert quiet.status == "Accepted"
    b.unlock = "OngoingAuthorizedTransaction"
    assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "OngoingAuthorizedTransaction"

    b.fail["Reset"] = "InternalError"
    assert await send(call.Reset(type="Immediate")) is None  # the library's central: None for a CallError
    assert station.received("Reset")[0].answer[2] == "InternalError"

    b.answer_delay = 0.3
    assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "OngoingAuthorizedTransaction"
    slow = station.received("UnlockConnector")[-1]
    assert slow.answered_at is not None and slow.answered_at - slow.at >= 0.3
    await trio.sleep(0.2)
    assert _payloads(central, "TransactionEvent") == []


async def test_ocpp_rpc_strict_peer_sends_its_script_and_answers_the_central_system(central):
    require_node()
    central.passwords["RPC201"] = "pw"
    send = partial(blocking, central.send, "RPC201")
    with OcppRpcStation(central.url("RPC201"), password="pw", stay=True) as peer:
        assert await blocking(peer.wait_for, lambda: peer.event("ready"))
        out = peer.exchanges(dir="out")
        assert [(x["action"], x["request"].get("eventType")) for x in out] == [
            ("BootNotification", None),
            ("StatusNotification", None),
            ("Authorize", None),
            ("TransactionEvent", "Started"),
            ("StatusNotification", None),
            ("TransactionEvent", "Updated"),
            ("TransactionEvent", "Ended"),
            ("StatusNotification", None),
            ("Heartbeat", None),
        ]
        assert all("response" in x for x in out), out
        assert out[0]["response"]["status"] == "Accepted"
        assert out[3]["response"]["idTokenInfo"] == {"status": "Accepted"}
        events = [r.payload for r in central.received("RPC201", "TransactionEvent")]
        assert [e["meterValue"][0]["sampledValue"][0]["context"] for e in events] == [
            "Transaction.Begin",
            "Sample.Periodic",
            "Transaction.End",
        ]
        assert [e["seqNo"] for e in events] == [0, 1, 2]

        start = await send(
            call.RequestStartTransaction(id_token={"id_token": "R", "type": "Central"}, remote_start_id=9)
        )
        assert start.status == "Accepted"
        assert await blocking(central.wait_for, lambda: len(central.received("RPC201", "TransactionEvent")) == 4)
        began = central.received("RPC201", "TransactionEvent")[3].payload
        assert (began["triggerReason"], began["transactionInfo"]["remoteStartId"]) == ("RemoteStart", 9)
        tx = began["transactionInfo"]["transactionId"]
        assert (await send(call.GetTransactionStatus(transaction_id=tx))).ongoing_indicator is True
        assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "OngoingAuthorizedTransaction"
        assert (await send(call.TriggerMessage(requested_message="TransactionEvent"))).status == "Accepted"
        assert (await send(call.TriggerMessage(requested_message="StatusNotification"))).status == "Accepted"
        assert (await send(call.RequestStopTransaction(transaction_id=tx))).status == "Accepted"
        assert await blocking(central.wait_for, lambda: len(central.received("RPC201", "TransactionEvent")) == 6)
        assert [e.payload["triggerReason"] for e in central.received("RPC201", "TransactionEvent")[4:]] == [
            "Trigger",
            "RemoteStop",
        ]
        assert (await send(call.GetTransactionStatus(transaction_id=tx))).ongoing_indicator is False
        assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "Unlocked"
        peer.set_answers({"UnlockConnector": {"status": "UnlockFailed"}})
        hb = await blocking(peer.call, "Heartbeat")  # also a round trip, so the new answers are in
        assert "currentTime" in hb["response"]
        assert (await send(call.UnlockConnector(evse_id=1, connector_id=1))).status == "UnlockFailed"
    assert peer.returncode == 0, (peer.lines(), peer.stderr)
    assert [x["action"] for x in peer.exchanges(dir="in")] == [
        "RequestStartTransaction",
        "GetTransactionStatus",
        "UnlockConnector",
        "TriggerMessage",
        "TriggerMessage",
        "RequestStopTransaction",
        "GetTransactionStatus",
        "UnlockConnector",
        "UnlockConnector",
    ]
    assert peer.event("close")[0]["code"] == 1000
    assert peer.call_errors() == []


async def test_ocpp_rpc_strict_peer_refuses_a_schema_invalid_call_and_exits_non_zero(central):
    require_node()
    with OcppRpcStation(central.url("RPC201"), stay=True, script=False) as peer:
        assert await blocking(peer.wait_for, lambda: peer.event("ready"))
        # evseId must be an integer: the library sends it unchecked, ocpp-rpc answers with a CallError.
        bad = call.UnlockConnector(evse_id="one", connector_id=1)  # type: ignore[arg-type]
        assert await blocking(central.send, "RPC201", bad, validate=False) is None
    assert peer.returncode == 2
    [failure] = peer.event("strictValidationFailure")
    assert (failure["method"], failure["outbound"], failure["isCall"]) == ("UnlockConnector", False, True)
    assert peer.exchanges(dir="in") == []  # never reached its handler


async def test_ocpp_rpc_peer_with_a_wrong_password_exits_non_zero(central):
    require_node()
    central.passwords["RPC201"] = "right"
    peer = OcppRpcStation(central.url("RPC201"), password="wrong")
    assert await blocking(peer.run) == 1
    assert peer.event("connectFailed")[0]["status"] == 401
    assert peer.exchanges() == []
