"""Commands for a charge point another node holds: forwarded there, answered as if sent here.

The caller's side is `RemoteConnection` (the `connection` of a RemoteChargePoint), with the
methods of an OcppConnection that REST and the dashboard use (`call`, `call_raw`). The answer,
or the OCPP-J error, travels back as a small JSON object; `answer_of` and `raise_for` turn an
error into that object and back into the same exception, so callers' `except` clauses work
unchanged across nodes. Pure except for `RemoteConnection`, which asks the ClusterNode to send.
"""

from __future__ import annotations

from typing import Any, Protocol

from ocppj import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
    OcppjError,
    OcppVersion,
    schemas,
    to_payload,
)
from ocppj.connection import to_snake
from ocppj.versions import V16

__all__ = ["RemoteConnection", "answer_of", "raise_for", "result_of"]


def result_of(payload: dict[str, Any]) -> dict[str, Any]:
    return {"result": payload}


def answer_of(exc: OcppjError) -> dict[str, Any]:
    """An OCPP-J error of the holding node's call as a JSON answer."""
    if isinstance(exc, CallTimeoutError):
        return {"error": "timeout", "uniqueId": exc.unique_id, "timeout": exc.timeout}
    if isinstance(exc, CallErrorReceived):
        return {"error": "call_error", "code": exc.code, "description": exc.description, "details": exc.details}
    if isinstance(exc, OcppCallError):
        return {"error": "invalid_request", "code": exc.code, "description": exc.description}
    if isinstance(exc, InvalidResponseError):
        return {"error": "invalid_response", "message": str(exc)}
    return {"error": "closed", "message": str(exc)}


def raise_for(answer: dict[str, Any], action: str, peer: str, timeout: float) -> dict[str, Any]:
    """The result payload of a forwarded call's answer, or its error raised as the same exception."""
    kind = answer.get("error")
    if kind is None:
        return answer.get("result") or {}
    if kind == "timeout":
        raise CallTimeoutError(
            action, str(answer.get("uniqueId", "forwarded")), float(answer.get("timeout", timeout)), peer
        )
    if kind == "call_error":
        raise CallErrorReceived(
            action, answer.get("code", "GenericError"), answer.get("description", ""), answer.get("details")
        )
    if kind == "invalid_request":
        raise OcppCallError(answer.get("code", "FormationViolation"), answer.get("description", ""))
    if kind == "invalid_response":
        raise InvalidResponseError(answer.get("message", f"{peer} answered {action} with an invalid payload"))
    raise ConnectionClosedError(answer.get("message", f"connection to {peer} is closed"))


class Forwarder(Protocol):
    """What a RemoteConnection needs of its node (csms.cluster.node.ClusterNode is one)."""

    async def forward(
        self, node_id: str, charge_point_id: str, action: str, payload: dict[str, Any], timeout: float
    ) -> dict[str, Any]: ...


class RemoteConnection:
    """Calls to a charge point held by `node_id`, forwarded through the database (LISTEN/NOTIFY)."""

    def __init__(
        self, cluster: Forwarder, node_id: str, charge_point_id: str, call_timeout: float, version: OcppVersion = V16
    ) -> None:
        self.cluster = cluster
        self.version = version  # the charger's, as its node published it: requests are built and checked in it
        self.node_id = node_id
        self.peer = charge_point_id
        self.call_timeout = call_timeout
        self.closed = False

    async def call(self, request: Any, *, timeout: float | None = None) -> Any:
        """As OcppConnection.call: a `call.X` dataclass of the charger's version in, its `call_result.X` out."""
        action = type(request).__name__
        payload = await self.call_raw(action, to_payload(request), timeout=timeout)
        return self.version.result_of(action, to_snake(payload))

    async def call_raw(self, action: str, payload: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """As OcppConnection.call_raw, the same timeout covering the trip to the holding node and back."""
        schemas.validate(action, payload, response=False, version=self.version)  # fails here, as it would locally
        timeout = self.call_timeout if timeout is None else timeout
        answer = await self.cluster.forward(self.node_id, self.peer, action, payload, timeout)
        return raise_for(answer, action, self.peer, timeout)
