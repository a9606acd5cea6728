"""Every path that closes a transaction ends its charging session exactly once, billed.

The supersede path (a StopTransaction lost, the next car starts on the same connector) once left
the app's session `Charging` for ever, unbilled; a paid session that charged must also end with
its fee captured by the provider, once.
"""

from __future__ import annotations

import pytest
import trio

from csms.db.models import PaymentReservation
from tests.e2e.test_money import (
    FLAKY,
    _audits,
    _flaky_env,
    _provider_calls,
    _session,
    _start,
    _until,
)
from tests.support.chargepoint import connect
from tests.support.db import with_db

START = "/api/ChargingSession/start-charging-session"


async def _supersede(cp, tag_b: str = "OTHER") -> tuple[int, int]:
    """tx A (APP001, meter 0) samples 4,000 Wh, its StopTransaction is lost, the connector reports Available,
    and half a second later the next driver starts locally: tx B."""

    tx_a = await cp.start(1, "APP001", meter_start=0)
    await cp.status(1, "Charging")
    await cp.meter(1, tx_a, 4000)
    await cp.status(1, "Available")  # the car left; its StopTransaction never came
    await trio.sleep(0.5)
    tx_b = await cp.start(1, tag_b, meter_start=4000)
    return tx_a, tx_b


async def test_a_superseded_app_session_ends_with_energy_fee_and_reason(csms):
    async with connect(csms.ocpp, "SUP1") as cp, csms.client() as http:
        await cp.status(1, "Available")
        r = await http.post(START, json=_start("SUP1", tag="APP001", tariff="0.25"))
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        tx_a, tx_b = await _supersede(cp)
        session = await _session(http, session_id)
    assert session["transactionId"] == tx_a
    assert (
        session["status"],
        session["endReason"],
        session["energyWh"],
        session["chargingTotalFee"],
        session["meterSource"],
    ) == ("Ended", "Superseded", 4000, "1.00", "meter_values"), session
    assert session["endTime"] is not None
    ended = [a for a in _audits(csms.db_url, "session.ended") if a.subject == session_id]
    assert len(ended) == 1 and ended[0].details["reason"] == "Superseded" and ended[0].details["fee"] == "1.00"


@pytest.fixture
def provider_log(monkeypatch, tmp_path):
    return _flaky_env(monkeypatch, tmp_path, failures=0)


SETTLE_NOW = [*FLAKY, "--estimate-settle-seconds", "0"]


@pytest.mark.parametrize("csms_args", [SETTLE_NOW])
async def test_a_superseded_paid_session_captures_its_fee_with_the_provider_once(provider_log, csms):
    async with connect(csms.ocpp, "SUP2") as cp, csms.client("user") as user, csms.client() as admin:
        await cp.status(1, "Available")
        created = (await user.post("/api/Payments/Create", json=_start("SUP2", tag="APP001"))).json()["data"]
        rid, ref = created["reservationId"], created["providerRef"]
        r = await user.post("/api/Payments/Confirm", json={"reservationId": rid, "paymentMethod": "card"})
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        await _supersede(cp)

        def captures() -> list[dict]:
            return [c for c in _provider_calls(provider_log) if c["ref"] == ref]

        await _until(lambda: captures(), "the provider capture")
        await admin.post("/api/maintenance/run", json={})
        await trio.sleep(0.8)  # nothing is called twice
        session = await _session(admin, session_id)
    assert [(c["op"], c["amount"]) for c in captures()] == [("capture", "1.00")]
    assert (session["endReason"], session["chargingTotalFee"]) == ("Superseded", "1.00")
    res = with_db(csms.db_url, lambda s: s.get(PaymentReservation, rid))
    assert res.status == "Completed" and res.provider_captured_at is not None and res.provider_cancel_due_at is None
    assert res.provider_cancelled_at is None
    assert [a.details["amount"] for a in _audits(csms.db_url, "payment.captured") if a.subject == rid] == ["1.00"]


@pytest.mark.parametrize("csms_args", [FLAKY])
async def test_a_paid_session_stopped_normally_captures_its_fee(provider_log, csms):
    async with connect(csms.ocpp, "SUP3") as cp, csms.client("user") as user:
        await cp.status(1, "Available")
        created = (await user.post("/api/Payments/Create", json=_start("SUP3", tag="APP001"))).json()["data"]
        r = await user.post(
            "/api/Payments/Confirm", json={"reservationId": created["reservationId"], "paymentMethod": "card"}
        )
        assert r.status_code == 200, r.text
        tx = await cp.start(1, "APP001", meter_start=1000)
        await cp.stop(tx, 3000)
        await _until(
            lambda: any(c["ref"] == created["providerRef"] for c in _provider_calls(provider_log)),
            "the provider capture",
        )
    assert [(c["op"], c["amount"]) for c in _provider_calls(provider_log) if c["ref"] == created["providerRef"]] == [
        ("capture", "0.50")
    ]


@pytest.mark.parametrize("csms_args", [[*FLAKY, "--estimate-settle-seconds", "2"]])
async def test_a_late_stop_within_the_settle_delay_sets_the_amount_captured(provider_log, csms):
    """The supersede estimated 4,000 Wh (1.00); the charger's own StopTransaction comes a moment later with
    6,000 Wh: the capture, not yet made, takes 1.50, once."""
    async with connect(csms.ocpp, "SUP4") as cp, csms.client("user") as user, csms.client() as admin:
        await cp.status(1, "Available")
        created = (await user.post("/api/Payments/Create", json=_start("SUP4", tag="APP001"))).json()["data"]
        r = await user.post(
            "/api/Payments/Confirm", json={"reservationId": created["reservationId"], "paymentMethod": "card"}
        )
        session_id = r.json()["data"]["sessionId"]
        tx_a, _tx_b = await _supersede(cp)
        assert (await _session(admin, session_id))["chargingTotalFee"] == "1.00"
        await cp.stop(tx_a, 6_000)  # late: the queue of a charger that was cut off
        await _until(
            lambda: [c for c in _provider_calls(provider_log) if c["ref"] == created["providerRef"]],
            "the provider capture",
        )
        await trio.sleep(0.8)
        session = await _session(admin, session_id)
    assert [(c["op"], c["amount"]) for c in _provider_calls(provider_log) if c["ref"] == created["providerRef"]] == [
        ("capture", "1.50")
    ]
    assert (session["chargingTotalFee"], session["reconciled"], session["review"]) == ("1.50", True, False)


@pytest.mark.parametrize("csms_args", [FLAKY])
async def test_a_capture_never_takes_more_than_was_held(provider_log, csms):
    async with connect(csms.ocpp, "SUP5") as cp, csms.client("user") as user, csms.client() as admin:
        await cp.status(1, "Available")
        created = (
            await user.post("/api/Payments/Create", json={**_start("SUP5", tag="APP001"), "amount": "0.40"})
        ).json()["data"]
        r = await user.post(
            "/api/Payments/Confirm", json={"reservationId": created["reservationId"], "paymentMethod": "card"}
        )
        session_id = r.json()["data"]["sessionId"]
        tx = await cp.start(1, "APP001", meter_start=0)
        await cp.stop(tx, 4_000)  # 1.00 at 0.25/kWh, 0.40 held
        await _until(
            lambda: [c for c in _provider_calls(provider_log) if c["ref"] == created["providerRef"]],
            "the provider capture",
        )
        session = await _session(admin, session_id)
    assert [(c["op"], c["amount"]) for c in _provider_calls(provider_log) if c["ref"] == created["providerRef"]] == [
        ("capture", "0.40")
    ]
    assert session["chargingTotalFee"] == "1.00" and "collect 0.60 by hand" in session["reviewReason"]


async def test_a_late_stop_for_a_transaction_closed_without_its_session_ends_it(csms):
    """Rows the old supersede path left behind (transaction closed, session still Charging): the charger's
    late StopTransaction ends the session through the shared step."""
    from sqlalchemy import text

    async with connect(csms.ocpp, "SUP6") as cp, csms.client() as http:
        await cp.status(1, "Available")
        r = await http.post(START, json=_start("SUP6", tag="APP001", tariff="0.25"))
        session_id = r.json()["data"]["sessionId"]
        tx = await cp.start(1, "APP001", meter_start=0)
        with_db(
            csms.db_url,
            lambda s: s.execute(
                text(
                    "UPDATE transactions SET stop_time = start_time, stop_reason = 'Superseded', meter_stop = 0 WHERE id = :id"  # noqa: E501
                ),
                {"id": tx},
            ),
        )
        await cp.stop(tx, 2_000)
        session = await _session(http, session_id)
    assert (session["status"], session["endReason"], session["energyWh"], session["chargingTotalFee"]) == (
        "Ended",
        "Local",
        2_000,
        "0.50",
    ), session
    assert len([a for a in _audits(csms.db_url, "session.ended") if a.subject == session_id]) == 1
