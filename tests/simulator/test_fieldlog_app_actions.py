"""`playbook.app_actions`: which of a log's CSMS calls an app or an operator caused (pure, no sockets)."""

from __future__ import annotations

from typing import Any

from simulator.fieldlog.frames import FrameRecord, LinkRecord
from simulator.fieldlog.playbook import AppAction, app_actions

CP = "EVBOX-BT-4417"


def csms(t: float, *frame: Any, cp: str = CP) -> FrameRecord:
    return FrameRecord(t, cp, "in", list(frame))


def cp_(t: float, *frame: Any, cp: str = CP) -> FrameRecord:
    return FrameRecord(t, cp, "out", list(frame))


NIGHT = [
    LinkRecord(0, CP, "connect"),
    cp_(1, 2, "1", "StatusNotification", {"connectorId": 2, "status": "Available", "errorCode": "NoError"}),
    csms(1.1, 3, "1", {}),
    csms(100, 2, "a", "RemoteStartTransaction", {"connectorId": 2, "idTag": "APP-1"}),
    cp_(100.5, 3, "a", {"status": "Rejected"}),
    csms(200, 2, "b", "Reset", {"type": "Soft"}),  # an operator's too, but not one that acts on a connector
    cp_(200.1, 3, "b", {"status": "Accepted"}),
    cp_(300, 2, "2", "StartTransaction", {"connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": "x"}),
    csms(300.2, 3, "2", {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}),
    csms(400, 2, "c", "RemoteStopTransaction", {"transactionId": 77}),
    cp_(400.1, 3, "c", {"status": "Accepted"}),
    csms(500, 2, "d", "UnlockConnector", {"connectorId": 1}),
    cp_(500.1, 4, "d", "NotSupported", "no", {}),
    csms(600, 2, "e", "RemoteStartTransaction", {"connectorId": 2, "idTag": "APP-1"}),  # never answered
]


def test_the_app_and_operator_calls_with_the_chargers_answers():
    assert app_actions(NIGHT) == [
        AppAction(100, CP, "start", "RemoteStartTransaction", 2, "APP-1", answer="Rejected"),
        AppAction(400, CP, "stop", "RemoteStopTransaction", 1, transaction_id="77", answer="Accepted"),
        AppAction(500, CP, "unlock", "UnlockConnector", 1, answer="CallError NotSupported"),
        AppAction(600, CP, "start", "RemoteStartTransaction", 2, "APP-1"),
    ]


def test_only_the_calls_inside_the_window_but_the_transactions_from_before_it():
    found = app_actions(NIGHT, start=350, end=550)
    assert [(a.t, a.kind, a.connector) for a in found] == [(400, "stop", 1), (500, "unlock", 1)]


def test_a_201_station_names_evses_id_tokens_and_its_own_transaction_ids():
    started = {"eventType": "Started", "transactionInfo": {"transactionId": "TX-9"}, "evse": {"id": 3}}
    ask = {"evseId": 3, "idToken": {"idToken": "APP", "type": "Central"}, "remoteStartId": 1}
    found = app_actions(
        [
            csms(10, 2, "a", "RequestStartTransaction", ask),
            cp_(10.1, 3, "a", {"status": "Accepted"}),
            cp_(20, 2, "1", "TransactionEvent", started),
            csms(20.1, 3, "1", {}),
            csms(30, 2, "b", "RequestStopTransaction", {"transactionId": "TX-9"}),
            cp_(30.1, 3, "b", {"status": "Accepted"}),
            csms(40, 2, "c", "UnlockConnector", {"evseId": 3, "connectorId": 1}),
        ]
    )
    assert found == [
        AppAction(10, CP, "start", "RequestStartTransaction", 3, "APP", answer="Accepted"),
        AppAction(30, CP, "stop", "RequestStopTransaction", 3, transaction_id="TX-9", answer="Accepted"),
        AppAction(40, CP, "unlock", "UnlockConnector", 3),
    ]


def test_a_start_that_names_no_connector_is_kept_with_none_and_other_chargers_are_apart():
    found = app_actions(
        [
            csms(5, 2, "a", "RemoteStartTransaction", {"idTag": "APP"}),
            cp_(5.1, 3, "a", {"status": "Accepted"}, cp="OTHER"),  # another charger's message id "a": not this answer
        ]
    )
    assert found == [AppAction(5, CP, "start", "RemoteStartTransaction", None, "APP")]
