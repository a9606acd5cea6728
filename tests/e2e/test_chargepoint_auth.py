"""Issue 10, item 1 on a real `csms serve`: who may open an OCPP connection.

HTTP Basic at the handshake (security profile 1), takeover attempts, ids that would forge
log lines, charge points that never booted, lab mode's warning and bound, `csms chargers`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
import trio
from sqlalchemy import select
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from csms.core.chargepoint_auth import UNIFORM_REFUSAL
from csms.db.models import ChargePoint, ChargePointPassword, Transaction
from tests.support.chargepoint import basic_auth, connect
from tests.support.db import with_db
from tests.support.server import ADMIN_TOKEN

PASSWORD = "real-charger-key-0001"


@pytest.fixture
def csms_args():
    return []  # a site: no lab mode


async def _provision(csms, cp_id: str, password: str = PASSWORD) -> None:
    async with csms.client() as admin:
        r = await admin.post("/api/charge-points", json={"id": cp_id, "password": password})
        assert r.status_code == 201, r.text


async def _refused(url: str, headers=None) -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as ei:
        async with open_websocket_url(url, subprotocols=["ocpp1.6"], extra_headers=headers):
            pass
    return ei.value


async def _metric(csms, name: str, **labels: str) -> float:
    async with csms.client() as http:
        text = (await http.get("/metrics")).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


async def test_wrong_password_missing_credentials_and_unknown_ids_are_refused_logged_and_counted(csms):
    await _provision(csms, "AUTH1")
    url = csms.url("AUTH1")
    missing = await _refused(url)
    assert missing.status_code == 401
    assert (b"www-authenticate", b'Basic realm="OCPP", charset="UTF-8"') in missing.headers
    assert (await _refused(url, basic_auth("AUTH1", "wrong-password-0001"))).status_code == 401
    assert (await _refused(url, basic_auth("OTHER", PASSWORD))).status_code == 401  # user must be the id
    stranger = await _refused(csms.url("NOBODY"), basic_auth("NOBODY", PASSWORD))
    wrong = await _refused(url, basic_auth("AUTH1", "wrong-password-0001"))
    # An unknown id reads exactly as a known one with wrong credentials: nothing to enumerate.
    same = [(k, v) for k, v in wrong.headers if k.lower() != b"date"]
    assert (stranger.status_code, stranger.body) == (401, wrong.body)
    assert [(k, v) for k, v in stranger.headers if k.lower() != b"date"] == same
    log = csms.log()
    assert "handshake.refused reason=missing_credentials path=/ocpp/AUTH1 charge_point=AUTH1 remote=127.0.0.1:" in log
    assert log.count("handshake.refused reason=bad_credentials path=/ocpp/AUTH1") == 3
    assert (
        "handshake.refused reason=unknown_charge_point path=/ocpp/NOBODY charge_point=NOBODY remote=127.0.0.1:" in log
    )
    assert PASSWORD not in log and "wrong-password-0001" not in log
    assert await _metric(csms, "csms_handshakes_refused_total", reason="bad_credentials") == 3
    assert await _metric(csms, "csms_handshakes_refused_total", reason="missing_credentials") == 1
    async with connect(csms.ocpp, "AUTH1", password=PASSWORD) as cp:
        assert "currentTime" in await cp.heartbeat()
    assert "charge_point.connected charge_point=AUTH1 remote=127.0.0.1:" in csms.log()
    hashes = with_db(csms.db_url, lambda s: [p.password_hash for p in s.scalars(select(ChargePointPassword))])
    assert len(hashes) == 1 and PASSWORD not in hashes[0] and hashes[0].startswith("scrypt$")


async def test_takeover_attempt_without_the_password_changes_nothing(csms):
    """The attack run: a second connection with the same id took over, got the CSMS's calls
    (a REST unlock answered 200 by the impostor) and closed the real charger's transaction."""
    await _provision(csms, "REAL1")
    async with connect(csms.ocpp, "REAL1", password=PASSWORD) as real, csms.client() as admin:
        await real.status(1, "Charging")
        tx = await real.start(1, "TAG1", meter_start=100)
        assert (await _refused(csms.url("REAL1"))).status_code == 401
        assert (await _refused(csms.url("REAL1"), basic_auth("REAL1", "guessed-password-01"))).status_code == 401
        # The real charger is still the one the CSMS talks to.
        r = await admin.post(
            "/api/charge-points/REAL1/call", json={"action": "UnlockConnector", "payload": {"connectorId": 1}}
        )
        assert r.status_code == 200 and r.json()["data"] == {"status": "Unlocked"}
        assert ("UnlockConnector", {"connector_id": 1}) in real.answers.received
        assert "currentTime" in await real.heartbeat()
        rows = (await admin.get("/api/transactions", params={"open": "true"})).json()["data"]
        assert [row["transactionId"] for row in rows] == [tx]
    assert "charge_point.replaced" not in csms.log()


async def test_a_second_authenticated_connection_replaces_the_first_and_is_logged(csms):
    await _provision(csms, "REAL2")
    async with connect(csms.ocpp, "REAL2", password=PASSWORD) as first:
        async with connect(csms.ocpp, "REAL2", password=PASSWORD, boot=False) as second:
            with trio.fail_after(5):
                while not first.conn.closed:
                    await trio.sleep(0.05)
            assert "currentTime" in await second.heartbeat()
    replaced = [line for line in csms.log().splitlines() if "charge_point.replaced" in line]
    assert len(replaced) == 1 and " WARNING " in replaced[0]
    assert "charge_point=REAL2 remote=127.0.0.1:" in replaced[0] and "old_remote=127.0.0.1:" in replaced[0]
    assert "authenticated=yes" in replaced[0]
    assert await _metric(csms, "csms_connections_replaced_total") == 1


async def test_a_charge_point_without_an_accepted_boot_cannot_open_transactions(csms):
    await _provision(csms, "NOBOOT1")
    async with connect(csms.ocpp, "NOBOOT1", password=PASSWORD, boot=False) as cp:
        assert "currentTime" in await cp.heartbeat()  # harmless, let through
        for action, payload in [
            (
                "StartTransaction",
                {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
            ),
            ("Authorize", {"idTag": "T1"}),
            ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
        ]:
            await cp.conn.send_raw(json.dumps([2, f"nb-{action}", action, payload]))
        # The answers are CallErrors, which our test charge point logs; the database says what happened.
        await cp.heartbeat()
        assert with_db(csms.db_url, lambda s: list(s.scalars(select(Transaction)))) == []
        await cp.boot()
        tx = await cp.start(1, "T1", meter_start=0)
    assert with_db(csms.db_url, lambda s: s.get(Transaction, tx)) is not None
    assert (
        "ocpp.call_error peer=NOBOOT1 action=StartTransaction id=nb-StartTransaction code=SecurityError" in csms.log()
    )
    assert await _metric(csms, "csms_calls_refused_not_accepted_total", action="StartTransaction") == 1
    # Accepted once is accepted on a reconnect too: OCPP 1.6 chargers boot after a restart only.
    async with connect(csms.ocpp, "NOBOOT1", password=PASSWORD, boot=False) as cp:
        await cp.stop(tx, 50)
        assert isinstance(await cp.start(1, "T1", meter_start=50), int)


@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers"]])
async def test_ids_that_would_forge_log_lines_are_refused_and_client_text_is_escaped(csms):
    refused = await _refused(csms.ocpp + "/CP%0AFORGED%20LINE")
    assert refused.status_code == 400 and b"printable ASCII" in refused.body
    assert (await _refused(csms.ocpp + "/" + "L" * 49)).status_code == 400
    async with connect(csms.ocpp, "L" * 48) as cp:  # the longest id allowed
        assert "currentTime" in await cp.heartbeat()
    async with connect(csms.ocpp, "VEND1", boot=False) as cp:
        await cp.conn.call_raw(
            "BootNotification", {"chargePointVendor": "V\nFAKE 2026 ERROR", "chargePointModel": "M\r\n"}
        )
    log = csms.log()
    assert not any(line.startswith(("FORGED", "FAKE")) for line in log.splitlines())
    assert "path=/ocpp/CP%0AFORGED%20LINE" in log
    assert 'vendor="V\\nFAKE 2026 ERROR" model=M\\r\\n' in log  # one field each: quoted, then escaped


@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--max-auto-registered", "2"]])
async def test_lab_mode_is_loud_and_bounded(csms):
    first = next(line for line in csms.log().splitlines() if "LAB_MODE" in line)
    assert " WARNING " in first and "ANY charge point id may connect WITHOUT a password" in first
    async with connect(csms.ocpp, "LAB1"), connect(csms.ocpp, "LAB2"):
        pass
    refused = await _refused(csms.url("LAB3"))
    assert refused.status_code == 404
    assert "handshake.refused reason=auto_register_limit path=/ocpp/LAB3" in csms.log()
    async with connect(csms.ocpp, "LAB1") as cp:  # registered ones still come back
        assert "currentTime" in await cp.heartbeat()
    ids = with_db(csms.db_url, lambda s: sorted(s.scalars(select(ChargePoint.id))))
    assert ids == ["LAB1", "LAB2"]
    # A charge point with a password needs it in lab mode too.
    await _provision(csms, "LABPW")
    assert (await _refused(csms.url("LABPW"))).status_code == 401


@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--max-auto-registered", "1"]])
async def test_the_lab_mode_bound_counts_connections_that_have_not_booted_yet(csms):
    async with connect(csms.ocpp, "HOLD1", boot=False):
        assert (await _refused(csms.url("HOLD2"))).status_code == 404
    async with connect(csms.ocpp, "HOLD2"):  # the slot came free when HOLD1 left unregistered
        pass


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "csms", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


async def test_cli_provisioning_takes_effect_on_a_running_csms(csms):
    done = await trio.to_thread.run_sync(
        lambda: _cli("chargers", "add", "CLI1", "--password-stdin", "--db", csms.db_url, stdin=PASSWORD + "\n")
    )
    assert done.returncode == 0, done.stderr
    assert "charge point CLI1 added, station CLI1 created; password set" in done.stdout
    short = await trio.to_thread.run_sync(
        lambda: _cli("chargers", "add", "CLI2", "--password-stdin", "--db", csms.db_url, stdin="short\n")
    )
    assert short.returncode == 2 and "16 to 40" in short.stderr
    async with connect(csms.ocpp, "CLI1", password=PASSWORD) as cp:
        assert (await cp.boot())["status"] == "Accepted"
    listed = await trio.to_thread.run_sync(lambda: _cli("chargers", "list", "--db", csms.db_url))
    row = next(line for line in listed.stdout.splitlines() if line.startswith("CLI1 "))
    assert row.split()[1] == "set" and PASSWORD not in listed.stdout
    async with csms.client() as admin:
        rows = (await admin.get("/api/charge-points")).json()["data"]
        assert {r["id"]: r["passwordSet"] for r in rows} == {"CLI1": True}
        # A new password replaces the old one at once.
        r = await admin.put("/api/charge-points/CLI1/password", json={"password": "rotated-password-002"})
        assert r.status_code == 200
        r = await admin.put("/api/charge-points/NOPE/password", json={"password": "rotated-password-002"})
        assert r.status_code == 404
        r = await admin.post("/api/charge-points", json={"id": "BAD:ID", "password": "x" * 20})
        assert r.status_code == 400 and "printable ASCII" in r.json()["message"]
    assert (await _refused(csms.url("CLI1"), basic_auth("CLI1", PASSWORD))).status_code == 401
    async with connect(csms.ocpp, "CLI1", password="rotated-password-002") as cp:
        assert "currentTime" in await cp.heartbeat()


async def test_a_station_without_a_password_cannot_connect_outside_lab_mode(csms):
    async with csms.client() as admin:
        r = await admin.post("/api/stations", json={"id": "ST9", "chargePointId": "NOPW1"})
        assert r.status_code == 201 and "no password yet" in r.json()["message"]
    refused = await _refused(csms.url("NOPW1"))
    assert refused.status_code == 401 and refused.body == UNIFORM_REFUSAL.encode()  # as for any stranger
    assert "handshake.refused reason=no_password_set path=/ocpp/NOPW1" in csms.log()  # the operator is told why


async def test_rotating_a_password_closes_the_connection_it_let_in(csms):
    """Whoever holds the open connection proved only the old password: it is closed (1008) and must come back
    with the new one."""
    async with csms.client() as admin:
        assert (await admin.post("/api/charge-points", json={"id": "ROT1", "password": PASSWORD})).status_code == 201
        async with open_websocket_url(
            f"{csms.url('ROT1')}", subprotocols=["ocpp1.6"], extra_headers=basic_auth("ROT1", PASSWORD)
        ) as ws:
            await ws.send_message('[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
            await ws.get_message()
            r = await admin.put("/api/charge-points/ROT1/password", json={"password": "rotated-password-003"})
            assert r.status_code == 200
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as ei:
                await ws.get_message()
            assert ei.value.reason.code == 1008
    assert (await _refused(csms.url("ROT1"), basic_auth("ROT1", PASSWORD))).status_code == 401
    async with connect(csms.ocpp, "ROT1", password="rotated-password-003") as cp:
        assert "currentTime" in await cp.heartbeat()
    assert "charge_point.password_rotated charge_point=ROT1" in csms.log()


@pytest.mark.parametrize("csms_args", [["--log-level", "DEBUG"]])
async def test_debug_logging_prints_no_credentials(csms):
    """At --log-level DEBUG, header-printing libraries (hpack, h11, hypercorn, wsproto, ...) would put the REST
    bearer token and a charger's HTTP Basic password in the log file."""
    await _provision(csms, "DBG1")
    # HTTP/2 (prior knowledge): hypercorn decodes its headers with hpack, which logs each one at DEBUG.
    async with httpx.AsyncClient(base_url=csms.http, headers=csms.admin, http1=False, http2=True) as h2:
        r = await h2.get("/api/charge-points")
        assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.http_version)
    async with connect(csms.ocpp, "DBG1", password=PASSWORD) as cp:
        await cp.heartbeat()
    assert (await _refused(csms.url("DBG1"), basic_auth("DBG1", "wrong-password-0002"))).status_code == 401
    log = csms.log()
    token = basic_auth("DBG1", PASSWORD)[0][1].decode().split()[1]
    for secret in (ADMIN_TOKEN, PASSWORD, token, "wrong-password-0002"):
        assert secret not in log, secret
