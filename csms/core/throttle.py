"""When a password guess is refused without checking it: one rule for the dashboard's sign-in and the chargers'
handshake. Pure (no IO): the caller passes the time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["AttemptThrottle"]

_MAX_KEYS = 30_000  # bounded memory, however many names and addresses a guesser invents


@dataclass
class AttemptThrottle:
    """Attempts that failed, or are being checked, in a sliding window.

    Up to three buckets: one name from one address (the guesser), one address (one guesser trying many
    names) and one name from anywhere (a spread-out guess); a limit of None keeps no such bucket.
    Past a limit, an attempt is refused
    without checking its password until the oldest attempt in the window ages out: guessing costs
    the guesser time, not the server CPU. An attempt counts from when it starts (`begin`), so many
    at once are throttled as surely as many in a row; a success takes its own count back.

    The name's own bucket must not let a stranger lock its owner out by failing on purpose: the
    address that last succeeded for a name is `trusted` for it and passes that bucket (it stays
    bound by its own two).
    """

    window: float = 300.0
    per_name_and_address: int | None = 5  # None: no such bucket
    per_address: int = 20
    per_name: int | None = 50  # None: no such bucket (a stranger cannot lock a name out from anywhere)
    _attempts: dict[str, deque[float]] = field(default_factory=dict)
    _last_good: dict[str, str] = field(default_factory=dict)  # name -> the address that last succeeded

    def _keys(self, name: str, address: str) -> list[tuple[str, int]]:
        n = name.lower()
        keys = [(f"a:{address}", self.per_address)]
        if self.per_name_and_address is not None:
            keys.append((f"na:{n}|{address}", self.per_name_and_address))
        if self.per_name is not None and self._last_good.get(n) != address:
            keys.append((f"n:{n}", self.per_name))
        return keys

    def _counted(self, name: str, address: str) -> list[str]:
        """The buckets an attempt is counted in (the name's own even from its trusted address)."""
        n = name.lower()
        keys = [f"a:{address}"]
        if self.per_name_and_address is not None:
            keys.append(f"na:{n}|{address}")
        if self.per_name is not None:
            keys.append(f"n:{n}")
        return keys

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._attempts.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._attempts[key]
        return q

    def trusted(self, name: str, address: str) -> bool:
        """Whether `address` is where `name` last succeeded from (the charger coming back, the person at their desk)."""
        return self._last_good.get(name.lower()) == address

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds until an attempt for `name` from `address` is heard again; 0 when it may be tried now."""
        waits = [0.0]
        for key, limit in self._keys(name, address):
            q = self._recent(key, now)
            if len(q) >= limit:
                waits.append(q[len(q) - limit] + self.window - now)
        return max(waits)

    def begin(self, name: str, address: str, now: float) -> None:
        """An attempt starts: it counts as failed until `succeeded` says otherwise."""
        for key in self._counted(name, address):
            self._attempts.setdefault(key, deque()).append(now)
        if len(self._attempts) > _MAX_KEYS:  # forget the quietest half
            for key in sorted(self._attempts, key=lambda k: self._attempts[k][-1])[: _MAX_KEYS // 2]:
                del self._attempts[key]

    def withdraw(self, name: str, address: str, now: float) -> None:
        """The attempt begun at `now` was never checked (cut off while it waited): it counts nowhere."""
        for key in self._counted(name, address):
            self._take_back(key, now)

    def _take_back(self, key: str, now: float) -> None:
        q = self._attempts.get(key)
        if q is not None and now in q:
            q.remove(now)
            if not q:
                del self._attempts[key]

    def succeeded(self, name: str, address: str, now: float) -> None:
        """The attempt begun at `now` was right: this name's guesses from this address are forgiven, the
        other two buckets take this attempt back, and `address` becomes the name's trusted one."""
        n = name.lower()
        self._attempts.pop(f"na:{n}|{address}", None)
        for key in (f"a:{address}", f"n:{n}"):
            self._take_back(key, now)
        self._last_good.pop(n, None)  # re-inserted last: the oldest entries are the ones forgotten
        self._last_good[n] = address
        if len(self._last_good) > _MAX_KEYS:
            for stale in list(self._last_good)[: _MAX_KEYS // 2]:
                del self._last_good[stale]
