"""Domain errors of the CSMS services; the REST boundary (csms/api/envelope.py) picks each one's HTTP status."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CsmsError",
    "NotFoundError",
    "BadRequestError",
    "ConflictError",
    "ChargerOfflineError",
    "ConnectorBusyError",
    "ChargePointTimeoutError",
    "ChargePointError",
    "IdTagNotAcceptedError",
]


class CsmsError(Exception):
    code: str | None = None

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def payload(self) -> dict[str, Any] | None:
        out = dict(self.data)
        if self.code:
            out = {"code": self.code, **out}
        return out or None


class NotFoundError(CsmsError):
    """Nothing by that id."""


class BadRequestError(CsmsError):
    """The request cannot be carried out as asked."""


class ConflictError(CsmsError):
    """The state of a connector, session or reservation does not allow it now."""


class ChargerOfflineError(ConflictError):
    code = "ChargerOffline"

    def __init__(self, **data: Any) -> None:
        super().__init__("Charger is offline", **data)


class ConnectorBusyError(ConflictError):
    code = "ConnectorBusy"

    def __init__(self, reasons: list[str], **data: Any) -> None:
        super().__init__("Charging gun is already in use", reasons=reasons, **data)


class ChargePointTimeoutError(CsmsError):
    """The charge point did not answer in time."""

    code = "ChargePointTimeout"

    def __init__(self, **data: Any) -> None:
        super().__init__("Charge point did not respond in time", **data)


class ChargePointError(CsmsError):
    """The charge point refused or failed a call (CallError, closed socket, bad answer)."""

    code = "ChargePointError"


class IdTagNotAcceptedError(CsmsError):
    """The id tag list says no (Blocked, Expired, Invalid, ConcurrentTx): nothing is sent to the charge point."""

    code = "IdTagNotAccepted"

    def __init__(self, id_tag: str, status: str) -> None:
        super().__init__(f"Id tag {id_tag} may not start a charge: {status}", idTag=id_tag, idTagStatus=status)
