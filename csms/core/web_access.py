"""Who may do what in the dashboard, and when a sign-in is refused for too many failures. Pure (no IO).

Three roles, each able to do what the one before it can: a viewer reads every page; an
operator also acts on chargers and sessions (unlock, start, stop, reset, availability,
maintenance); an admin also manages people, id tags and charger passwords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from csms.core.throttle import AttemptThrottle

__all__ = [
    "ROLES",
    "may",
    "user_name_problem",
    "user_password_problem",
    "SignInThrottle",
    "TokenThrottle",
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


# The dashboard's sign-in throttle is the one rule every password check shares (csms.core.throttle), with its
# defaults: 5 failures per name and address, 20 per address, 50 per name in 5 minutes.
SignInThrottle = AttemptThrottle


@dataclass
class TokenThrottle(AttemptThrottle):
    """Failed REST bearer tokens, per client address: a token has no name to count by, so the one address
    bucket is the rule (20 in a minute) and no name bucket is kept."""

    window: float = 60.0
    per_name_and_address: int | None = None
    per_address: int = 20
    per_name: int | None = None
