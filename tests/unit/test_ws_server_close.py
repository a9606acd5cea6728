"""GuardedWebSocketServer: how long a connection is held after its handler is done, and that an accepted
connection is never cut by the handshake deadline. Virtual time (trio's autojump clock), in-memory streams."""

from __future__ import annotations

import math

import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request

from csms.ocpp.ws_server import GuardedWebSocketServer
from ocppj.connection import TokenBucket

_HANDSHAKE = 10.0
_DISCONNECT = 60.0


def _server(handler) -> GuardedWebSocketServer:
    return GuardedWebSocketServer(
        handler,
        [object()],  # never served: connections are handed over directly
        max_connections=10,
        max_handshakes=10,
        connect_timeout=_HANDSHAKE,
        disconnect_timeout=_DISCONNECT,
    )


def _request_bytes() -> bytes:
    return WSConnection(ConnectionType.CLIENT).send(Request(host="csms", target="/ocpp/CP1"))


async def _held_for(handler) -> tuple[float, GuardedWebSocketServer]:
    """Virtual seconds the server holds a connection whose peer sends its request and then never closes."""
    server = _server(handler)
    client, server_stream = trio.testing.memory_stream_pair()
    await client.send_all(_request_bytes())
    start = trio.current_time()
    await server._handle_connection(server_stream)
    return trio.current_time() - start, server


def test_a_refused_handshake_is_closed_at_once_even_if_the_peer_never_closes() -> None:
    async def refuse(request) -> None:
        await request.reject(401, body=b"no")

    async def main() -> None:
        held, server = await _held_for(refuse)
        assert held <= 1.0, f"a refused connection held {held:.0f} s (disconnect timeout {_DISCONNECT:.0f} s)"
        assert server.open_connections == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_connection_closed_1008_is_dropped_promptly() -> None:
    async def flood_closed(request) -> None:
        ws = await request.accept()
        ws.count_pings(TokenBucket(rate=0.001, burst=1, now=trio.current_time()), "CP1")
        assert await ws._within_rate()
        assert not await ws._within_rate()  # past the rate: closed 1008, as a ping flood is

    async def main() -> None:
        held, _ = await _held_for(flood_closed)
        assert held <= 1.5, f"a connection closed 1008 held {held:.0f} s"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_accepted_connection_is_not_cut_by_the_handshake_deadline() -> None:
    served: list[str] = []
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def accept_then_stall(request) -> None:
        await request.accept()
        clock.jump(_HANDSHAKE + 1)  # the loop stalls right after the accept, past the handshake deadline
        await trio.lowlevel.checkpoint()
        served.append("served")
        await trio.sleep(5)

    async def main() -> None:
        server = _server(accept_then_stall)
        client, server_stream = trio.testing.memory_stream_pair()
        await client.send_all(_request_bytes())
        with trio.move_on_after(30):
            await server._handle_connection(server_stream)
        assert served == ["served"], "an accepted connection was cancelled by the handshake deadline"
        assert server.handshaking == 0

    trio.run(main, clock=clock)
    assert math.isfinite(clock.current_time())


def test_a_connection_evicted_as_its_request_arrives_does_not_reach_the_handler_without_a_slot(monkeypatch) -> None:
    from csms.ocpp import ws_server

    reached: list[str] = []
    taken: list[object] = []

    async def handler(request) -> None:
        reached.append("handler")
        await request.reject(401)

    async def main() -> None:
        server = GuardedWebSocketServer(
            handler, [object()], max_connections=10, max_handshakes=1, connect_timeout=_HANDSHAKE
        )
        real = ws_server._Connection._get_request

        async def request_then_newcomer(self):  # a newcomer takes the only slot the moment the request is in
            request = await real(self)
            taken.append(server._slots.take("10.0.0.9")[0])
            return request

        monkeypatch.setattr(ws_server._Connection, "_get_request", request_then_newcomer)
        client, server_stream = trio.testing.memory_stream_pair()
        await client.send_all(_request_bytes())
        await server._handle_connection(server_stream)
        assert taken[0] is not None  # the newcomer got the slot (this connection was evicted) ...
        assert reached == [], "an evicted connection reached the handler without a slot"  # ... so it went
        assert server.handshaking == 1  # the newcomer's

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
