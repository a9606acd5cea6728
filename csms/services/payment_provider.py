"""Where money comes from: a small provider interface and a simulated provider.

A real provider (Stripe, Adyen, ...) implements `PaymentProvider` and is
passed to `serve(..., payment_provider=...)` or named on the command line as
`--payment-provider package.module:ClassName` (constructed without arguments,
configured from its own environment variables). The CSMS calls it at four
points: create an intent when a reservation is made, confirm it when the user
pays, cancel it when the reservation ends without charging (or with nothing to
charge), capture the session's fee when a session that charged ends.
"""

from __future__ import annotations

import importlib
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

__all__ = ["PaymentProvider", "PaymentIntent", "SimulatedPaymentProvider", "load_provider"]


@dataclass(frozen=True)
class PaymentIntent:
    ref: str
    client_secret: str


class PaymentProvider(Protocol):
    name: str

    async def create_intent(self, reservation_id: str, amount: Decimal | None) -> PaymentIntent: ...

    async def confirm(self, ref: str, payment_method: str | None) -> bool:
        """True when the money is secured; False when declined."""
        ...

    async def cancel(self, ref: str) -> None: ...

    async def capture(self, ref: str, amount: Decimal) -> None:
        """Take `amount` (the session's fee, at most what was held) of the confirmed payment."""
        ...


_METHODS = ("create_intent", "confirm", "cancel", "capture")


class SimulatedPaymentProvider:
    """No network. Confirms every payment except payment method "declined" (as test cards do)."""

    name = "simulated"

    def __init__(self) -> None:
        self.intents: dict[str, str] = {}  # ref -> state

    async def create_intent(self, reservation_id: str, amount: Decimal | None) -> PaymentIntent:
        ref = f"sim_{secrets.token_hex(8)}"
        self.intents[ref] = "created"
        return PaymentIntent(ref, f"{ref}_secret_{secrets.token_hex(6)}")

    async def confirm(self, ref: str, payment_method: str | None) -> bool:
        ok = payment_method != "declined"
        self.intents[ref] = "succeeded" if ok else "declined"
        return ok

    async def cancel(self, ref: str) -> None:
        self.intents[ref] = "cancelled"

    async def capture(self, ref: str, amount: Decimal) -> None:
        self.intents[ref] = f"captured {amount}"


def load_provider(spec: str | None) -> PaymentProvider:
    """`None`/"simulated" -> the simulated provider; "pkg.module:Class" -> Class()."""
    if not spec or spec == "simulated":
        return SimulatedPaymentProvider()
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"payment provider {spec!r} must look like package.module:ClassName")
    provider = getattr(importlib.import_module(module_name), attr)()
    missing = [m for m in _METHODS if not callable(getattr(provider, m, None))]
    if missing:
        raise ValueError(f"payment provider {spec!r} lacks {', '.join(missing)} (see csms.services.payment_provider)")
    return provider
