"""Dashboard sign-in: signed, expiring session cookies, CSRF tokens, and people's password hashes.

A session is a person (a dashboard user, by name and password) or a machine's admin API
token. The cookie carries which, the name and role, a random session id, when it expires,
and a fingerprint of the secret behind it (the user's password hash or the token), all
signed with HMAC-SHA256 under the site's key (kept in the database, so restarts and other
nodes honour it): a changed password, role or token ends the session, as does sign-out.
The CSRF token is an HMAC of the session id under the same key, so it needs no storage.
Passwords are argon2id hashes (argon2-cffi); checking one is slow on purpose, so callers
run it in a worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from csms.config import ApiToken

__all__ = [
    "COOKIE",
    "LIFETIME_SECONDS",
    "UiSession",
    "find_token",
    "issue",
    "parse",
    "fingerprint_ok",
    "csrf_token",
    "csrf_ok",
    "hash_password",
    "verify_password",
    "FLASH_COOKIE",
    "flash_cookie",
    "read_flash",
]

COOKIE = "unstuck_ui"
FLASH_COOKIE = "unstuck_flash"
LIFETIME_SECONDS = 8 * 3600  # a working shift
_HASHER = PasswordHasher()  # argon2id, the library's defaults (RFC 9106 low-memory profile)
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))  # checked for unknown names: same cost, no oracle


@dataclass(frozen=True)
class UiSession:
    name: str  # the user's or API token's name: the actor of every action taken in this session
    role: str
    sid: str
    expires: int  # unix seconds
    kind: str = "user"  # "user" (a person) or "token" (an admin API token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"|".join(parts), hashlib.sha256).digest()


def _fingerprint(key: bytes, kind: str, secret: str) -> str:
    return _b64(_mac(key, kind.encode(), secret.encode())[:12])


def find_token(tokens: Iterable[ApiToken], given: str) -> ApiToken | None:
    """The token whose secret this is (compared in constant time, every token looked at)."""
    given_b = given.strip().encode()
    found = None
    for t in tokens:
        if hmac.compare_digest(t.token.encode(), given_b) and found is None:
            found = t
    return found


def issue(
    key: bytes, kind: str, name: str, role: str, secret: str, now: float, lifetime: int = LIFETIME_SECONDS
) -> tuple[str, UiSession]:
    """A cookie value and its session; `secret` is what must stay unchanged for it to hold."""
    session = UiSession(name, role, secrets.token_urlsafe(12), int(now) + lifetime, kind)
    payload = _b64(
        json.dumps(
            [kind, name, role, session.sid, session.expires, _fingerprint(key, kind, secret)], separators=(",", ":")
        ).encode()
    )
    return f"{payload}.{_b64(_mac(key, b'cookie', payload.encode()))}", session


def parse(key: bytes, value: str | None, now: float) -> tuple[UiSession, str] | None:
    """The session a cookie claims and its fingerprint, or None (unsigned, tampered or expired)."""
    if not value or value.count(".") != 1:
        return None
    payload, mac = value.split(".")
    try:
        if not hmac.compare_digest(_unb64(mac), _mac(key, b"cookie", payload.encode())):
            return None
        kind, name, role, sid, expires, fingerprint = json.loads(_unb64(payload))
        if kind not in ("user", "token") or not all(isinstance(v, str) for v in (name, role, sid, fingerprint)):
            return None
        if now >= int(expires):
            return None
    except (ValueError, TypeError):
        return None
    return UiSession(name, role, sid, int(expires), kind), fingerprint


def fingerprint_ok(key: bytes, session: UiSession, fingerprint: str, secret: str) -> bool:
    """Whether the secret behind the session is still the one it was issued under."""
    return hmac.compare_digest(_fingerprint(key, session.kind, secret), fingerprint)


def csrf_token(key: bytes, session: UiSession) -> str:
    return _b64(_mac(key, b"csrf", session.sid.encode()))


def csrf_ok(key: bytes, session: UiSession, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(csrf_token(key, session).encode(), given.encode())


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(encoded: str | None, password: str) -> bool:
    """Slow (argon2): call from a worker thread. An unknown user (None) costs the same and fails."""
    try:
        ok = _HASHER.verify(encoded or _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and encoded is not None


def flash_cookie(key: bytes, sid: str, kind: str, text: str) -> str:
    """A one-time message for one session, signed (no one else can plant words in the console)."""
    payload = _b64(json.dumps([sid, kind, text[:1500]], separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(key, b'flash', payload.encode()))}"


def read_flash(key: bytes, session: UiSession, value: str | None) -> tuple[str, str] | None:
    if not value or value.count(".") != 1:
        return None
    payload, mac = value.split(".")
    try:
        if not hmac.compare_digest(_unb64(mac), _mac(key, b"flash", payload.encode())):
            return None
        sid, kind, text = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    if sid != session.sid or kind not in ("ok", "warn") or not isinstance(text, str):
        return None
    return kind, text
