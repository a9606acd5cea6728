"""CSMS -> charge point calls as typed methods over a live connection, whatever OCPP version it speaks.

The services ask in one vocabulary (remote start, unlock, trigger a status, ...); `commands_for`
picks the class that says it in the charger's version. Answers come back in 1.6's words
("Accepted", "Unlocked", ...), so nothing above this module knows which version it talked to.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, cast

from ocpp.v16 import call
from ocpp.v201 import call as call201

from ocppj import V201, OcppConnection

if TYPE_CHECKING:
    from csms.ocpp.registry import LiveChargePoint, RemoteChargePoint

__all__ = ["ChargePointCommands", "ChargePointCommands201", "commands_for"]


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


# 2.0.1's Reset types for 1.6's: Hard resets at once, Soft when idle.
_RESET_TYPES = {"Hard": "Immediate", "Soft": "OnIdle"}


def _new_remote_start_id() -> int:
    """A remoteStartId no other process (cluster node) gives the same station: random, not a per-process count."""
    return secrets.randbelow(2**31 - 1) + 1


class ChargePointCommands201(ChargePointCommands):
    """The same calls to an OCPP 2.0.1 station: connectors are EVSEs (REST connector N is EVSE N, its
    connector 1), transactions are named by the station (`live.station_tx` maps ours to its)."""

    def __init__(self, live: LiveChargePoint, *, timeout: float | None = None) -> None:
        super().__init__(live.connection, timeout=timeout)
        self.live = live

    async def remote_start(self, connector_id: int, id_tag: str) -> str:
        remote_start_id = _new_remote_start_id()
        self.live.remote_starts[remote_start_id] = (connector_id, id_tag)  # its Started names it
        res = await self._call(
            call201.RequestStartTransaction(
                id_token={"id_token": id_tag, "type": "Central"},
                remote_start_id=remote_start_id,
                evse_id=connector_id,
            )
        )
        return str(res.status)

    async def remote_stop(self, transaction_id: int) -> str:
        station_tx = self.live.station_tx.get(transaction_id)
        if station_tx is None:  # not named by this connection yet (its next event will): nothing to ask
            return "Rejected"
        return str((await self._call(call201.RequestStopTransaction(transaction_id=station_tx))).status)

    async def unlock(self, connector_id: int) -> str:
        res = await self._call(call201.UnlockConnector(evse_id=connector_id, connector_id=1))
        return str(res.status)  # Unlocked, UnlockFailed, OngoingAuthorizedTransaction, UnknownConnector

    async def trigger(self, requested_message: str, connector_id: int | None = None) -> str:
        evse = None if not connector_id else {"id": connector_id, "connector_id": 1}
        res = await self._call(call201.TriggerMessage(requested_message=requested_message, evse=evse))
        return str(res.status)

    async def change_availability(self, connector_id: int, type: str) -> str:
        evse = None if not connector_id else {"id": connector_id}
        return str((await self._call(call201.ChangeAvailability(operational_status=type, evse=evse))).status)

    async def reset(self, type: str) -> str:
        return str((await self._call(call201.Reset(type=_RESET_TYPES.get(type, type)))).status)

    async def transaction_status(self, transaction_id: int) -> tuple[bool | None, bool]:
        """(ongoingIndicator, messagesInQueue) of one of its transactions: GetTransactionStatus."""
        station_tx = self.live.station_tx.get(transaction_id)
        res = await self._call(call201.GetTransactionStatus(transaction_id=station_tx))
        return res.ongoing_indicator, bool(res.messages_in_queue)

    async def get_configuration(self, keys: list[str] | None = None) -> Any:
        raise NotImplementedError("OCPP 2.0.1 has GetVariables, not GetConfiguration")

    async def change_configuration(self, key: str, value: str) -> str:
        raise NotImplementedError("OCPP 2.0.1 has SetVariables, not ChangeConfiguration")


def commands_for(live: LiveChargePoint | RemoteChargePoint, *, timeout: float | None = None) -> ChargePointCommands:
    """The commands in the version `live` speaks (a charger held by another cluster node: in its version too)."""
    if getattr(live.connection, "version", None) == V201:
        return ChargePointCommands201(cast("LiveChargePoint", live), timeout=timeout)
    return ChargePointCommands(live.connection, timeout=timeout)
