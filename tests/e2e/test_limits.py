"""Abuse limits of a real `csms serve` (issue 11): what one client may cost, each counted in /metrics."""

from __future__ import annotations

import json
import os
import re
import socket
from urllib.parse import urlsplit

import pytest
import trio
import wsproto
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto.events import AcceptConnection, CloseConnection, Request

from tests.support.chargepoint import connect
from tests.support.server import start_csms


@pytest.fixture
def db_url(tmp_path):
    """The limits are in the network layers: SQLite is enough (test_protocol_errors covers both databases)."""
    return f"sqlite:///{tmp_path / 'csms.db'}"


@pytest.fixture
def csms_args():
    return [
        "--allow-unknown-chargers",
        "--max-body-bytes",
        "1000",
        "--body-timeout-seconds",
        "1",
        "--handshake-timeout-seconds",
        "1",
        "--max-handshakes",
        "3",
        "--ocpp-messages-per-second",
        "5",
        "--ocpp-message-burst",
        "30",
    ]


async def _metric(csms, name: str, label: str) -> float:
    async with csms.client() as c:
        text = (await c.get("/metrics")).text
    m = re.search(rf'^{name}\{{[a-z]+="{label}"\}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _http_addr(csms) -> tuple[str, int]:
    u = urlsplit(csms.http)
    return u.hostname, u.port


def _ocpp_addr(csms) -> tuple[str, int]:
    u = urlsplit(csms.ocpp)
    return u.hostname, u.port


async def _raw_http(csms, head: bytes, body: bytes = b"", *, wait: float = 5) -> bytes:
    stream = await trio.open_tcp_stream(*_http_addr(csms))
    async with stream:
        await stream.send_all(head + body)
        got = b""
        with trio.move_on_after(wait):
            while chunk := await stream.receive_some(65536):
                got += chunk
                if b"\r\n\r\n" in got and b'"message"' in got and got.rstrip().endswith(b"}"):
                    break
        return got


async def test_oversized_body_is_refused_413_before_it_is_read(csms):
    before = await _metric(csms, "csms_http_limit_events_total", "body_too_large")
    head = (
        b"POST /api/id-tags HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
    )
    with trio.fail_after(5):
        answer = await _raw_http(csms, head)  # not one byte of the 50 MB body is sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"success":false' in answer.replace(b" ", b"") and b"over the limit of 1000 bytes" in answer
    assert await _metric(csms, "csms_http_limit_events_total", "body_too_large") == before + 1


async def test_chunked_body_is_cut_off_at_the_limit(csms):
    head = (
        b"POST /api/id-tags HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 600
    body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2  # 1,200 bytes and no end: the server must not wait for more
    with trio.fail_after(5):
        answer = await _raw_http(csms, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_slow_body_times_out_408(csms):
    head = b"POST /api/id-tags HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    with trio.fail_after(5):
        answer = await _raw_http(csms, head, b'{"a":')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 1 s" in answer
    assert await _metric(csms, "csms_http_limit_events_total", "body_timeout") >= 1
    async with csms.client() as c:  # small bodies still go through to the app (and its auth)
        r = await c.post("/api/id-tags", json={"idTag": "SMALL1"})
        assert r.status_code < 500 and r.status_code != 413, r.text


async def test_message_rate_limit_closes_a_flooding_connection_with_1008(csms):
    async with open_websocket_url(csms.url("RATE1"), subprotocols=["ocpp1.6"]) as ws:
        answered = 0
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as ei:
            for i in range(10_000):
                await ws.send_message(f'[2,"h{i}","Heartbeat",{{}}]')
                await ws.get_message()
                answered += 1
        assert ei.value.reason.code == 1008
        assert 25 <= answered <= 60, answered  # the burst of 30, a few refilled, not 10,000
    assert "ocpp.connection_closed peer=RATE1 code=1008 reason=rate_limited" in csms.log()
    assert csms.log().count("ocpp.connection_closed peer=RATE1") == 1
    assert await _metric(csms, "csms_ocpp_limit_events_total", "rate_limited") >= 1
    # The bucket is the charge point's, not the connection's: it comes back to what refilled since
    # (5 a second), so it waits long enough for two messages, its boot and a heartbeat.
    await trio.sleep(0.6)
    async with connect(csms.ocpp, "RATE1") as cp:  # the charge point may come back, and is served
        assert "currentTime" in await cp.heartbeat()


async def _ws_open(csms, cp_id: str) -> tuple[trio.SocketStream, wsproto.WSConnection]:
    host, port = _ocpp_addr(csms)
    stream = await trio.open_tcp_stream(host, port)
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(conn.send(Request(host=f"{host}:{port}", target=f"/ocpp/{cp_id}", subprotocols=["ocpp1.6"])))
    with trio.fail_after(5):
        while True:
            conn.receive_data(await stream.receive_some(65536))
            if any(isinstance(e, AcceptConnection) for e in conn.events()):
                return stream, conn


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _close_code(stream, conn) -> int | None:
    with trio.fail_after(5):
        while data := await stream.receive_some(65536):
            conn.receive_data(data)
            for e in conn.events():
                if isinstance(e, CloseConnection):
                    return e.code
    return None


@pytest.mark.parametrize(
    "opcode, payload, code",
    [
        (0x1, b'[2,"u1","Heartbeat",{"x":"\xff\xfe"}]', 1007),  # a text frame that is not UTF-8
        (0x2, b'[2,"b1","Heartbeat",{}]', 1003),  # a binary frame: OCPP-J is text
    ],
)
async def test_bad_websocket_frames_get_the_close_code_ocpp_j_names(csms, opcode, payload, code):
    stream, conn = await _ws_open(csms, f"FRAME{code}")
    async with stream:
        await stream.send_all(_masked_frame(opcode, payload))
        assert await _close_code(stream, conn) == code
    kind = "invalid_utf8" if code == 1007 else "binary_frame"
    assert await _metric(csms, "csms_ocpp_limit_events_total", kind) >= 1
    assert f"code={code}" in csms.log()


async def test_repeated_garbage_is_logged_once_per_interval_and_answered_every_time(csms):
    async with open_websocket_url(csms.url("GARBAGE1"), subprotocols=["ocpp1.6"]) as ws:
        for _ in range(25):  # under the burst
            await ws.send_message("not json at all")
            answer = json.loads(await ws.get_message())
            assert answer[0] == 4 and answer[2] == "FormationViolation"
    assert csms.log().count("ocpp.bad_frame peer=GARBAGE1") == 1


async def test_a_socket_closed_before_its_handshake_is_released_at_once(csms):
    async def released() -> float:  # past 3 at once, a newcomer closes the oldest instead (evicted)
        return sum([await _metric(csms, "csms_ocpp_connections_refused_total", r) for r in ("peer_closed", "evicted")])

    before = await released()
    timed_out = await _metric(csms, "csms_ocpp_connections_refused_total", "handshake_timeout")
    for _ in range(20):
        s = socket.create_connection(_ocpp_addr(csms))
        s.close()
    await trio.sleep(0.3)  # well before the 1 s handshake timeout, which would count them as handshake_timeout
    assert await released() == before + 20
    assert await _metric(csms, "csms_ocpp_connections_refused_total", "peer_closed") >= 1
    assert await _metric(csms, "csms_ocpp_connections_refused_total", "handshake_timeout") == timed_out


@pytest.fixture
def slow_handshake_args(csms_args):
    """A handshake timeout long next to a loaded machine's accept: what closes the oldest is the newcomer."""
    args = list(csms_args)
    args[args.index("--handshake-timeout-seconds") + 1] = "4"
    return args


async def test_silent_handshakes_time_out_and_the_oldest_makes_room_for_a_newcomer(
    db_url, tmp_path, slow_handshake_args
):
    csms = start_csms(db_url, tmp_path, slow_handshake_args)
    try:
        # The kernel hands connections over in order: the server takes these three before the fourth.
        idle = [socket.create_connection(_ocpp_addr(csms)) for _ in range(3)]
        extra = socket.create_connection(_ocpp_addr(csms))  # a fourth handshake at once: the oldest silent one goes
        idle[0].settimeout(10)
        assert idle[0].recv(10) == b""
        assert await _metric(csms, "csms_ocpp_connections_refused_total", "evicted") == 1  # not timed out
        for s in [*idle[1:], extra]:  # the others are closed after the handshake timeout (4 s)
            s.settimeout(30)
            assert s.recv(10) == b""
        for s in [*idle, extra]:
            s.close()
        assert await _metric(csms, "csms_ocpp_connections_refused_total", "handshake_timeout") >= 3
        async with connect(csms.ocpp, "AFTER1") as cp:
            assert "currentTime" in await cp.heartbeat()
    finally:
        csms.stop()


async def test_calls_sent_without_reading_answers_are_bounded_and_the_flooder_closed(db_url, tmp_path):
    # No rate limit here: only the bound on queued calls stops a client that never reads its answers.
    csms = start_csms(
        db_url,
        tmp_path,
        [
            "--allow-unknown-chargers",
            "--ocpp-messages-per-second",
            "1000000",
            "--ocpp-message-burst",
            "1000000",
            "--ocpp-max-queued-calls",
            "4",
        ],
    )
    try:
        stream, conn = await _ws_open(csms, "FLOOD1")
        boot = b'[2,"b%d","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
        async with stream:
            with trio.move_on_after(10):
                try:
                    for i in range(0, 20_000, 500):  # never reads an answer
                        await stream.send_all(b"".join(_masked_frame(0x1, boot % n) for n in range(i, i + 500)))
                except trio.BrokenResourceError:
                    pass  # closed while we were still sending
            assert await _close_code(stream, conn) == 1008
        assert "ocpp.connection_closed peer=FLOOD1 code=1008 reason=too_many_calls" in csms.log()
        assert await _metric(csms, "csms_ocpp_limit_events_total", "too_many_calls") == 1
        async with connect(csms.ocpp, "FLOOD2") as cp:  # everyone else is still served
            assert "currentTime" in await cp.heartbeat()
    finally:
        csms.stop()
