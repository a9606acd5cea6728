"""Changing the id tag list: one rule for the REST API (csms/api/id_tags.py) and the console (csms/ui/id_tags.py).

Validation is `csms.core.id_tags.record_from`'s; a change is written with its audit row in the same
transaction, the person's name as the actor; a tag that can no longer start a charge while it is in an
open transaction is logged, and that transaction goes on (nothing here ends a session: the charge point
learns at its next Authorize or StopTransaction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csms.context import Context
from csms.core.id_tags import IdTagInfo, IdTagRecord, IdTagStatus, decide, match_key, normalise, record_from
from csms.core.times import iso
from csms.db import id_tag_store
from csms.db.audit import audit
from csms.db.models import IdTag, Transaction

__all__ = [
    "KEEP",
    "Keep",
    "Saved",
    "TagRow",
    "answer_now",
    "change",
    "delete",
    "listing",
    "log_if_charging",
    "row",
    "save",
]

log = logging.getLogger("csms.id_tags")


class Keep(Enum):
    """A field `change` leaves as it is (None clears an expiry date or a parent)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class Saved:
    """What a save or a change did: whether the tag was listed before, the record now stored (None: nothing
    was written), the open transactions started with it, and why not, in words, when nothing was."""

    existed: bool
    record: IdTagRecord | None
    open_transactions: list[int] = field(default_factory=list)
    problem: str | None = None


@dataclass(frozen=True)
class TagRow:
    """One line of the console's list: the stored tag, what a charger is answered now, and its open
    transactions (charging now)."""

    record: IdTagRecord
    answer: IdTagInfo
    open_transactions: list[int]


def answer_now(ctx: Context, record: IdTagRecord | None) -> IdTagInfo:
    """What an Authorize is answered for this tag now (no ConcurrentTx: that is a StartTransaction's)."""
    return decide(record, now=ctx.clock.now(), accept_unknown=ctx.settings.accept_unknown_id_tags)


def log_if_charging(ctx: Context, record: IdTagRecord | None, id_tag: str, open_tx: list[int], why: str) -> None:
    """A tag that can no longer start a charge while it is charging: said, not acted on (the car keeps
    its energy; the charge point learns at the next Authorize or StopTransaction)."""
    info = answer_now(ctx, record)
    if open_tx and info.status is not IdTagStatus.ACCEPTED:
        log.warning(
            "id_tag.not_accepted_mid_session id_tag=%s status=%s transactions=%s (%s; the transactions "
            "go on, nothing is force-ended)",
            id_tag,
            info.status.value,
            ",".join(map(str, open_tx)),
            why,
        )


def _write(s: Session, record: IdTagRecord, actor: str, now: datetime, existed: bool, **how: Any) -> IdTagRecord | None:
    """Store one tag and its audit row together; None when `how` (create_only, update_only) refused it."""
    saved = id_tag_store.upsert(s, record, now, **how)
    if saved is not None:
        audit(
            s,
            actor=actor,
            action="id_tag.updated" if existed else "id_tag.created",
            at=now,
            subject=record.id_tag,
            status=record.status.value,
            expiryDate=iso(record.expiry_date),
            parentIdTag=record.parent_id_tag,
        )
    return saved


async def save(ctx: Context, record: IdTagRecord, actor: str, *, create_only: bool = False) -> Saved:
    """Create or replace a whole tag (REST POST and PUT, the console's "Add"); `create_only` leaves an
    existing one as it is (`Saved.record` None)."""
    now = ctx.clock.now()

    def work(s: Session) -> Saved:
        existed = id_tag_store.lookup(s, record.id_tag) is not None
        saved = _write(s, record, actor, now, existed, create_only=create_only)
        return Saved(existed, saved, id_tag_store.open_transactions_of(s, record.id_tag))

    done = await ctx.db.write(work)
    if done.record is not None:
        verb = "updated" if done.existed else "created"
        log.info("id_tag.%s id_tag=%s status=%s by=%s", verb, record.id_tag, record.status.value, actor)
        log_if_charging(ctx, done.record, record.id_tag, done.open_transactions, f"changed by {actor}")
    return done


async def change(
    ctx: Context,
    id_tag: str,
    actor: str,
    *,
    status: str | Keep = KEEP,
    expiry_date: str | datetime | None | Keep = KEEP,
    parent_id_tag: str | None | Keep = KEEP,
) -> Saved:
    """Change some fields of a listed tag (block, unblock, expiry, parent), the rest as stored: read and
    written in one transaction, so two people changing two fields at once both count. A tag that is not
    listed, or a value `record_from` refuses, writes nothing and says why in `Saved.problem`."""
    tag = normalise(id_tag)
    now = ctx.clock.now()

    def work(s: Session) -> Saved:
        current = id_tag_store.lookup(s, tag)
        if current is None:
            return Saved(False, None, problem=f"{tag} is not in the list (deleted meanwhile?)")
        try:
            record = record_from(
                current.id_tag,
                current.status.value if isinstance(status, Keep) else status,
                current.expiry_date if isinstance(expiry_date, Keep) else expiry_date,
                current.parent_id_tag if isinstance(parent_id_tag, Keep) else parent_id_tag,
            )
        except ValueError as exc:
            return Saved(True, None, problem=str(exc))
        saved = _write(s, record, actor, now, True, update_only=True)
        return Saved(True, saved, id_tag_store.open_transactions_of(s, tag))

    done = await ctx.db.write(work)
    if done.record is not None:
        log.info("id_tag.updated id_tag=%s status=%s by=%s", tag, done.record.status.value, actor)
        log_if_charging(ctx, done.record, tag, done.open_transactions, f"changed by {actor}")
    return done


async def delete(ctx: Context, id_tag: str, actor: str) -> Saved:
    """Take a tag off the list (audited); `Saved.existed` False when it was not listed. Its open
    transactions go on: chargers are answered Invalid (or Accepted on a lab bench) from now."""
    tag = normalise(id_tag)
    now = ctx.clock.now()

    def work(s: Session) -> Saved:
        gone = id_tag_store.delete(s, tag)
        if gone:
            audit(s, actor=actor, action="id_tag.deleted", at=now, subject=tag)
        return Saved(gone, None, id_tag_store.open_transactions_of(s, tag))

    done = await ctx.db.write(work)
    if done.existed:
        log.info("id_tag.deleted id_tag=%s by=%s", tag, actor)
        log_if_charging(ctx, None, tag, done.open_transactions, f"deleted by {actor}")
    return done


def _open_transactions(s: Session) -> dict[str, list[int]]:
    """Every open transaction by its tag's `match_key` (see `_charging`)."""
    out: dict[str, list[int]] = {}
    query = select(Transaction.id, Transaction.id_tag).where(Transaction.stop_time.is_(None))
    for tx_id, tx_tag in s.execute(query.order_by(Transaction.id)):
        out.setdefault(match_key(tx_tag), []).append(tx_id)
    return out


def _charging(by_tag: dict[str, list[int]], id_tag: str) -> list[int]:
    """A tag's open transactions by the store's rule (`match_key`), so the list, delete and ConcurrentTx agree."""
    return sorted(by_tag.get(match_key(id_tag), []))


def _listing(q: str, limit: int) -> Callable[[Session], tuple[list[IdTagRecord], int, dict[str, list[int]]]]:
    """The tags whose id or parent holds `q` (first `limit`, by id), how many match, open transactions by tag."""

    def read(s: Session) -> tuple[list[IdTagRecord], int, dict[str, list[int]]]:
        query = select(IdTag).order_by(IdTag.id_tag)
        if q:
            needle = normalise(q)
            query = query.where(
                IdTag.id_tag.contains(needle, autoescape=True) | IdTag.parent_id_tag.contains(needle, autoescape=True)
            )
        rows = list(s.scalars(query.limit(limit + 1)))  # one more: whether there are more
        total = len(rows)
        if total > limit:
            total = s.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
        charging = _open_transactions(s)
        records = [IdTagRecord(r.id_tag, IdTagStatus(r.status), r.expiry_date, r.parent_id_tag) for r in rows[:limit]]
        return records, total, charging

    return read


async def listing(ctx: Context, q: str = "", limit: int = 500) -> tuple[list[TagRow], int]:
    """The console's list (substring search on the id and the parent, case-insensitive) and how many match."""
    records, total, charging = await ctx.db.read(_listing(q, limit))
    rows = [TagRow(r, answer_now(ctx, r), _charging(charging, r.id_tag)) for r in records]
    return rows, total


async def row(ctx: Context, id_tag: str) -> TagRow | None:
    """One listed tag as the console's list shows it; None when it is not listed."""
    tag = normalise(id_tag)
    record, charging = await ctx.db.read(
        lambda s: (id_tag_store.lookup(s, tag), id_tag_store.open_transactions_of(s, tag))
    )
    return None if record is None else TagRow(record, answer_now(ctx, record), charging)
