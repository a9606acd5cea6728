"""Dashboard sign-in: a signed, expiring session cookie and a CSRF token per session. Pure (no IO).

The cookie carries who signed in (the API token's name and role), a random session id,
when it expires, and a fingerprint of the token's secret, all signed with HMAC-SHA256
under a key only this process holds: a restart, a changed token or sign-out ends it.
The CSRF token is an HMAC of the session id under the same key, so it needs no storage
and a form from another session (or another site) never carries the right one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from csms.config import ApiToken

__all__ = ["COOKIE", "UiSession", "find_token", "issue", "read", "csrf_token", "csrf_ok", "LIFETIME_SECONDS"]

COOKIE = "unstuck_ui"
LIFETIME_SECONDS = 8 * 3600  # a working shift


@dataclass(frozen=True)
class UiSession:
    name: str  # the API token's name: the actor of every action taken in this session
    role: str
    sid: str
    expires: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"|".join(parts), hashlib.sha256).digest()


def _fingerprint(key: bytes, token: ApiToken) -> str:
    return _b64(_mac(key, b"token", token.token.encode())[:12])


def find_token(tokens: Iterable[ApiToken], given: str) -> ApiToken | None:
    """The token whose secret this is (compared in constant time, every token looked at)."""
    given_b = given.strip().encode()
    found = None
    for t in tokens:
        if hmac.compare_digest(t.token.encode(), given_b) and found is None:
            found = t
    return found


def issue(key: bytes, token: ApiToken, now: float, lifetime: int = LIFETIME_SECONDS) -> tuple[str, UiSession]:
    session = UiSession(token.name, token.role, secrets.token_urlsafe(12), int(now) + lifetime)
    payload = _b64(
        json.dumps(
            [session.name, session.role, session.sid, session.expires, _fingerprint(key, token)], separators=(",", ":")
        ).encode()
    )
    return f"{payload}.{_b64(_mac(key, b'cookie', payload.encode()))}", session


def read(key: bytes, value: str | None, now: float, tokens: Iterable[ApiToken]) -> UiSession | None:
    """The session a cookie proves, or None (unsigned, tampered, expired, or its token is gone)."""
    if not value or value.count(".") != 1:
        return None
    payload, mac = value.split(".")
    try:
        if not hmac.compare_digest(_unb64(mac), _mac(key, b"cookie", payload.encode())):
            return None
        name, role, sid, expires, fingerprint = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    if now >= expires:
        return None
    for t in tokens:
        if t.name == name and t.role == role and hmac.compare_digest(_fingerprint(key, t), fingerprint):
            return UiSession(name, role, sid, int(expires))
    return None


def csrf_token(key: bytes, session: UiSession) -> str:
    return _b64(_mac(key, b"csrf", session.sid.encode()))


def csrf_ok(key: bytes, session: UiSession, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(csrf_token(key, session).encode(), given.encode())
