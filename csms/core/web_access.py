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
    """Failed sign-ins per user name and per client address in a sliding window.

    Past the limit, sign-in is refused without checking the password until the oldest
    failure in the window ages out: guessing costs the guesser time, not the server CPU.
    """

    window: float = 300.0
    per_name: int = 5
    per_address: int = 20
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds until a sign-in for `name` from `address` is heard again; 0 when it may be tried now."""
        waits = [0.0]
        for key, limit in (("n:" + name.lower(), self.per_name), ("a:" + address, self.per_address)):
            q = self._recent(key, now)
            if len(q) >= limit:
                waits.append(q[len(q) - limit] + self.window - now)
        return max(waits)

    def failed(self, name: str, address: str, now: float) -> None:
        for key in ("n:" + name.lower(), "a:" + address):
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 10_000:  # bounded: forget the quietest keys
            for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[:5_000]:
                del self._failures[key]

    def succeeded(self, name: str) -> None:
        self._failures.pop("n:" + name.lower(), None)
