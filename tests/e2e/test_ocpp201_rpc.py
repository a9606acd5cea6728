"""npm ocpp-rpc in strict mode as an OCPP 2.0.1 station against `csms serve`: every Call and answer is checked,
both ways, against ocpp-rpc's own copy of the 2.0.1 schemas (date-time formats included). Skipped with the
reason when node/npm are absent (tests/interop201/ocpp_rpc.py)."""

from __future__ import annotations

import trio

from tests.interop201.ocpp_rpc import OcppRpcStation, require_node


async def test_a_strict_ocpp_rpc_station_runs_its_script_and_answers_the_csms(csms):
    await trio.to_thread.run_sync(require_node)
    peer = OcppRpcStation(csms.url("RPC201"), stay=True)
    await trio.to_thread.run_sync(peer.start)
    try:
        assert await trio.to_thread.run_sync(lambda: peer.wait_for(lambda: peer.event("ready"), 30)), peer.lines()
        async with csms.client() as http:
            res = await http.post(
                "/api/ChargingSession/start-charging-session",
                json={
                    "chargingStationId": "RPC201",
                    "connectorId": 1,
                    "chargeTagId": "RPCAPP",
                    "chargingTariff": "0.3",
                },
            )
            assert res.status_code == 200, res.text
            unlock = await http.post(
                "/api/ChargingSession/unlock-connector", json={"chargingStationId": "RPC201", "connectorId": 2}
            )
            assert unlock.status_code in (200, 400), unlock.text  # whatever it answers, the exchange is strict
            rows = (await http.get("/api/transactions", params={"chargePointIdPrefix": "RPC201"})).json()["data"]
    finally:
        code = await trio.to_thread.run_sync(peer.close)
    assert code == 0, peer.lines()[-20:]  # 2: a strict-mode validation failure, either way
    assert peer.call_errors() == [], peer.call_errors()
    sent = {e["action"] for e in peer.exchanges(dir="out")}
    assert {"BootNotification", "StatusNotification", "Authorize", "TransactionEvent", "Heartbeat"} <= sent
    assert {"RequestStartTransaction", "UnlockConnector"} <= {e["action"] for e in peer.exchanges(dir="in")}
    assert any(r["stopTime"] is not None for r in rows) and len(rows) >= 1  # its scripted transaction, stored
