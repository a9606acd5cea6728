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

from .configstore import ConfigStore

__all__ = ["Answerer", "Answers"]


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

    def remote_start(self, id_tag: str, connector_id: int | None) -> str: ...
    def remote_stop(self, transaction_id: int) -> str: ...
    async def unlock(self, connector_id: int) -> str: ...
    def trigger(self, message: str, connector_id: int | None) -> str: ...
    def change_availability(self, connector_id: int, kind: str) -> str: ...
    def reset(self, kind: str) -> str: ...


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
