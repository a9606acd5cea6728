"""A payment provider whose service is down (for `--payment-provider tests.support.failing_provider:Down`)."""

from __future__ import annotations


class Down:
    name = "down"

    async def create_intent(self, reservation_id, amount):
        raise ConnectionError("provider unreachable")

    async def confirm(self, ref, payment_method):
        raise ConnectionError("provider unreachable")

    async def cancel(self, ref):
        raise ConnectionError("provider unreachable")
