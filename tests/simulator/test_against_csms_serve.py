"""The simulator against the real `csms serve` (a subprocess on free ports, SQLite)."""

from __future__ import annotations

import pytest
import trio

from simulator import Fleet, GroupSpec, TraceWriter

from .conftest import FAST_DRIVER, eventually, make_spec

try:
    from tests.support.server import start_csms
except ImportError as exc:  # pragma: no cover - the CSMS is built by another team in parallel
    pytest.skip(f"`csms serve` is not importable yet ({exc})", allow_module_level=True)


@pytest.fixture
def serve(tmp_path):
    try:
        proc = start_csms(f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, ["--allow-unknown-chargers",
                                                                       "--heartbeat-interval", "1"])
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"`csms serve` does not start here: {exc}")
    try:
        yield proc
    finally:
        proc.stop()


async def _get(proc, path):
    async with proc.client() as client:
        res = await client.get(path)
        res.raise_for_status()
        return res.json()["data"]


async def test_fleet_and_faults_against_csms_serve(nursery, serve):
    fleet = Fleet(make_spec(count=10, connectors=2, driver=FAST_DRIVER), serve.ocpp, trace=TraceWriter(keep=True))
    faulty_spec = make_spec(faults=["drop_stop_transaction=1,available=false", "unlock_failed=1"])
    faulty_spec = faulty_spec.with_overrides(groups=(GroupSpec(prefix="FAULTY", count=1, connectors=1),))
    faulty = Fleet(faulty_spec, serve.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    await nursery.start(faulty.run)
    with trio.fail_after(10):
        await fleet.wait_online()
        await faulty.wait_online()

    # A scripted session whose StopTransaction is dropped: the CSMS keeps believing Charging.
    cp = faulty["FAULTY0001"]
    tx = await cp.start_by_tag(1, "TAG0001")
    assert tx is not None and tx.transaction_id is not None and tx.auth_status == "Accepted"
    await cp.flush()
    await cp.unplug(1)
    await trio.sleep(2.5)  # meanwhile the driven fleet runs its sessions

    assert fleet.stats.errors == {} and faulty.stats.errors == {}
    answered = [r for r in fleet.trace.records if r["kind"] == "tx" and r["event"] == "answered"]
    assert len(answered) >= 20 and all(r["auth"] == "Accepted" and r["transaction_id"] for r in answered)
    stops = [r for r in fleet.trace.records if r["kind"] == "out" and '"StopTransaction"' in r["frame"]]
    assert stops

    rows = {row["id"]: row for row in await _get(serve, "/api/charge-points")}
    for c in fleet:
        assert rows[c.id]["online"] and rows[c.id]["vendor"] == c.identity.vendor
    assert rows["FAULTY0001"]["connectors"]["1"]["status"] == "Charging"  # what the CSMS believes ...
    truth = cp.connector_truth(1)
    assert truth.state == "unplugged" and not truth.transaction_running  # ... and what is true
    assert not [r for r in faulty.trace.records if r["kind"] == "out" and '"StopTransaction"' in r["frame"]]

    # A CSMS->CP fault through the CSMS's own API: UnlockConnector answered UnlockFailed.
    async with serve.client() as client:
        res = await client.post("/api/charge-points/FAULTY0001/call",
                                json={"action": "UnlockConnector", "payload": {"connectorId": 1}})
    assert res.status_code == 200, res.text
    assert res.json()["data"] == {"status": "UnlockFailed"}
    await eventually(lambda: any(r["kind"] == "fault" and r["fault"] == "unlock_failed" for r in faulty.trace.records))
