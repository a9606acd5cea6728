"""The REST boundary picks a domain error's HTTP status (the services only say what went wrong)."""

from __future__ import annotations

import pytest

from csms.api.envelope import http_status
from csms.errors import (
    BadRequestError,
    ChargePointError,
    ChargePointTimeoutError,
    ChargerOfflineError,
    ConflictError,
    ConnectorBusyError,
    CsmsError,
    IdTagNotAcceptedError,
    NotFoundError,
)
from csms.services.payments import PaymentDeclinedError, PaymentProviderError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("x"), 404),
        (BadRequestError("x"), 400),
        (ConflictError("x"), 409),
        (ChargerOfflineError(), 409),
        (ConnectorBusyError(["open_transaction:1"]), 409),
        (IdTagNotAcceptedError("T1", "Blocked"), 403),
        (PaymentDeclinedError("x"), 402),
        (ChargePointTimeoutError(), 504),
        (ChargePointError("x"), 502),
        (PaymentProviderError("x"), 502),
        (CsmsError("x"), 500),
    ],
)
def test_each_domain_error_has_its_status(error, status):
    assert http_status(error) == status


def test_the_services_carry_no_http_status():
    for cls in (CsmsError, NotFoundError, ConflictError, ChargePointError, PaymentDeclinedError):
        assert "status" not in vars(cls), cls
