"""A scriptable test charge point on the project's OCPP-J layer (trio).

Deliberately small and explicit: tests say exactly which frame goes out and
how each CSMS call is answered. The simulator is the realistic one.
"""

from __future__ import annotations

import base64
from contextlib import asynccontextmanager
from typing import Any

import trio
from ocpp.routing import on
from trio_websocket import open_websocket_url

from ocppj import SUBPROTOCOL, OcppConnection

NOW = "2026-01-01T00:00:00Z"


class Answers:
    """How the test charge point answers CSMS calls; tests change these fields."""

    def __init__(self) -> None:
        self.remote_start: str | None = "Accepted"  # None: never answer
        self.remote_stop = "Accepted"
        self.unlock: str | None = "Unlocked"  # None: never answer
        self.trigger = "Accepted"
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.on_trigger = None  # async callable(requested_message, connector_id)

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag, **kw):
        self.received.append(("RemoteStartTransaction", {"id_tag": id_tag, **kw}))
        if self.remote_start is None:
            await trio.sleep_forever()
        return {"status": self.remote_start}

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id):
        self.received.append(("RemoteStopTransaction", {"transaction_id": transaction_id}))
        return {"status": self.remote_stop}

    @on("UnlockConnector")
    async def on_unlock(self, connector_id):
        self.received.append(("UnlockConnector", {"connector_id": connector_id}))
        if self.unlock is None:
            await trio.sleep_forever()
        return {"status": self.unlock}

    @on("TriggerMessage")
    async def on_trigger_message(self, requested_message, connector_id=None):
        self.received.append(("TriggerMessage", {"requested_message": requested_message, "connector_id": connector_id}))
        if self.on_trigger is not None:
            self._nursery.start_soon(self.on_trigger, requested_message, connector_id)
        return {"status": self.trigger}


class TestChargePoint:
    __test__ = False

    def __init__(self, conn: OcppConnection, answers: Answers) -> None:
        self.conn = conn
        self.answers = answers

    async def boot(self) -> dict:
        return await self.conn.call_raw("BootNotification", {"chargePointVendor": "Test", "chargePointModel": "T1"})

    async def status(self, connector_id: int, status: str, error_code: str = "NoError") -> dict:
        return await self.conn.call_raw(
            "StatusNotification", {"connectorId": connector_id, "errorCode": error_code, "status": status}
        )

    async def heartbeat(self) -> dict:
        return await self.conn.call_raw("Heartbeat", {})

    async def start(self, connector_id: int, id_tag: str = "TAG1", meter_start: int = 1000) -> int:
        res = await self.conn.call_raw(
            "StartTransaction",
            {"connectorId": connector_id, "idTag": id_tag, "meterStart": meter_start, "timestamp": NOW},
        )
        return res["transactionId"]

    async def meter(self, connector_id: int, transaction_id: int, wh: int) -> dict:
        return await self.conn.call_raw(
            "MeterValues",
            {
                "connectorId": connector_id,
                "transactionId": transaction_id,
                "meterValue": [
                    {
                        "timestamp": NOW,
                        "sampledValue": [
                            {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
                        ],
                    }
                ],
            },
        )

    async def stop(self, transaction_id: int, meter_stop: int, reason: str = "Local") -> dict:
        return await self.conn.call_raw(
            "StopTransaction",
            {
                "transactionId": transaction_id,
                "meterStop": meter_stop,
                "timestamp": NOW,
                "reason": reason,
            },
        )


def basic_auth(user: str, password: str) -> list[tuple[bytes, bytes]]:
    """The HTTP Basic header of OCPP security profiles 1 and 2."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return [(b"Authorization", f"Basic {token}".encode("ascii"))]


@asynccontextmanager
async def connect(
    url: str,
    cp_id: str,
    *,
    boot: bool = True,
    answers: Answers | None = None,
    password: str | None = None,
    ssl_context=None,
):
    """Open a test charge point at `url/cp_id`, optionally booted, with HTTP Basic when a
    password is given; closes on exit."""
    answers = answers or Answers()
    headers = basic_auth(cp_id, password) if password is not None else None
    async with trio.open_nursery() as nursery:
        answers._nursery = nursery
        async with open_websocket_url(
            f"{url}/{cp_id}", ssl_context, subprotocols=[SUBPROTOCOL], extra_headers=headers
        ) as ws:
            conn = OcppConnection(ws, peer="csms", handlers=answers, call_timeout=15)
            nursery.start_soon(conn.run)
            cp = TestChargePoint(conn, answers)
            if boot:
                await cp.boot()
            yield cp
        nursery.cancel_scope.cancel()
