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
        proc = start_csms(
            f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, ["--allow-unknown-chargers", "--heartbeat-interval", "1"]
        )
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
        res = await client.post(
            "/api/charge-points/FAULTY0001/call", json={"action": "UnlockConnector", "payload": {"connectorId": 1}}
        )
    assert res.status_code == 200, res.text
    assert res.json()["data"] == {"status": "UnlockFailed"}
    await eventually(lambda: any(r["kind"] == "fault" and r["fault"] == "unlock_failed" for r in faulty.trace.records))


FAULTY = {
    "F0001": "drop_stop_transaction=1,available=false",
    "F0002": "reject_remote_start=1",
    "F0003": "accept_remote_start_never_start=1",
    "F0004": "silent_connector=1",
    "F0005": "unlock_not_supported=1",
    "F0006": "unlock_no_answer=1",
    "F0007": "stuck_status=1,status=Finishing",
    "F0008": "slow_responses=1,min=3,max=3",
    "F0009": "heartbeat_stop=@0.3",
    "F0010": "reboot=1,after=0.3:0.3,boot_delay=0.5",
    "F0011": "disconnect_mid_session=1,after=0.3:0.3,back_after=0.8,replay=true",
}


@pytest.fixture
def serve_fast_timeout(tmp_path):
    try:
        proc = start_csms(
            f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, ["--allow-unknown-chargers", "--call-timeout-seconds", "2"]
        )
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"`csms serve` does not start here: {exc}")
    try:
        yield proc
    finally:
        proc.stop()


async def test_each_fault_against_csms_serve(nursery, serve_fast_timeout):
    """One charge point per fault, all at once; the CSMS's own API says what it believes."""
    serve = serve_fast_timeout
    spec = make_spec(faults=[f"{f},cp={cp}" for cp, f in FAULTY.items()]).with_overrides(
        groups=(GroupSpec(prefix="F", count=len(FAULTY), connectors=1),)
    )
    fleet = Fleet(spec, serve.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    with trio.fail_after(10):
        await fleet.wait_online()
        for cp in fleet:
            await cp.flush()

    def sent(cp_id, action):
        return [
            r for r in fleet.trace.records if r["cp"] == cp_id and r["kind"] == "out" and f'"{action}"' in r["frame"]
        ]

    async def call(cp_id, action, payload):
        async with serve.client() as client:
            return await client.post(f"/api/charge-points/{cp_id}/call", json={"action": action, "payload": payload})

    for cp_id in ("F0001", "F0007", "F0010", "F0011"):
        await fleet[cp_id].start_by_tag(1, "TAG0001")
    for cp_id in ("F0001", "F0007"):
        if cp_id == "F0007":
            await fleet[cp_id].stop(1)
        await fleet[cp_id].unplug(1)

    assert (await call("F0002", "RemoteStartTransaction", {"idTag": "APP"})).json()["data"] == {"status": "Rejected"}
    assert (await call("F0003", "RemoteStartTransaction", {"idTag": "APP"})).json()["data"] == {"status": "Accepted"}
    res = await call("F0005", "UnlockConnector", {"connectorId": 1})
    assert res.json()["data"] == {"status": "NotSupported"}
    await eventually(lambda: fleet["F0009"].truth().muted, what="heartbeat_stop at 0.3 s")
    timed_out = {}

    async def times_out(cp_id, action, payload):
        timed_out[cp_id] = (await call(cp_id, action, payload)).status_code

    async with trio.open_nursery() as waits:  # the CSMS gives each 2 s
        waits.start_soon(times_out, "F0006", "UnlockConnector", {"connectorId": 1})  # never answered
        waits.start_soon(times_out, "F0008", "GetConfiguration", {})  # answered after 3 s
        waits.start_soon(times_out, "F0009", "GetConfiguration", {})  # hung charger
    assert timed_out == {"F0006": 504, "F0008": 504, "F0009": 504}

    rows = {row["id"]: row for row in await _get(serve, "/api/charge-points")}
    status = {cp: rows[cp]["connectors"].get("1", {}).get("status") for cp in FAULTY}
    truth = {cp: fleet[cp].connector_truth(1) for cp in FAULTY}
    # drop_stop_transaction: the car left, the CSMS still sees Charging and never got a StopTransaction.
    assert (
        status["F0001"] == "Charging" and truth["F0001"].state == "unplugged" and not sent("F0001", "StopTransaction")
    )
    # reject / accept-never-start: nothing follows the answer.
    assert not sent("F0002", "StartTransaction") and not sent("F0003", "StartTransaction")
    assert status["F0003"] == "Available" and truth["F0003"].state == "unplugged"
    # silent connector: the CSMS has no status for connector 1 at all.
    assert status["F0004"] is None and rows["F0004"]["online"]
    # stuck_status: StopTransaction sent, but the connector stays Finishing although the cable is out.
    assert sent("F0007", "StopTransaction") and status["F0007"] == "Finishing" and truth["F0007"].state == "unplugged"
    # heartbeat_stop: the WebSocket stays open (online) while nothing is sent.
    assert rows["F0009"]["online"] and fleet["F0009"].truth().muted
    # reboot: a second boot, the transaction forgotten (no StopTransaction), Preparing again.
    assert len(sent("F0010", "BootNotification")) == 2 and not sent("F0010", "StopTransaction")
    assert status["F0010"] == "Preparing" and not truth["F0010"].transaction_running
    # disconnect_mid_session: one boot, two connections, the transaction still running and known.
    links = [r["event"] for r in fleet.trace.records if r["cp"] == "F0011" and r["kind"] == "link"]
    assert links.count("connected") == 2 and len(sent("F0011", "BootNotification")) == 1
    assert rows["F0011"]["online"] and truth["F0011"].transaction_running
    assert {r["fault"] for r in fleet.trace.records if r["kind"] == "fault"} == {
        f.split("=")[0] for f in FAULTY.values()
    } - {"unlock_failed"}


async def test_a_fleet_with_passwords_over_tls_against_a_csms_that_authenticates(nursery, tmp_path):
    """Security profile 2 from the simulator's side: wss:// with a test CA, HTTP Basic per charge point."""
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    proc = start_csms(f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, ["--tls-cert", str(chain), "--tls-key", str(key)])
    context = ssl.create_default_context()
    ca.configure_trust(context)
    passwords = {"SEC0001": "first-charger-key-01", "SEC0002": "other-charger-key-02"}
    try:
        import httpx

        async with httpx.AsyncClient(base_url=proc.http, headers=proc.admin, verify=context) as admin:
            for cp_id, password in passwords.items():
                assert (
                    await admin.post("/api/charge-points", json={"id": cp_id, "password": password})
                ).status_code == 201
            spec = make_spec(count=2, connectors=1, driver=FAST_DRIVER)
            spec = spec.with_overrides(groups=(GroupSpec(prefix="SEC", count=2, connectors=1),))
            fleet = Fleet(spec, proc.ocpp, trace=TraceWriter(keep=True), password=passwords.get, ssl_context=context)
            await nursery.start(fleet.run)
            with trio.fail_after(15):
                await fleet.wait_online()
            rows = (await admin.get("/api/charge-points")).json()["data"]
            assert {r["id"]: r["online"] for r in rows} == {"SEC0001": True, "SEC0002": True}
            assert fleet.stats.connect_failures == 0
            header = next(r for r in fleet.trace.records if r["kind"] == "header")
            assert not any(p in str(header) for p in passwords.values())
        nursery.cancel_scope.cancel()
    finally:
        proc.stop()
