"""Who may do what in the dashboard, and when a sign-in is refused for too many failures. Pure (no IO).

Three roles, each able to do what the one before it can: a viewer reads every page; an
operator also acts on chargers and sessions (unlock, start, stop, reset, availability,
maintenance); an admin also manages people, id tags and charger passwords.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "ROLES",
    "may",
    "user_name_problem",
    "user_password_problem",
    "SignInThrottle",
]

ROLES = ("viewer", "operator", "admin")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 10


def may(role: str, need: str) -> bool:
    """Whether `role` includes `need` (an unknown role may nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(need)


def user_name_problem(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return "a user name is 1-64 letters, digits and . _ @ - (starting with a letter or digit)"
    return None


def user_password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    if len(password) > 256:
        return "a password is at most 256 characters"
    return None


@dataclass
class SignInThrottle:
    """Sign-in attempts that failed, or are being checked, in a sliding window.

    Three buckets: one name from one address (the guesser), one address (one guesser trying many
    names) and one name from anywhere (a spread-out guess, with a far higher limit, so a stranger
    cannot lock a person out by failing on purpose). Past a limit, sign-in is refused without
    checking the password until the oldest attempt in the window ages out: guessing costs the
    guesser time, not the server CPU. An attempt counts from when it starts (`begin`), so many at
    once are throttled as surely as many in a row; a success takes its own count back.
    """

    window: float = 300.0
    per_name_and_address: int = 5
    per_address: int = 20
    per_name: int = 50
    _attempts: dict[str, deque[float]] = field(default_factory=dict)

    def _keys(self, name: str, address: str) -> list[tuple[str, int]]:
        n = name.lower()
        return [
            (f"na:{n}|{address}", self.per_name_and_address),
            (f"a:{address}", self.per_address),
            (f"n:{n}", self.per_name),
        ]

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._attempts.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._attempts[key]
        return q

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds until a sign-in for `name` from `address` is heard again; 0 when it may be tried now."""
        waits = [0.0]
        for key, limit in self._keys(name, address):
            q = self._recent(key, now)
            if len(q) >= limit:
                waits.append(q[len(q) - limit] + self.window - now)
        return max(waits)

    def begin(self, name: str, address: str, now: float) -> None:
        """An attempt starts: it counts as failed until `succeeded` says otherwise."""
        for key, _ in self._keys(name, address):
            self._attempts.setdefault(key, deque()).append(now)
        if len(self._attempts) > 30_000:  # bounded: forget the quietest keys
            for key in sorted(self._attempts, key=lambda k: self._attempts[k][-1])[:15_000]:
                del self._attempts[key]

    def succeeded(self, name: str, address: str, now: float) -> None:
        """The attempt begun at `now` was right: the name's own buckets are cleared, the address's takes it back."""
        n = name.lower()
        self._attempts.pop(f"na:{n}|{address}", None)
        self._attempts.pop(f"n:{n}", None)
        q = self._attempts.get(f"a:{address}")
        if q is not None and now in q:
            q.remove(now)
