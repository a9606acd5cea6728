"""The charge point's answers to CSMS requests: translation only.

Each handler turns snake_case arguments into a call on `ChargePoint` and its
result into a camelCase payload. The one thing every answer shares (a hung
charger never answers, slow_responses delays) is in `_answer`, not repeated.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Protocol

from ocpp.routing import on

from ocppj import OcppCallError

from .configstore import ConfigStore

__all__ = ["Answerer", "Answers", "Answers201"]

# 2.0.1 device model variables a CSMS sets on stations, and the configuration key each one is here.
VARIABLES = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): "HeartbeatInterval",
    ("SampledDataCtrlr", "TxUpdatedInterval"): "MeterValueSampleInterval",
    ("AuthCtrlr", "AuthorizeRemoteStart"): "AuthorizeRemoteTxRequests",
    ("AuthCtrlr", "LocalAuthorizeOffline"): "LocalAuthorizeOffline",
    ("TxCtrlr", "StopTxOnInvalidId"): "StopTransactionOnInvalidId",
    ("OCPPCommCtrlr", "MessageAttempts"): "TransactionMessageAttempts",
    ("OCPPCommCtrlr", "MessageAttemptInterval"): "TransactionMessageRetryInterval",
}


def _answer(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@on(action)`, with the charge point's answer faults applied first."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def handler(self: Answers, **kwargs: Any) -> dict[str, Any]:
            await self.cp.before_answer()
            result = fn(self, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return on(action)(handler)

    return decorate


class Answerer(Protocol):
    """What a charge point offers the CSMS's calls (simulator.chargepoint.ChargePoint is one)."""

    config: ConfigStore

    def remote_start(self, id_tag: str, connector_id: int | None, remote_start_id: int | None = None) -> str: ...
    def remote_stop(self, transaction_id: int | str) -> str: ...
    async def unlock(self, connector_id: int) -> str: ...
    def trigger(self, message: str, connector_id: int | None) -> str: ...
    def change_availability(self, connector_id: int, kind: str) -> str: ...
    def reset(self, kind: str) -> str: ...
    def reset_when_idle(self) -> str: ...
    def transaction_status(self, transaction_id: str | None) -> tuple[bool | None, bool]: ...


class Answers:
    def __init__(self, cp: Answerer) -> None:
        self.cp = cp

    @_answer("RemoteStartTransaction")
    def remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any) -> dict[str, Any]:
        return {"status": self.cp.remote_start(id_tag, connector_id)}

    @_answer("RemoteStopTransaction")
    def remote_stop(self, transaction_id: int) -> dict[str, Any]:
        return {"status": self.cp.remote_stop(transaction_id)}

    @_answer("UnlockConnector")
    async def unlock(self, connector_id: int) -> dict[str, Any]:
        return {"status": await self.cp.unlock(connector_id)}

    @_answer("TriggerMessage")
    def trigger(self, requested_message: str, connector_id: int | None = None) -> dict[str, Any]:
        return {"status": self.cp.trigger(requested_message, connector_id)}

    @_answer("ChangeAvailability")
    def change_availability(self, connector_id: int, type: str) -> dict[str, Any]:  # noqa: A002
        return {"status": self.cp.change_availability(connector_id, type)}

    @_answer("Reset")
    def reset(self, type: str) -> dict[str, Any]:  # noqa: A002
        return {"status": self.cp.reset(type)}

    @_answer("GetConfiguration")
    def get_configuration(self, key: list[str] | None = None) -> dict[str, Any]:
        known, unknown = self.cp.config.report(key)
        payload: dict[str, Any] = {"configurationKey": known}
        if unknown:
            payload["unknownKey"] = unknown
        return payload

    @_answer("ChangeConfiguration")
    def change_configuration(self, key: str, value: str) -> dict[str, Any]:
        return {"status": self.cp.config.change(key, value)}

    @_answer("DataTransfer")
    def data_transfer(self, vendor_id: str, message_id: str | None = None, data: str | None = None) -> dict[str, Any]:
        # DataTransfer is Core profile (OCPP 1.6 §5.6): a recipient with no implementation for the
        # vendorId answers UnknownVendorId; a NotSupported CallError reads to a CSMS as a broken charger.
        return {"status": "UnknownVendorId"}


class Answers201:
    """The same charge point answering OCPP 2.0.1 requests: EVSE ids are its connector ids."""

    def __init__(self, cp: Answerer) -> None:
        self.cp = cp

    @_answer("RequestStartTransaction")
    def request_start(self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None = None, **_: Any):
        return {"status": self.cp.remote_start(id_token["id_token"], evse_id, remote_start_id)}

    @_answer("RequestStopTransaction")
    def request_stop(self, transaction_id: str) -> dict[str, Any]:
        return {"status": self.cp.remote_stop(transaction_id)}

    @_answer("UnlockConnector")
    async def unlock(self, evse_id: int, connector_id: int) -> dict[str, Any]:
        if connector_id != 1:  # one connector per EVSE here
            return {"status": "UnknownConnector"}
        status = await self.cp.unlock(evse_id)
        if status == "NotSupported":  # not an UnlockStatus in 2.0.1: a station that cannot says so as a CallError
            raise OcppCallError("NotSupported", "this station cannot unlock its connectors remotely")
        return {"status": status}

    @_answer("GetTransactionStatus")
    def transaction_status(self, transaction_id: str | None = None) -> dict[str, Any]:
        ongoing, queued = self.cp.transaction_status(transaction_id)
        payload: dict[str, Any] = {"messagesInQueue": queued}
        if ongoing is not None:
            payload["ongoingIndicator"] = ongoing
        return payload

    @_answer("TriggerMessage")
    def trigger(self, requested_message: str, evse: dict[str, Any] | None = None) -> dict[str, Any]:
        message = "MeterValues" if requested_message == "TransactionEvent" else requested_message
        return {"status": self.cp.trigger(message, None if evse is None else evse.get("id"))}

    @_answer("ChangeAvailability")
    def change_availability(self, operational_status: str, evse: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"status": self.cp.change_availability(0 if evse is None else evse["id"], operational_status)}

    @_answer("Reset")
    def reset(self, type: str, evse_id: int | None = None) -> dict[str, Any]:  # noqa: A002
        if evse_id is not None:
            return {"status": "Rejected"}  # it resets as a whole only
        return {"status": self.cp.reset("Hard") if type == "Immediate" else self.cp.reset_when_idle()}

    @_answer("GetVariables")
    def get_variables(self, get_variable_data: list[dict[str, Any]]) -> dict[str, Any]:
        results = []
        for item in get_variable_data:
            component, variable = item["component"], item["variable"]
            key = VARIABLES.get((component["name"], variable["name"]))
            value = self.cp.config.get(key) if key is not None else None
            result: dict[str, Any] = {
                "attributeStatus": "Accepted" if value is not None else "UnknownVariable",
                "component": {"name": component["name"]},
                "variable": {"name": variable["name"]},
            }
            if value is not None:
                result["attributeValue"] = value
            results.append(result)
        return {"getVariableResult": results}

    @_answer("SetVariables")
    def set_variables(self, set_variable_data: list[dict[str, Any]]) -> dict[str, Any]:
        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            key = VARIABLES.get((component["name"], variable["name"]))
            status = "UnknownVariable" if key is None else self.cp.config.change(key, str(item["attribute_value"]))
            results.append(
                {
                    "attributeStatus": {"NotSupported": "NotSupportedAttributeType"}.get(status, status),
                    "component": {"name": component["name"]},
                    "variable": {"name": variable["name"]},
                }
            )
        return {"setVariableResult": results}

    @_answer("DataTransfer")
    def data_transfer(self, vendor_id: str, message_id: str | None = None, data: Any = None) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}
