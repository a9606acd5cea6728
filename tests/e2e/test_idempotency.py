"""Idempotency-Key on a real `csms serve`: a start repeated with its key runs once (the cluster case is in
tests/e2e/test_cluster_failures.py)."""

from __future__ import annotations

from tests.support.chargepoint import Answers, connect

START = "/api/ChargingSession/start-charging-session"
BODY = {"chargingStationId": "IDEM1", "connectorId": 1, "chargeTagId": "TAG1", "chargingTariff": "0.25"}


async def test_a_start_repeated_with_its_key_is_answered_again_not_run_again(csms):
    answers = Answers()
    async with connect(csms.ocpp, "IDEM1", answers=answers) as cp, csms.client() as http:
        await cp.status(1, "Available")
        key = {"Idempotency-Key": "7f1c0e2a-start-1"}
        first = await http.post(START, json=BODY, headers=key)
        assert first.status_code == 200, first.text
        again = await http.post(START, json=BODY, headers=key)
        assert again.status_code == 200 and again.json() == first.json(), again.text
        assert again.headers.get("idempotent-replayed") == "true" and "idempotent-replayed" not in first.headers
        assert [a for a, _ in answers.received if a == "RemoteStartTransaction"] == ["RemoteStartTransaction"]

        other = await http.post(START, json={**BODY, "connectorId": 2}, headers=key)
        assert other.status_code == 422 and other.json()["data"]["code"] == "IdempotencyKeyReused", other.text
        bad = await http.post(START, json=BODY, headers={"Idempotency-Key": "has space"})
        assert bad.status_code == 400 and bad.json()["data"]["code"] == "InvalidIdempotencyKey", bad.text


async def test_a_refused_token_does_not_spend_the_key(csms):
    answers = Answers()
    async with connect(csms.ocpp, "IDEM1", answers=answers) as cp, csms.client() as http:
        await cp.status(1, "Available")
        key = "7f1c0e2a-start-2"
        refused = await http.post(START, json=BODY, headers={"Idempotency-Key": key, "Authorization": "Bearer nope"})
        assert refused.status_code == 401, refused.text
        ran = await http.post(START, json=BODY, headers={"Idempotency-Key": key})
        assert ran.status_code == 200 and "idempotent-replayed" not in ran.headers, ran.text
        assert [a for a, _ in answers.received if a == "RemoteStartTransaction"] == ["RemoteStartTransaction"]


async def test_another_callers_same_key_is_another_request(csms):
    """Keys are each caller's own: the same key from another token runs (and is answered on its own)."""
    answers = Answers()
    async with connect(csms.ocpp, "IDEM1", answers=answers) as cp, csms.client() as admin, csms.client("user") as user:
        await cp.status(1, "Available")
        await cp.status(2, "Available")
        key = {"Idempotency-Key": "shared-key-0001"}
        first = await admin.post(START, json=BODY, headers=key)
        other = await user.post(START, json={**BODY, "connectorId": 2}, headers=key)
        assert first.status_code == 200 and other.status_code == 200, (first.text, other.text)
        assert "idempotent-replayed" not in other.headers and other.json() != first.json()
        assert [a for a, _ in answers.received if a == "RemoteStartTransaction"] == ["RemoteStartTransaction"] * 2
