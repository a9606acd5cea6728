"""Rows of idempotency_keys: the claim (one insert wins, cluster-wide), the answer, the pruning."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from csms.core.idempotency import Claim
from csms.db.database import rowcount
from csms.db.models import IdempotencyKey

__all__ = ["Stored", "claim", "answer", "finish", "release", "prune"]


def claim(s: Session, key: str, fingerprint: str, now: datetime) -> Claim | None:
    """None when this call inserted the key (the command is ours to run); else the row another left."""
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"key": key, "fingerprint": fingerprint, "state": "running", "created_at": now}
    stmt = insert(IdempotencyKey).values(**values).on_conflict_do_nothing(index_elements=["key"])
    for _ in range(3):  # a row given back (or pruned) between the two statements: insert again
        if s.execute(stmt.returning(IdempotencyKey.key)).first() is not None:  # ORM inserts give no rowcount
            return None
        query = select(IdempotencyKey.fingerprint, IdempotencyKey.state).where(IdempotencyKey.key == key)
        row = s.execute(query).first()
        if row is not None:
            return Claim(row.fingerprint, row.state == "done")
    raise RuntimeError(f"idempotency key {key!r} came and went three times in one claim")


class Stored:
    """A kept answer, for a replay."""

    __slots__ = ("status", "content_type", "body")

    def __init__(self, status: int, content_type: str | None, body: str) -> None:
        self.status, self.content_type, self.body = status, content_type, body


def answer(s: Session, key: str) -> Stored | None:
    row = s.get(IdempotencyKey, key)
    if row is None or row.state != "done" or row.status is None:
        return None
    return Stored(row.status, row.content_type, row.body or "")


def finish(s: Session, key: str, status: int, content_type: str | None, body: str, now: datetime) -> None:
    s.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.key == key)
        .values(state="done", status=status, content_type=content_type, body=body, finished_at=now)
    )


def release(s: Session, key: str) -> None:
    """Give the key back: the command did not run (its answer says so: csms.core.idempotency.kept_answer)."""
    s.execute(delete(IdempotencyKey).where(IdempotencyKey.key == key, IdempotencyKey.state == "running"))


def prune(s: Session, before: datetime) -> int:
    return rowcount(s.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before)))
