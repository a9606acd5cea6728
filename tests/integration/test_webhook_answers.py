"""A webhook receiver's answer costs the CSMS a few KiB, however long it is.

The receiver is a raw TCP server in the test: it answers 200 with a body far larger than the
dispatcher may read and never finishes it, counting how much the dispatcher let it send.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio

from csms.core.webhooks import WebhookEvent, WebhookTarget
from csms.services.webhooks import WebhookDispatcher

ADVERTISED = 1 << 30  # a GiB promised in Content-Length
SENT_AT_MOST = 64 << 20  # 64 MiB sent, then the receiver holds the rest back (the dispatcher waits for it)


class EndlessReceiver:
    def __init__(self) -> None:
        self.sent = 0
        self.requests = 0
        self.cut_off = trio.Event()  # the dispatcher closed the connection while the body was being sent

    async def __call__(self, stream: trio.SocketStream) -> None:
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            got += chunk
        self.requests += 1
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {ADVERTISED}\r\n\r\n"
        chunk = b"x" * (1 << 20)
        try:
            await stream.send_all(head.encode())
            while self.sent < SENT_AT_MOST:
                await stream.send_all(chunk)
                self.sent += len(chunk)
            await trio.sleep_forever()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.cut_off.set()


@pytest.fixture
def db_url(tmp_path) -> str:
    """The outbox's rows are incidental here: SQLite."""
    return f"sqlite:///{tmp_path / 'csms.db'}"


async def test_a_receiver_answering_a_gigabyte_is_read_a_few_kib_and_cut_off(database):
    receiver = EndlessReceiver()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, receiver, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        target = WebhookTarget(f"http://127.0.0.1:{port}/hook")
        dispatcher = WebhookDispatcher([target], database, max_attempts=1, timeout=20)
        await nursery.start(dispatcher.run)
        await dispatcher.publish([WebhookEvent("connector.freed", {"chargePointId": "CP1"}, "2025-01-01T00:00:00Z")])
        with trio.fail_after(15):  # well inside the attempt's 20 s: the answer's status is enough
            while not dispatcher.log:
                await trio.sleep(0.01)
            await receiver.cut_off.wait()
        nursery.cancel_scope.cancel()
    [delivery] = dispatcher.log
    assert (delivery.outcome, delivery.status) == ("delivered", 200), delivery
    assert receiver.requests == 1
    # What the kernel's socket buffers took before the close, not the 64 MiB the receiver had ready.
    assert receiver.sent < 16 << 20, receiver.sent
