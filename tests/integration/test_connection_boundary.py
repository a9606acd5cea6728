"""The per-connection task boundary of the OCPP WebSocket server, in process: a handler that fails
(a bug of ours, a database error) closes that one connection, is counted as an internal error and
logged with its traceback a bounded number of times; the server goes on accepting."""

from __future__ import annotations

import logging

import trio
from trio_websocket import WebSocketRequest, open_websocket

from csms.metrics import CONNECTION_FAILURES
from csms.ocpp.ws_server import GuardedWebSocketServer

UPGRADE = (
    b"GET /boom HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _count(stage: str, kind: str) -> float:
    return CONNECTION_FAILURES.labels(stage, kind)._value.get()


async def test_a_failing_handler_closes_its_connection_only(caplog, nursery):
    served: list[str] = []

    async def handler(request: WebSocketRequest) -> None:
        if request.path == "/boom":
            raise RuntimeError("a bug in the handshake handler")
        ws = await request.accept()
        served.append(request.path)
        await ws.send_message(await ws.get_message())

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    server = GuardedWebSocketServer(handler, listeners, max_connections=10, max_handshakes=10, connect_timeout=5)
    await nursery.start(server.run)
    before = _count("handshake", "internal_error")
    with caplog.at_level(logging.INFO, logger="csms.server"):
        for _ in range(5):
            with trio.fail_after(5):
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                await stream.send_all(UPGRADE)
                assert await stream.receive_some() == b"", "the failed connection is closed, unanswered"
                await stream.aclose()
        with trio.fail_after(5):
            async with open_websocket("127.0.0.1", server.port, "/fine", use_ssl=False) as ws:
                await ws.send_message("ping")
                assert await ws.get_message() == "ping"
    assert served == ["/fine"]
    assert _count("handshake", "internal_error") - before == 5
    failed = [r for r in caplog.records if "ocpp.connection_failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None, [r.getMessage() for r in failed]
    assert "a bug in the handshake handler" in caplog.text
    with trio.fail_after(5):  # every slot given back, the failed ones' too
        while server.open_connections:
            await trio.sleep(0.01)
