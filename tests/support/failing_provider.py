"""Payment providers with outages, for `--payment-provider tests.support.failing_provider:Down` (or `:Flaky`)."""

from __future__ import annotations

import json
import os
import secrets

from csms.services.payment_provider import PaymentIntent


class Down:
    name = "down"

    async def create_intent(self, reservation_id, amount):
        raise ConnectionError("provider unreachable")

    async def confirm(self, ref, payment_method):
        raise ConnectionError("provider unreachable")

    async def cancel(self, ref):
        raise ConnectionError("provider unreachable")

    async def capture(self, ref, amount):
        raise ConnectionError("provider unreachable")


class Flaky:
    """Works, except that each reservation's first FLAKY_CANCEL_FAILURES cancels (env, default 2) fail as
    an outage would. Every cancel call is appended to FLAKY_PROVIDER_LOG (JSON lines), so a test in
    another process can count them."""

    name = "flaky"

    def __init__(self) -> None:
        self.failures = int(os.environ.get("FLAKY_CANCEL_FAILURES", "2"))
        self.log = os.environ.get("FLAKY_PROVIDER_LOG")
        self.cancel_calls: dict[str, int] = {}

    def _record(self, **call) -> None:
        if self.log:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(call) + "\n")

    async def create_intent(self, reservation_id, amount):
        ref = f"flaky_{secrets.token_hex(6)}"
        return PaymentIntent(ref, f"{ref}_secret")

    async def confirm(self, ref, payment_method):
        return payment_method != "declined"

    async def cancel(self, ref):
        n = self.cancel_calls[ref] = self.cancel_calls.get(ref, 0) + 1
        ok = n > self.failures
        self._record(op="cancel", ref=ref, ok=ok)
        if not ok:
            raise ConnectionError("provider unreachable")

    async def capture(self, ref, amount):
        self._record(op="capture", ref=ref, amount=str(amount), ok=True)
