"""Security profile 2 end to end: OCPP over wss:// with HTTP Basic, the REST API over https://,
both with a certificate this test makes (trustme) and trusts on the client side only."""

from __future__ import annotations

import base64
import json
import ssl

import httpx
import pytest
import trio

from tests.support.chargepoint import connect

trustme = pytest.importorskip("trustme", reason="the TLS tests make their certificate with trustme (dev extra)")

PASSWORD = "tls-charger-key-00001"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def csms_args(ca, tmp_path):
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return ["--tls-cert", str(chain), "--tls-key", str(key)]


@pytest.fixture
def client_ssl(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _websockets_boot(url: str, context: ssl.SSLContext, authorization: str) -> list:
    """The `websockets` library's client (not ours): wss://, Basic auth, one BootNotification."""
    from websockets.sync.client import connect as ws_connect

    with ws_connect(
        url,
        ssl=context,
        subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": authorization},
        proxy=None,
        open_timeout=10,
    ) as ws:
        ws.send('[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        return json.loads(ws.recv(10))


async def test_ocpp_over_wss_with_basic_auth_and_rest_over_https(csms, client_ssl):
    assert csms.ocpp.startswith("wss://127.0.0.1:") and csms.http.startswith("https://127.0.0.1:")
    async with httpx.AsyncClient(base_url=csms.http, headers=csms.admin, verify=client_ssl) as admin:
        assert (await admin.get("/health")).json()["status"] == "ok"
        r = await admin.post("/api/charge-points", json={"id": "TLS1", "password": PASSWORD})
        assert r.status_code == 201
        answer = await trio.to_thread.run_sync(_websockets_boot, csms.url("TLS1"), client_ssl, _basic("TLS1", PASSWORD))
        assert answer[0] == 3 and answer[2]["status"] == "Accepted"
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as ei:
            await trio.to_thread.run_sync(
                _websockets_boot, csms.url("TLS1"), client_ssl, _basic("TLS1", "wrong-password-0001")
            )
        assert ei.value.response.status_code == 401
        async with connect(csms.ocpp, "TLS1", password=PASSWORD, ssl_context=client_ssl) as cp:
            assert "currentTime" in await cp.heartbeat()
            rows = (await admin.get("/api/charge-points")).json()["data"]
            assert [(r["id"], r["online"], r["passwordSet"]) for r in rows] == [("TLS1", True, True)]


def _websockets_open(url: str, context: ssl.SSLContext | None) -> None:
    from websockets.sync.client import connect as ws_connect

    with ws_connect(url, ssl=context, subprotocols=["ocpp1.6"], proxy=None, open_timeout=3):
        pass


async def test_plain_and_untrusted_clients_get_nowhere_and_the_server_keeps_serving(csms, client_ssl):
    plain = csms.url("TLS2").replace("wss://", "ws://")
    with pytest.raises(Exception):  # noqa: B017 - whatever the client makes of TLS bytes (or none) in answer to HTTP
        await trio.to_thread.run_sync(_websockets_open, plain, None)
    with pytest.raises(ssl.SSLCertVerificationError):
        await trio.to_thread.run_sync(_websockets_open, csms.url("TLS2"), ssl.create_default_context())
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(verify=ssl.create_default_context()) as http:
            await http.get(f"{csms.http}/health")
    async with httpx.AsyncClient(verify=client_ssl) as http:
        assert (await http.get(f"{csms.http}/health")).status_code == 200
    assert "csms.no_tls" not in csms.log()
