"""The unlock answer: the seed's three response shapes, to the key."""

from __future__ import annotations

from csms.services.unlock import UnlockResult, answer_body, ocpp_outcome, success_message


def test_no_stuck_sessions_shape():
    r = UnlockResult("station-guid", 1, "CP001", True, "Connector unlocked successfully")
    assert answer_body(r) == (
        {
            "success": True,
            "message": "Connector unlocked successfully",
            "data": {
                "chargingStationId": "station-guid",
                "connectorId": 1,
                "chargePointId": "CP001",
                "status": "Unlocked",
                "cleanedSessions": [],
                "sessionsCleared": 0,
                "warnings": [],
            },
        }
    )


def test_with_stuck_sessions_shape():
    r = UnlockResult(
        "station-guid",
        1,
        "CP001",
        True,
        "Connector unlocked successfully",
        ["session-guid-1", "session-guid-2"],
        ["Session session-guid-1 was automatically ended", "Session session-guid-2 was automatically ended"],
    )
    body = answer_body(r)
    assert body["message"] == "Connector unlocked successfully. 2 stuck session(s) automatically cleared."
    assert body["data"]["sessionsCleared"] == 2
    assert body["data"]["cleanedSessions"] == ["session-guid-1", "session-guid-2"]


def test_failed_unlock_shape_keeps_cleaned_sessions():
    r = UnlockResult(
        "s",
        1,
        "CP",
        False,
        "Charge point did not respond in time",
        ["session-guid-1"],
        ["Session session-guid-1 was automatically ended"],
    )
    assert answer_body(r) == {
        "success": False,
        "message": "Charge point did not respond in time",
        "data": {"cleanedSessions": ["session-guid-1"], "warnings": ["Session session-guid-1 was automatically ended"]},
    }


def test_ocpp_outcomes():
    assert ocpp_outcome("Unlocked") == (True, "Connector unlocked successfully")
    assert ocpp_outcome("UnlockFailed")[0] is False and "UnlockFailed" in ocpp_outcome("UnlockFailed")[1]
    assert ocpp_outcome("NotSupported")[0] is False and "NotSupported" in ocpp_outcome("NotSupported")[1]
    assert ocpp_outcome(None, error="Charger is offline") == (False, "Charger is offline")
    assert success_message("X", 0) == "X"
    assert success_message("X", 1) == "X. 1 stuck session(s) automatically cleared."
