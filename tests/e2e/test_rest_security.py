"""The REST side's small holes, on a real `csms serve`: token guessing throttled per address, https as the
browser sees it behind a trusted proxy (Secure cookies, HSTS), and the price set by the site, not the caller."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trio

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
