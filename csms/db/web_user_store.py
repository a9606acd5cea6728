"""Dashboard users and the shared cookie key: synchronous functions over a Session, one unit of work each."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from csms.db.models import RevokedSession, SiteSecret, WebUser

__all__ = [
    "UserRow",
    "get_user",
    "list_users",
    "add_user",
    "update_user",
    "session_key",
    "read_session_key",
    "admins_left",
    "revoke_session",
    "session_revoked",
]

_KEY = "ui_session_key"


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: datetime
    updated_at: datetime


def _row(u: WebUser) -> UserRow:
    return UserRow(u.name, u.role, u.password_hash, bool(u.disabled), u.created_at, u.updated_at)


def get_user(s: Session, name: str) -> UserRow | None:
    u = s.get(WebUser, name)
    return None if u is None else _row(u)


def list_users(s: Session) -> list[UserRow]:
    return [_row(u) for u in s.scalars(select(WebUser).order_by(WebUser.name))]


def add_user(s: Session, name: str, role: str, password_hash: str, now: datetime) -> bool:
    """False when the name is taken (nothing changed)."""
    if s.get(WebUser, name) is not None:
        return False
    s.add(WebUser(name=name, role=role, password_hash=password_hash, disabled=False, created_at=now, updated_at=now))
    return True


def update_user(
    s: Session,
    name: str,
    now: datetime,
    *,
    role: str | None = None,
    password_hash: str | None = None,
    disabled: bool | None = None,
) -> UserRow | None:
    u = s.get(WebUser, name)
    if u is None:
        return None
    if role is not None:
        u.role = role
    if password_hash is not None:
        u.password_hash = password_hash
    if disabled is not None:
        u.disabled = disabled
    u.updated_at = now
    return _row(u)


def admins_left(s: Session, *, without: str) -> int:
    """Enabled admins other than `without`: the last admin cannot be demoted or disabled."""
    return int(
        s.scalar(
            select(func.count())
            .select_from(WebUser)
            .where(WebUser.role == "admin", WebUser.disabled.is_(False), WebUser.name != without)
        )
        or 0
    )


def session_key(s: Session, now: datetime) -> bytes:
    """The cookie key, made on first use (a racing node's insert fails and it reads the winner's)."""
    row = s.get(SiteSecret, _KEY)
    if row is None:
        row = SiteSecret(name=_KEY, value=secrets.token_hex(32), created_at=now)
        s.add(row)
        s.flush()
    return bytes.fromhex(row.value)


def read_session_key(s: Session) -> bytes | None:
    row = s.get(SiteSecret, _KEY)
    return None if row is None else bytes.fromhex(row.value)


def revoke_session(s: Session, sid: str, expires: datetime, now: datetime) -> None:
    """Sign-out: the session is refused everywhere until its cookie would have expired anyway."""
    s.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
    if s.get(RevokedSession, sid) is None:
        s.add(RevokedSession(sid=sid, expires_at=expires))


def session_revoked(s: Session, sid: str) -> bool:
    return s.get(RevokedSession, sid) is not None
