"""No failure of one connection, at any step of its handshake, may end the server.

For every byte offset of a valid and of several refused WebSocket upgrade requests, of two REST
requests (and, over TLS, of the ClientHello before them) a client sends that much and then
closes, half-closes or resets. Meanwhile a real charger heartbeats on its own connection; it must be answered
throughout, the process must still run, and every dropped connection must be counted as the
peer's doing, not as a fault of the server's.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.support.server import ADMIN_TOKEN, CsmsProcess, start_csms

trustme = pytest.importorskip("trustme", reason="the wss:// half makes its certificate with trustme (dev extra)")

FUZZ_ID, FUZZ_PASSWORD = "FUZZ1", "fuzz-charger-key-0001"
REAL_ID, REAL_PASSWORD = "REAL1", "real-charger-key-0001"
MODES = ("close", "half_close", "reset")
PARALLEL = 16


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _upgrade(path: str, *, authorization: str | None = None, subprotocol: str | None = "ocpp1.6") -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# One valid upgrade and one of each refusal the endpoint makes before or after the password check.
REQUESTS = {
    "valid": _upgrade(f"/ocpp/{FUZZ_ID}", authorization=_basic(FUZZ_ID, FUZZ_PASSWORD)),
    "bad_path": _upgrade("/x"),
    "bad_charge_point_id": _upgrade("/ocpp/CP%0A1"),
    "unknown_charge_point": _upgrade("/ocpp/NOBODY", authorization=_basic("NOBODY", "whatever-0001")),
    "bad_credentials": _upgrade(f"/ocpp/{FUZZ_ID}", authorization=_basic(FUZZ_ID, "wrong-password-0001")),
    "no_subprotocol": _upgrade(f"/ocpp/{FUZZ_ID}", authorization=_basic(FUZZ_ID, FUZZ_PASSWORD), subprotocol=None),
}


# The REST port's entry points: a read and a write with a body (hypercorn parses both).
HTTP_REQUESTS = {
    "health": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "post": (
        b"POST /api/charge-points HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + ADMIN_TOKEN.encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{"id": "HTTP1", "password": null}'
    ),
}


@dataclass(frozen=True)
class Cut:
    """Send `data[:offset]` (after TLS, when `tls`), then end the connection the `mode` way; with `read_first`,
    only after the first byte of the server's answer came."""

    data: bytes
    offset: int
    mode: str
    tls: bool
    read_first: bool = False


def _cuts(tls: bool, requests: dict[str, bytes]) -> Iterator[Cut]:
    for data in requests.values():
        for offset in range(len(data) + 1):
            for mode in MODES:
                yield Cut(data, offset, mode, tls)
        for mode in MODES:
            yield Cut(data, len(data), mode, tls, read_first=True)


def _end(sock: socket.socket, mode: str) -> None:
    if mode == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif mode == "half_close":
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(10)
            while sock.recv(65536):  # until the server closes too (or 10 s, which the server must not need)
                pass
        except OSError:
            pass
    sock.close()


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first bytes a TLS client sends, made with memory BIOs (no socket)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _run_cut(addr: tuple[str, int], context: ssl.SSLContext | None, cut: Cut) -> None:
    raw = socket.create_connection(addr, timeout=10)
    try:
        sock: socket.socket = context.wrap_socket(raw, server_hostname="127.0.0.1") if cut.tls and context else raw
    except (OSError, ssl.SSLError):
        raw.close()
        raise
    try:
        sock.sendall(cut.data[: cut.offset])
        if cut.read_first:
            sock.recv(1)
    except OSError:
        pass  # the server may close first (a refusal); ending our side is the point
    _end(sock, cut.mode)


def _run_hello_cut(addr: tuple[str, int], hello: bytes, offset: int, mode: str) -> None:
    sock = socket.create_connection(addr, timeout=10)
    try:
        sock.sendall(hello[:offset])
    except OSError:
        pass
    _end(sock, mode)


class Heartbeats:
    """A real charger (the `websockets` library's client) heartbeating every 50 ms in a thread; every answer's
    latency is kept, and an unanswered call ends it with the error."""

    def __init__(self, url: str, context: ssl.SSLContext | None) -> None:
        self.url, self.context = url, context
        self.latencies: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        from websockets.sync.client import connect as ws_connect

        try:
            with ws_connect(
                self.url,
                ssl=self.context,
                subprotocols=["ocpp1.6"],
                proxy=None,
                open_timeout=10,
                additional_headers={"Authorization": _basic(REAL_ID, REAL_PASSWORD)},
            ) as ws:
                n = 0
                while not self._stop.wait(0.05):
                    n += 1
                    started = time.monotonic()
                    ws.send(json.dumps([2, f"hb{n}", "Heartbeat", {}]))
                    answer = json.loads(ws.recv(30))
                    while answer[0] == 2:  # the CSMS's own call (a maintenance probe on a long run): not ours to judge
                        ws.send(json.dumps([4, answer[1], "NotSupported", "a heartbeat-only test client", {}]))
                        answer = json.loads(ws.recv(30))
                    assert answer[:2] == [3, f"hb{n}"], answer
                    self.latencies.append(time.monotonic() - started)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(params=["ws", "wss"])
def served(request, tmp_path, ca) -> Iterator[tuple[CsmsProcess, ssl.SSLContext | None]]:
    args: list[str] = []
    client: ssl.SSLContext | None = None
    if request.param == "wss":
        cert = ca.issue_cert("127.0.0.1")
        chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key))
        args = ["--tls-cert", str(chain), "--tls-key", str(key)]
        client = ssl.create_default_context()
        ca.configure_trust(client)
    csms = start_csms(f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, args)
    try:
        with httpx.Client(base_url=csms.http, headers=csms.admin, verify=client or True) as admin:
            for cp_id, password in ((FUZZ_ID, FUZZ_PASSWORD), (REAL_ID, REAL_PASSWORD)):
                assert admin.post("/api/charge-points", json={"id": cp_id, "password": password}).status_code == 201
        yield csms, client
    finally:
        csms.stop()


def _metrics(csms: CsmsProcess, client: ssl.SSLContext | None) -> str:
    return httpx.get(
        f"{csms.http}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, verify=client or True
    ).text


def _failures(text: str, kind: str) -> float:
    return sum(
        float(v)
        for v in re.findall(
            rf'^csms_ocpp_connection_failures_total\{{kind="{kind}",stage="[a-z]+"\}} ([0-9.e+]+)$', text, re.M
        )
    )


def test_a_connection_cut_at_any_byte_of_its_handshake_never_ends_the_server(served):
    csms, client = served
    tls = client is not None
    jobs: list[Callable[[], None]] = []
    for url, requests in ((csms.ocpp, REQUESTS), (csms.http, HTTP_REQUESTS)):
        host, port = url.split("://")[1].split("/")[0].rsplit(":", 1)
        addr = (host, int(port))
        jobs += [lambda a=addr, c=c: _run_cut(a, client, c) for c in _cuts(tls, requests)]
        if tls:
            hello = _client_hello(client)
            jobs += [
                lambda a=addr, h=hello, o=o, m=m: _run_hello_cut(a, h, o, m)
                for o in range(len(hello) + 1)
                for m in MODES
            ]
    started = time.monotonic()
    with Heartbeats(f"{csms.ocpp}/{REAL_ID}", client) as beats, ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda job: _outcome(job), jobs))
    elapsed = time.monotonic() - started
    assert csms.proc.poll() is None, f"csms serve exited with {csms.proc.returncode}:\n{csms.log()[-3000:]}"
    assert beats.error is None, f"the real charger lost its connection: {beats.error!r}"
    assert len(beats.latencies) >= 5, "the real charger was barely answered"
    # Every client did what it meant to: a connect refused or failing here would leave offsets untried.
    assert [o for o in outcomes if o] == [], "clients that could not play their cut"
    text = _metrics(csms, client)
    assert _failures(text, "internal_error") == 0, csms.log()[-3000:]
    assert _failures(text, "peer_gone") > 0, "no cut landed while the server was answering (the test missed the race)"
    assert "Traceback" not in csms.log()
    # Logged once and bounded: a line per stage per minute, with the count of the others.
    assert csms.log().count("ocpp.connection_dropped") <= 3 * (1 + int(elapsed // 60)), csms.log()[-3000:]
    # And a charger still connects and boots afterwards.
    from websockets.sync.client import connect as ws_connect

    with ws_connect(
        f"{csms.ocpp}/{REAL_ID}",
        ssl=client,
        subprotocols=["ocpp1.6"],
        proxy=None,
        open_timeout=10,
        additional_headers={"Authorization": _basic(REAL_ID, REAL_PASSWORD)},
    ) as ws:
        ws.send('[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        assert json.loads(ws.recv(10))[2]["status"] == "Accepted"
    print(
        f"{len(jobs)} cut connections in {elapsed:.1f} s; heartbeat p50/max "
        f"{sorted(beats.latencies)[len(beats.latencies) // 2] * 1000:.1f}/{max(beats.latencies) * 1000:.0f} ms"
    )


def _outcome(job: Callable[[], None]) -> str:
    try:
        job()
    except (OSError, ssl.SSLError) as exc:
        return repr(exc)
    return ""
