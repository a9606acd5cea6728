"""One log line when the database stops answering and one when it answers again.

Under load an outage fails every REST request, every read and every write retry; logged each time,
a one-minute blip writes thousands of lines (and tracebacks) that say one thing. The Database notes
each failure and each answer here, on the trio thread; this decides what is worth a line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["OutageLog"]


# An outage ends at a success this long after its last failure: while one path still fails (writes on a full
# disk, one connection) and others succeed, it is one outage, not a began/ended pair per retry.
QUIET_SECONDS = 3.0


class OutageLog:
    """`failed` at every failure that means "unreachable", `answered` at every success; logs the edges.
    Used on the trio thread only."""

    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._since: float | None = None
        self._last_failure = 0.0
        self._failures = 0
        self.outages = 0  # outages begun since start-up (for /health and tests of the log)

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, where: str, exc: BaseException) -> bool:
        """Counts the failure; True (and one WARNING line) only for the first of an outage."""
        self._failures += 1
        self._last_failure = self._clock()
        if self._since is not None:
            return False
        self._since = self._last_failure
        self.outages += 1
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        self._log.warning("db.outage_began where=%s error=%s (logged once until it answers again)", where, first)
        return True

    def answered(self) -> None:
        if self._since is None or self._clock() - self._last_failure < QUIET_SECONDS:
            return
        self._log.warning(
            "db.outage_ended after=%.1fs failures=%d (requests answered 503, reads and write retries)",
            self._clock() - self._since,
            self._failures,
        )
        self._since = None
        self._failures = 0
