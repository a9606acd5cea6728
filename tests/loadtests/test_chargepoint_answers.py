"""The load-test charge point against `csms serve`: it answers what the CSMS asks, and its trace is the simulator's.

The charge point runs in a subprocess patched by gevent as locust patches it; the
CSMS's calls are sent through its admin REST route `POST /api/charge-points/{id}/call`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.loadtests import needs_locust

pytestmark = needs_locust

from tests.support.server import ADMIN_TOKEN, start_csms  # noqa: E402

PROBE = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import json, sys, time, gevent, httpx
    from pathlib import Path
    from loadtests import fleet as fleet_mod
    from loadtests.options import LoadOptions
    from scenarios.timeline import Timeline
    from simulator.trace import read_trace

    ocpp, api, token, report = sys.argv[1:5]
    opts = LoadOptions(ocpp_url=ocpp, api_url=api, api_token=token, report_dir=Path(report), run="t1",
                       epoch=time.time(), session=(30.0, 30.0), meter_interval=1,
                       faults=tuple(__import__("simulator.faults", fromlist=["x"]).parse_fault_option(f)
                                    for f in ["unlock_not_supported=1,connectors=2"]))
    calls = []
    fleet = fleet_mod.start(opts, "P", lambda kind, name, ms, length, exc: calls.append((kind, name, exc is None)))
    cp = fleet.add()
    cp.start()
    assert cp.wait_online(20), "not online"
    http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=20)

    def call(action, payload):
        res = http.post(f"/api/charge-points/{cp.id}/call", json={"action": action, "payload": payload})
        return res.status_code, (res.json().get("data") if res.status_code == 200 else res.text[:200])

    out = {"cp": cp.id}
    assert cp.car_arrives()
    plug = None
    for _ in range(200):
        plug = next((p for p in cp.plugs.values() if p.tx is not None and p.tx.transaction_id is not None), None)
        if plug is not None:
            break
        gevent.sleep(0.05)
    assert plug is not None, "no StartTransaction answered within 10 s"
    charging = plug.model.connector_id
    gevent.sleep(1.5)  # a meter value or two
    out["GetConfiguration"] = call("GetConfiguration", {"key": ["MeterValueSampleInterval", "Nope"]})
    out["ChangeConfiguration"] = call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "7"})
    out["DataTransfer"] = call("DataTransfer", {"vendorId": "acme", "messageId": "x"})
    out["TriggerMessage"] = call("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": charging})
    out["TriggerMeter"] = call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": charging})
    out["ChangeAvailability"] = call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    out["ChangeAvailabilityBack"] = call("ChangeAvailability", {"connectorId": 0, "type": "Operative"})
    out["UnlockNotSupported"] = call("UnlockConnector", {"connectorId": 2})
    out["RemoteStop"] = call("RemoteStopTransaction", {"transactionId": plug.tx.transaction_id})
    gevent.sleep(0.5)
    out["stateAfterStop"] = plug.model.state.value
    out["Unlock"] = call("UnlockConnector", {"connectorId": charging})
    gevent.sleep(0.5)
    out["stateAfterUnlock"] = plug.model.state.value
    out["ClearCache"] = call("ClearCache", {})
    out["heartbeatInterval"] = cp.config.int("HeartbeatInterval")
    fleet.close()
    records = list(read_trace(fleet.path))
    tl = Timeline.from_records(records, connectors={cp.id: 2})
    [tx] = tl.transactions
    out["timeline"] = {"states": [s for _, s in tl.connector(cp.id, charging).states], "end": tx.end,
                       "reason": tx.reason, "stopAcked": tx.stop_acked, "samples": len(tx.samples),
                       "links": [c for _, c in tl.charge_points[cp.id].links]}
    out["calls"] = sorted({name for kind, name, ok in calls if ok})
    print(json.dumps(out))
""")


def test_the_charge_point_answers_the_csms_and_its_trace_rebuilds_the_truth(tmp_path):
    csms = start_csms(f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, ["--allow-unknown-chargers"])
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, csms.ocpp, csms.http, ADMIN_TOKEN, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        csms.stop()
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    status, conf = out["GetConfiguration"]
    assert status == 200 and conf["unknownKey"] == ["Nope"]
    assert {"key": "MeterValueSampleInterval", "readonly": False, "value": "1"} in conf["configurationKey"]
    assert out["ChangeConfiguration"] == [200, {"status": "Accepted"}] and out["heartbeatInterval"] == 7
    assert out["DataTransfer"] == [200, {"status": "UnknownVendorId"}]
    assert out["TriggerMessage"] == [200, {"status": "Accepted"}]
    assert out["TriggerMeter"] == [200, {"status": "Accepted"}]
    assert out["ChangeAvailability"] == [200, {"status": "Scheduled"}]  # a transaction runs: after it
    assert out["ChangeAvailabilityBack"] == [200, {"status": "Scheduled"}]
    assert out["UnlockNotSupported"] == [200, {"status": "NotSupported"}]  # the fault on connector 2
    assert out["RemoteStop"] == [200, {"status": "Accepted"}] and out["stateAfterStop"] == "finishing"
    assert out["Unlock"] == [200, {"status": "Unlocked"}] and out["stateAfterUnlock"] == "unplugged"
    assert out["ClearCache"][0] == 502  # CallError NotImplemented, as the CSMS reports it

    tl = out["timeline"]
    assert tl["states"] == ["plugged", "charging", "finishing", "unplugged"]
    assert tl["end"] == "stop" and tl["reason"] == "Remote" and tl["stopAcked"] and tl["samples"] >= 1
    assert tl["links"] == [True, False]
    assert {
        "BootNotification",
        "Authorize",
        "StartTransaction",
        "MeterValues",
        "StopTransaction",
        "StatusNotification",
        "connect",
    } <= set(out["calls"])
