"""Rows of webhook_outbox: events written by any node, taken and marked by the one that delivers them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from csms.db.models import WebhookOutbox

__all__ = ["Queued", "Dropped", "enqueue", "take", "mark", "requeue_sending", "pending_counts", "prune"]


@dataclass(frozen=True)
class Queued:
    """An event for one receiver, as a delivering node takes it."""

    row_id: int
    event_id: str
    receiver: str
    type: str
    body: str
    attempts: int


@dataclass(frozen=True)
class Dropped:
    event_id: str
    receiver: str
    type: str


def enqueue(
    s: Session, rows: Iterable[tuple[str, str, str, str]], now: datetime, *, queue_size: int
) -> tuple[list[Dropped], dict[str, int]]:
    """(event id, receiver, type, body) rows, each once (a row already there stays as it is); then each
    receiver's pending rows beyond `queue_size`, oldest first, are dropped (its receiver is too slow or down).
    Returns the dropped ones and each receiver's pending rows after."""
    values: list[dict[str, object]] = [
        {
            "event_id": event_id,
            "receiver": receiver,
            "type": type_,
            "body": body,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for event_id, receiver, type_, body in rows
    ]
    if not values:
        return [], {}
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    s.execute(insert(WebhookOutbox).values(values).on_conflict_do_nothing(index_elements=["event_id", "receiver"]))
    dropped: list[Dropped] = []
    pending: dict[str, int] = {}
    for receiver in sorted({str(v["receiver"]) for v in values}):
        over = s.execute(
            select(WebhookOutbox.id, WebhookOutbox.event_id, WebhookOutbox.type)
            .where(WebhookOutbox.receiver == receiver, WebhookOutbox.state == "pending")
            .order_by(WebhookOutbox.id.desc())
            .offset(queue_size)
        ).all()
        if over:
            s.execute(
                update(WebhookOutbox)
                .where(WebhookOutbox.id.in_([r.id for r in over]), WebhookOutbox.state == "pending")
                .values(state="dropped", updated_at=now)
            )
            dropped += [Dropped(r.event_id, receiver, r.type) for r in reversed(over)]
        pending[receiver] = int(
            s.scalar(select(func.count()).where(WebhookOutbox.receiver == receiver, WebhookOutbox.state == "pending"))
            or 0
        )
    return dropped, pending


def take(s: Session, receiver: str, now: datetime, limit: int) -> list[Queued]:
    """The receiver's oldest pending rows, marked sending: this node delivers them."""
    rows = s.execute(
        select(WebhookOutbox)
        .where(WebhookOutbox.receiver == receiver, WebhookOutbox.state == "pending")
        .order_by(WebhookOutbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # two holders for a moment (a handover) take different rows
    ).scalars()
    out = []
    for r in rows:
        r.state, r.updated_at = "sending", now
        out.append(Queued(r.id, r.event_id, r.receiver, r.type, r.body, r.attempts))
    return out


def mark(s: Session, row_id: int, state: str, attempts: int, now: datetime) -> None:
    """After an attempt: `sending` again (a retry follows), `delivered` or `failed`."""
    s.execute(  # only a row still being sent: a former holder's late mark cannot undo the new one's
        update(WebhookOutbox)
        .where(WebhookOutbox.id == row_id, WebhookOutbox.state == "sending")
        .values(state=state, attempts=attempts, updated_at=now)
    )


def requeue_sending(s: Session, receiver: str) -> int:
    """Rows a delivering node took and did not finish (it died, or lost the duties): pending again, so they
    are sent again (at least once: the receiver de-duplicates by event id)."""
    result = s.execute(
        update(WebhookOutbox)
        .where(WebhookOutbox.receiver == receiver, WebhookOutbox.state == "sending")
        .values(state="pending")
    )
    return int(getattr(result, "rowcount", 0) or 0)


def pending_counts(s: Session) -> dict[str, int]:
    """Each receiver's rows waiting to be taken (not the one being delivered)."""
    rows = s.execute(
        select(WebhookOutbox.receiver, func.count())
        .where(WebhookOutbox.state == "pending")
        .group_by(WebhookOutbox.receiver)
    ).all()
    return {receiver: int(n) for receiver, n in rows}


def prune(s: Session, before: datetime) -> int:
    """Delivered, failed and dropped rows older than `before` (pending ones stay, however old)."""
    result = s.execute(
        delete(WebhookOutbox).where(
            WebhookOutbox.created_at < before, WebhookOutbox.state.in_(("delivered", "failed", "dropped"))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
