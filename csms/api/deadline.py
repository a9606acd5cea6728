"""A command that reaches this node too late is refused, not run.

A node frozen for a while (SIGSTOP, a stalled VM, a long GC) finds on waking the requests its balancer
sent meanwhile, and would run them: a start asked 20 s ago, whose caller gave up and may have retried on
another node. The balancer stamps each request with the time it received it (`X-Request-Start: t=...`,
HAProxy's `http-request set-header X-Request-Start t=%[date(0,us)]`); a command (POST, PUT, PATCH,
DELETE) older than the budget when it reaches the application is answered 503 and never executed. The
header is believed only from `--trusted-proxies` (csms.api.proxies marks such requests); reads run late
harmlessly and are left alone. The clocks of balancer and node must agree (NTP) to well under the budget.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from csms.api.envelope import envelope

__all__ = ["PROXIED", "RequestDeadline", "started_at"]

log = logging.getLogger("csms.api")

PROXIED = "csms.trusted_proxy"  # scope key csms.api.proxies.SecureTransport sets for a trusted proxy's requests
_COMMANDS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def started_at(value: str) -> float | None:
    """Epoch seconds of an X-Request-Start value: "t=1733612345.123456", or whole ms or µs as balancers
    write it (told apart by size, as its readers do); None when it is not such a time."""
    try:
        t = float(value.strip().removeprefix("t="))
    except ValueError:
        return None
    if not math.isfinite(t) or t <= 0:
        return None
    while t > 1e11:  # ms (1.7e12) or µs (1.7e15) since the epoch
        t /= 1000.0
    return t


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [raw.decode("latin-1") for k, raw in headers if k.lower() == name]
    return values[-1] if values else None  # the last: the one our balancer set


class RequestDeadline:
    """ASGI: a trusted proxy's command older than `budget` seconds is answered 503 without running it."""

    def __init__(self, app: Any, budget: float, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.budget = budget
        self.clock = clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.budget > 0 and scope["type"] == "http" and scope.get(PROXIED) and scope.get("method") in _COMMANDS:
            raw = _header(scope.get("headers", []), b"x-request-start")
            start = started_at(raw) if raw else None
            if start is not None and (age := self.clock() - start) > self.budget:
                log.warning(
                    "api.request_too_late method=%s path=%s age=%.1fs budget=%.1fs (refused, not run)",
                    scope["method"],
                    scope.get("path", "")[:120],
                    age,
                    self.budget,
                )
                refusal = envelope(
                    False,
                    f"This request reached the server {age:.1f} s after the load balancer received it "
                    f"(more than --request-budget-seconds {self.budget:g}); it was not executed: send it again",
                    {"ageSeconds": round(age, 1), "budgetSeconds": self.budget},
                    503,
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
