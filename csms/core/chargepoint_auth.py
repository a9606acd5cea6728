"""Who may open an OCPP connection: charge point ids, passwords, the handshake decision.

Pure (no trio, no database, no WebSocket library). OCPP 1.6 security profiles 1 and 2
(the 1.6 security whitepaper): HTTP Basic auth at the WebSocket handshake, the username
is the charge point id, the password is that charge point's own (its AuthorizationKey);
profile 2 is the same over TLS. Passwords are kept only as salted scrypt hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

__all__ = [
    "MAX_ID_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "charge_point_id_problem",
    "password_problem",
    "hash_password",
    "verify_password",
    "parse_basic_auth",
    "BadCredentialsError",
    "Admit",
    "Refuse",
    "Access",
    "decide_handshake",
    "UNIFORM_REFUSAL",
    "checks_a_password",
]

# Security whitepaper: the identity is at most 48 characters. Printable ASCII without ':'
# (RFC 7617: a Basic auth user-id cannot hold a colon) and without '/' (it is a path segment).
MAX_ID_LENGTH = 48
# The whitepaper's AuthorizationKey is 16 to 20 bytes, OCPP 2.0.1's BasicAuthPassword 16 to 40 characters.
MIN_PASSWORD_LENGTH = 16
MAX_PASSWORD_LENGTH = 40

# scrypt cost: 16 MiB and about 50 ms per check. Charger passwords are machine-made and at
# least 16 characters, so the hash guards a stolen database, not a guessable password; the
# parameters are stored with each hash, so they can be raised later without a migration.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCHEME = "scrypt"


def charge_point_id_problem(cp_id: str) -> str | None:
    """Why `cp_id` cannot be a charge point id (None: it can)."""
    if not cp_id:
        return "the charge point id is empty"
    if len(cp_id) > MAX_ID_LENGTH:
        return f"the charge point id is longer than {MAX_ID_LENGTH} characters"
    if any(not ("\x21" <= ch <= "\x7e") or ch in ":/" for ch in cp_id):
        return "the charge point id may hold printable ASCII characters only, no space, ':' or '/'"
    return None


def password_problem(password: str) -> str | None:
    """Why `password` cannot be a charge point password (None: it can)."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return f"a charge point password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
    if any(not ("\x21" <= ch <= "\x7e") for ch in password):
        return "a charge point password holds printable ASCII characters only (no spaces)"
    return None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64): a fresh 16-byte salt per charge point unless given."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"{_SCHEME}${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(encoded: str, password: str) -> bool:
    """Constant-time check of `password` against a stored `hash_password` string."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(expected, got)


class BadCredentialsError(ValueError):
    """An Authorization header that is not usable HTTP Basic credentials."""


def parse_basic_auth(header: str) -> tuple[str, str]:
    """`Basic base64(user:password)` -> (user, password); BadCredentialsError if malformed."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise BadCredentialsError("the Authorization header is not HTTP Basic")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentialsError("the Basic credentials are not base64 of UTF-8 text") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise BadCredentialsError("the Basic credentials have no ':' between user and password")
    return user, password


@dataclass(frozen=True)
class Access:
    """What the database knows about a charge point id, for the handshake."""

    known: bool
    password_hash: str | None = None


@dataclass(frozen=True)
class Admit:
    authenticated: bool  # False: lab mode let a charge point without a password in
    registers: bool = False  # an unknown id that lab mode admits; its first boot registers it


@dataclass(frozen=True)
class Refuse:
    status: int  # HTTP status of the refused handshake
    reason: str  # metric label and log key
    why: str  # for the log: what the charger's owner can do about it
    challenge: bool = False  # send WWW-Authenticate: Basic
    answer: str | None = None  # the response body, when it must say less than `why`; else `why`

    @property
    def body(self) -> str:
        return self.why if self.answer is None else self.answer

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"WWW-Authenticate", b'Basic realm="OCPP", charset="UTF-8"')] if self.challenge else []


# Outside lab mode every refusal of who a charger is reads the same (401, this body): a stranger cannot
# tell an unknown id from a known one with no password or a wrong one. The log says which it was.
UNIFORM_REFUSAL = "unknown charge point or wrong credentials (HTTP Basic: user the charge point id, password its key)"


@cache
def _decoy_hash() -> str:
    """A password hash no charger has (fixed salt, made once): what a refusal without a stored hash checks."""
    return hash_password("no charge point has this password", salt=bytes(16))


def _check_a_decoy(cp_id: str, authorization: str | None, check_password: Callable[[str, str], bool]) -> None:
    """Spend on credentials for an id without a password what a wrong password of a provisioned id costs (one
    scrypt, ~60 ms): else the answer's time, not its body, would tell a stranger which ids have a password."""
    if authorization is None:
        return
    try:
        user, password = parse_basic_auth(authorization)
    except BadCredentialsError:
        return
    if user == cp_id:
        check_password(_decoy_hash(), password)


def checks_a_password(access: Access, authorization: str | None, *, lab_mode: bool) -> bool:
    """Whether `decide_handshake` will run a password check (slow: the server runs it in a worker thread)."""
    return access.password_hash is not None or (not lab_mode and authorization is not None)


def decide_handshake(
    cp_id: str,
    access: Access,
    authorization: str | None,
    *,
    lab_mode: bool,
    registration_slots_left: int,
    check_password: Callable[[str, str], bool] = verify_password,
) -> Admit | Refuse:
    """The handshake rules (docs/security.md), in order.

    A charge point with a password must present it, lab mode or not: a password set is
    never bypassed. Lab mode admits ids without a password (known or, while slots are
    left, unknown). Outside lab mode a charge point without a password is refused.
    """
    uniform = None if lab_mode else UNIFORM_REFUSAL
    if access.password_hash is not None:
        if authorization is None:
            return Refuse(
                401,
                "missing_credentials",
                "this charge point needs HTTP Basic credentials "
                "(user: the charge point id, password: its AuthorizationKey)",
                challenge=True,
                answer=uniform,
            )
        try:
            user, password = parse_basic_auth(authorization)
        except BadCredentialsError as exc:
            return Refuse(401, "bad_credentials", str(exc), challenge=True, answer=uniform)
        if user != cp_id or not check_password(access.password_hash, password):
            return Refuse(401, "bad_credentials", "wrong charge point id or password", challenge=True, answer=uniform)
        return Admit(authenticated=True)
    if not lab_mode:
        _check_a_decoy(cp_id, authorization, check_password)
    if access.known:
        if lab_mode:
            return Admit(authenticated=False)
        return Refuse(
            401,
            "no_password_set",
            "this charge point has no password yet; provision one "
            "(csms chargers add ID --password-stdin, or the REST API)",
            challenge=True,
            answer=uniform,
        )
    if not lab_mode:
        return Refuse(
            401,
            "unknown_charge_point",
            "unknown charge point; provision it (csms chargers add, POST /api/stations) "
            "or run a test bench with --allow-unknown-chargers",
            challenge=True,
            answer=uniform,
        )
    if registration_slots_left <= 0:
        return Refuse(
            404,
            "auto_register_limit",
            "unknown charge point, and lab mode registered as many charge points as --max-auto-registered allows",
        )
    return Admit(authenticated=False, registers=True)
