"""Errors of the OCPP-J layer: one root, names ending in Error.

`OcppCallError` carries an OCPP-J CallError code so the boundary can answer the
peer with it; the others are raised to *our* callers.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "OcppjError",
    "OcppCallError",
    "CallTimeoutError",
    "CallErrorReceived",
    "InvalidResponseError",
    "ConnectionClosedError",
]

# OCPP-J 1.6 section 4.2.3 and OCPP-J 2.0.1 section 4.3: the valid CallError codes (spelling as in each spec;
# the layer raises the 1.6 names and `OcppVersion.code` spells them for 2.0.1 on the way out).
ERROR_CODES = frozenset(
    {
        "FormatViolation",
        "OccurrenceConstraintViolation",
        "MessageTypeNotSupported",
        "RpcFrameworkError",
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)


class OcppjError(Exception):
    """Root of every error this package raises."""


class OcppCallError(OcppjError):
    """A problem with an incoming frame, answered to the peer as a CallError."""

    def __init__(
        self,
        code: str,
        description: str,
        *,
        unique_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.unique_id = unique_id
        self.details = details or {}


class CallTimeoutError(OcppjError, TimeoutError):
    """The peer did not answer our Call within the configured time."""

    def __init__(self, action: str, unique_id: str, timeout: float, peer: str) -> None:
        super().__init__(f"{peer} did not answer {action} (id {unique_id}) within {timeout:g}s")
        self.action = action
        self.unique_id = unique_id
        self.timeout = timeout


class CallErrorReceived(OcppjError):
    """The peer answered our Call with a CallError."""

    def __init__(self, action: str, code: str, description: str, details: Any) -> None:
        super().__init__(f"{action} answered with CallError {code}: {description}")
        self.action = action
        self.code = code
        self.description = description
        self.details = details


class InvalidResponseError(OcppjError):
    """The peer's CallResult for our Call does not match the schema."""


class ConnectionClosedError(OcppjError):
    """The WebSocket closed while a Call was waiting for its answer."""
