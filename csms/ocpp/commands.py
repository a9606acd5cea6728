"""CSMS -> charge point calls as typed methods over a live connection."""

from __future__ import annotations

from typing import Any

from ocpp.v16 import call

from ocppj import OcppConnection

__all__ = ["ChargePointCommands"]


class ChargePointCommands:
    """Each method sends one OCPP 1.6 Call and returns the answer's status (or the result).

    Errors are the OCPP-J layer's: CallTimeoutError, CallErrorReceived,
    ConnectionClosedError, InvalidResponseError.
    """

    def __init__(self, connection: OcppConnection, *, timeout: float | None = None) -> None:
        self.connection = connection
        self.timeout = timeout

    async def _call(self, request: Any) -> Any:
        return await self.connection.call(request, timeout=self.timeout)

    async def remote_start(self, connector_id: int, id_tag: str) -> str:
        res = await self._call(call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector_id))
        return res.status

    async def remote_stop(self, transaction_id: int) -> str:
        return (await self._call(call.RemoteStopTransaction(transaction_id=transaction_id))).status

    async def unlock(self, connector_id: int) -> str:
        return (await self._call(call.UnlockConnector(connector_id=connector_id))).status

    async def trigger(self, requested_message: str, connector_id: int | None = None) -> str:
        res = await self._call(call.TriggerMessage(requested_message=requested_message, connector_id=connector_id))
        return res.status

    async def change_availability(self, connector_id: int, type: str) -> str:
        return (await self._call(call.ChangeAvailability(connector_id=connector_id, type=type))).status

    async def reset(self, type: str) -> str:
        return (await self._call(call.Reset(type=type))).status

    async def get_configuration(self, keys: list[str] | None = None) -> Any:
        return await self._call(call.GetConfiguration(key=keys))

    async def change_configuration(self, key: str, value: str) -> str:
        return (await self._call(call.ChangeConfiguration(key=key, value=value))).status
