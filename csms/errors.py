"""Domain errors of the CSMS services; the REST boundary maps each to a status and code."""

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
    status = 500
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
    status = 404


class BadRequestError(CsmsError):
    status = 400


class ConflictError(CsmsError):
    status = 409


class ChargerOfflineError(ConflictError):
    code = "ChargerOffline"

    def __init__(self, **data: Any) -> None:
        super().__init__("Charger is offline", **data)


class ConnectorBusyError(ConflictError):
    code = "ConnectorBusy"

    def __init__(self, reasons: list[str], **data: Any) -> None:
        super().__init__("Charging gun is already in use", reasons=reasons, **data)


class ChargePointTimeoutError(CsmsError):
    status = 504
    code = "ChargePointTimeout"

    def __init__(self, **data: Any) -> None:
        super().__init__("Charge point did not respond in time", **data)


class ChargePointError(CsmsError):
    """The charge point refused or failed a call (CallError, closed socket, bad answer)."""

    status = 502
    code = "ChargePointError"


class IdTagNotAcceptedError(CsmsError):
    """The id tag list says no (Blocked, Expired, Invalid, ConcurrentTx): nothing is sent to the charge point."""

    status = 403
    code = "IdTagNotAccepted"

    def __init__(self, id_tag: str, status: str) -> None:
        super().__init__(f"Id tag {id_tag} may not start a charge: {status}", idTag=id_tag, idTagStatus=status)
