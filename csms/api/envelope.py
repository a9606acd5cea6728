"""The seeds' response envelope {"success", "message", "data"} and its errors; what requests may hold."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from csms.errors import (
    BadRequestError,
    ChargePointError,
    ChargePointTimeoutError,
    ConflictError,
    CsmsError,
    IdTagNotAcceptedError,
    NotFoundError,
)
from csms.services.payments import PaymentDeclinedError, PaymentProviderError

__all__ = ["ApiError", "http_status", "ok", "CamelModel", "ErrorEnvelope", "ERROR_RESPONSES", "refuse_nul_in_url"]


class CamelModel(BaseModel):
    """Request bodies: camelCase on the wire, snake_case in Python, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError(_NUL)
        return value


_NUL = "may not contain the NUL character (U+0000)"


def _has_nul(value: Any) -> bool:
    """PostgreSQL text cannot hold U+0000 (psycopg raises DataError): refuse it as a 400, not a 500."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def refuse_nul_in_url(request: Request) -> None:
    """An app-wide dependency: path and query parameters reach SQL too (see `_has_nul`)."""
    query = [part for pair in request.query_params.multi_items() for part in pair]
    if any(_has_nul(str(v)) for v in (*request.path_params.values(), *query)):
        raise ApiError(400, f"Invalid request data: the URL {_NUL}")


class ErrorEnvelope(BaseModel):
    """Every 4xx/5xx answer, documented in /openapi.json so clients (and schemathesis) can rely on it."""

    success: Literal[False]
    message: str = Field(min_length=1)
    data: Any = None


# FastAPI documents a 422 HTTPValidationError by default; we answer 400 with the envelope instead,
# and a "4XX" entry makes FastAPI drop its 422.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorEnvelope, "description": "Refused: the envelope with success false and a message"},
    "5XX": {"model": ErrorEnvelope, "description": "Database or charge point unavailable: the envelope"},
}


def http_status(exc: CsmsError) -> int:
    """The HTTP status a domain error is answered with: chosen here, at the boundary, by its class."""
    for cls in type(exc).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return 500


_STATUS_OF: dict[type, int] = {
    NotFoundError: 404,
    BadRequestError: 400,
    ConflictError: 409,
    IdTagNotAcceptedError: 403,
    PaymentDeclinedError: 402,
    ChargePointTimeoutError: 504,
    ChargePointError: 502,
    PaymentProviderError: 502,
    CsmsError: 500,
}


class ApiError(Exception):
    """Raised by routes; answered as the envelope with success: false."""

    def __init__(self, status: int, message: str, data: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data
        self.headers = headers or {}


def envelope(
    success: bool, message: str, data: Any = None, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"success": success, "message": message}
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status, headers=headers)


def ok(data: Any = None, message: str = "OK", status: int = 200) -> JSONResponse:
    return envelope(True, message, data, status)
