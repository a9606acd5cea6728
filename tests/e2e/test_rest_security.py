"""The REST side's small holes, on a real `csms serve`: token guessing throttled per address, https as the
browser sees it behind a trusted proxy (Secure cookies, HSTS), and the price set by the site, not the caller."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trio

from tests.support.chargepoint import connect
from tests.support.server import ADMIN_TOKEN, USER_TOKEN, start_csms

trustme = pytest.importorskip("trustme", reason="the HSTS-over-TLS test makes its certificate with trustme")


def _from(address: str, base_url: str, **kw) -> httpx.AsyncClient:
    """A client whose connections leave from `address` (any 127.x.y.z reaches a server on 127.0.0.1)."""
    transport = httpx.AsyncHTTPTransport(local_address=address, verify=kw.pop("verify", True))
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30, **kw)


@pytest.fixture
def server(db_url, tmp_path, request):
    proc = start_csms(db_url, tmp_path, list(getattr(request, "param", [])))
    try:
        yield proc
    finally:
        proc.stop()


# ------------------------------------------------------------------ token guessing
async def test_parallel_token_guesses_are_throttled_per_address_and_other_addresses_still_get_in(server):
    answers: list[httpx.Response] = []
    async with _from("127.0.0.3", server.http) as guesser:

        async def guess(n: int) -> None:
            answers.append(await guesser.get("/api/stations", headers={"Authorization": f"Bearer wrong-token-{n:04d}"}))

        async with trio.open_nursery() as nursery:  # all at once: each counts from its start
            for n in range(40):
                nursery.start_soon(guess, n)
        statuses = sorted(r.status_code for r in answers)
        assert statuses.count(401) == 20, statuses  # the per-address limit, not one more
        throttled = [r for r in answers if r.status_code == 429]
        assert len(throttled) == 20
        assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in throttled)
        assert "Too many unknown API tokens" in throttled[0].json()["message"]
        # Once throttled, the address is refused before its token is looked at (no oracle for a guesser).
        r = await guesser.get("/api/stations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 429
    async with _from("127.0.0.4", server.http) as other:  # the same site's app, elsewhere: not locked out
        r = await other.get("/api/stations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200, r.text
        r = await other.get("/api/ChargingSession/nope", headers={"Authorization": f"Bearer {USER_TOKEN}"})
        assert r.status_code == 404
    assert ADMIN_TOKEN not in server.log() and "wrong-token-" not in server.log()


# ------------------------------------------------------------------ https behind a proxy, HSTS
def _login_cookie(r: httpx.Response) -> str:
    cookies = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    assert cookies, r.headers
    return cookies[0]


@pytest.mark.parametrize("server", [["--trusted-proxies", "127.0.0.2"]], indirect=True)
async def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(server):
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    async with _from("127.0.0.2", server.http) as proxy:  # the TLS-terminating proxy, as configured
        r = await proxy.get("/ui/login", headers=https)
        assert r.status_code == 200
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        assert "secure" in _login_cookie(r).lower().split("; ")
        r = await proxy.get("/ui/login")  # the proxy's plain-http listener: no https claimed
        assert "strict-transport-security" not in r.headers
        assert "secure" not in _login_cookie(r).lower().split("; ")
    async with _from("127.0.0.1", server.http) as stranger:  # anyone else claiming https is not believed
        r = await stranger.get("/ui/login", headers=https)
        assert r.status_code == 200
        assert "strict-transport-security" not in r.headers
        assert "secure" not in _login_cookie(r).lower().split("; ")
        r = await stranger.get("/health", headers=https)
        assert "strict-transport-security" not in r.headers


async def test_https_served_directly_sends_hsts(db_url, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    proc = start_csms(db_url, tmp_path, ["--tls-cert", str(chain), "--tls-key", str(key)])
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(base_url=proc.http, verify=context, timeout=30) as http:
            r = await http.get("/health")
            assert r.headers["strict-transport-security"] == "max-age=31536000"
            r = await http.get("/ui/login")
            assert r.headers["strict-transport-security"] == "max-age=31536000"
            assert "secure" in _login_cookie(r).lower().split("; ")
    finally:
        proc.stop()


# ------------------------------------------------------------------ the price is the site's
START = "/api/ChargingSession/start-charging-session"


def _start(cp_id: str, connector: int, tag: str, tariff: str) -> dict:
    return {"chargingStationId": cp_id, "connectorId": connector, "chargeTagId": tag, "chargingTariff": tariff}


@pytest.mark.parametrize("server", [["--allow-unknown-chargers", "--tariff", "0.30"]], indirect=True)
async def test_a_user_token_cannot_set_the_price_and_an_admin_sets_the_sites(server):
    async with connect(server.ocpp, "TAR1") as cp, server.client("user") as user, server.client() as admin:
        for connector in (1, 2, 3):
            await cp.status(connector, "Available")
        # The issue's free charge: a user token asking 0 is refused, with the price it must ask.
        r = await user.post(START, json=_start("TAR1", 1, "FREE1", "0"))
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["data"]["code"] == "TariffMismatch" and body["data"]["siteTariff"] == "0.3", body
        assert "only an admin may set another price" in body["message"]
        r = await user.post("/api/Payments/Create", json=_start("TAR1", 1, "FREE1", "0.00"))
        assert r.status_code == 409 and r.json()["data"]["code"] == "TariffMismatch", r.text
        # What a start there must ask, readable with the user token; the same price however written.
        r = await user.get("/api/tariffs/TAR1/1")
        assert r.json()["data"] == {
            "chargingStationId": "TAR1",
            "connectorId": 1,
            "chargingTariff": "0.3",
            "source": "default",
        }
        r = await user.post(START, json=_start("TAR1", 1, "PAYS1", "0.300"))
        assert r.status_code == 200, r.text
        session = (await user.get(f"/api/ChargingSession/{r.json()['data']['sessionId']}")).json()["data"]
        assert session["chargingTariff"] == "0.3"

        # Prices are set by admins, per station or per connector; a user token may not.
        put = {"chargingStationId": "TAR1", "connectorId": 2, "chargingTariff": "0.45"}
        assert (await user.put("/api/tariffs", json=put)).status_code == 403
        assert (await admin.put("/api/tariffs", json=put)).status_code == 200
        r = await admin.put("/api/tariffs", json={"chargingStationId": "TAR1", "chargingTariff": "0.35"})
        assert r.status_code == 200, r.text
        assert (await admin.put("/api/tariffs", json={**put, "chargingStationId": "NOPE"})).status_code == 404
        assert (await user.get("/api/tariffs/TAR1/2")).json()["data"]["chargingTariff"] == "0.45"
        assert (await user.get("/api/tariffs/TAR1/3")).json()["data"]["source"] == "station"
        listed = (await user.get("/api/tariffs")).json()["data"]
        assert listed["defaultTariff"] == "0.3"
        assert [(t["connectorId"], t["chargingTariff"], t["updatedBy"]) for t in listed["tariffs"]] == [
            (None, "0.35", "tests"),
            (2, "0.45", "tests"),
        ]
        r = await user.post(START, json=_start("TAR1", 2, "PAYS2", "0.30"))  # the default no longer applies there
        assert r.status_code == 409 and r.json()["data"]["siteTariff"] == "0.45", r.text
        r = await user.post(START, json=_start("TAR1", 2, "PAYS2", "0.45"))
        assert r.status_code == 200, r.text

        # An admin token may price a session (a free test charge), and it is billed at that price.
        r = await admin.post(START, json=_start("TAR1", 3, "TEST3", "0"))
        assert r.status_code == 200, r.text
        session = (await admin.get(f"/api/ChargingSession/{r.json()['data']['sessionId']}")).json()["data"]
        assert session["chargingTariff"] == "0"


@pytest.mark.parametrize("server", [["--allow-unknown-chargers", "--tariff", ""]], indirect=True)
async def test_without_a_site_tariff_a_user_token_cannot_start(server):
    async with connect(server.ocpp, "TAR2") as cp, server.client("user") as user:
        await cp.status(1, "Available")
        r = await user.post(START, json=_start("TAR2", 1, "T1", "0.25"))
        assert r.status_code == 409, r.text
        assert r.json()["data"]["code"] == "NoSiteTariff" and "PUT /api/tariffs" in r.json()["message"]
