"""The id tag list in the database: look-ups for the handlers, CRUD for the API and the CLI."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csms.core.id_tags import IdTagInfo, IdTagRecord, IdTagStatus, decide, match_key, normalise
from csms.db.models import IdTag, Transaction

__all__ = ["lookup", "judge", "open_transactions_of", "list_tags", "upsert", "delete"]


def _record(row: IdTag) -> IdTagRecord:
    return IdTagRecord(row.id_tag, IdTagStatus(row.status), row.expiry_date, row.parent_id_tag)


def lookup(s: Session, id_tag: str) -> IdTagRecord | None:
    """The listed tag a charger's idTag names (`match_key`: case-insensitive, spaces count)."""
    row = s.get(IdTag, match_key(id_tag))
    return None if row is None else _record(row)


def open_transactions_of(s: Session, id_tag: str, *, excluding: int | None = None) -> list[int]:
    """Open transactions started with this tag by `match_key` (any ASCII case, every other character counts),
    folded in SQL: a transaction opened as "GoodTag" must count for a "GOODTAG" start, which comparing a few
    spellings missed. ix_transactions_tag_key_open keeps it a look-up."""
    q = select(Transaction.id).where(
        func.upper(Transaction.id_tag) == match_key(id_tag), Transaction.stop_time.is_(None)
    )
    if excluding is not None:
        q = q.where(Transaction.id != excluding)
    return list(s.scalars(q.order_by(Transaction.id)))


def judge(
    s: Session,
    id_tag: str,
    *,
    now: datetime,
    accept_unknown: bool,
    starting: int | None = None,
    check_concurrent: bool = False,
) -> IdTagInfo:
    """decide() with what the database knows; `starting` is the transaction being opened (not concurrent)."""
    tag = lookup(s, id_tag)
    busy = False
    if check_concurrent and tag is not None:
        busy = bool(open_transactions_of(s, id_tag, excluding=starting))
    return decide(tag, now=now, accept_unknown=accept_unknown, in_another_transaction=busy)


def list_tags(s: Session) -> list[IdTagRecord]:
    return [_record(r) for r in s.scalars(select(IdTag).order_by(IdTag.id_tag))]


def upsert(
    s: Session, record: IdTagRecord, now: datetime, *, create_only: bool = False, update_only: bool = False
) -> IdTagRecord | None:
    """Insert or replace one tag; None when create_only and it exists, or update_only and it does not."""
    row = s.get(IdTag, record.id_tag)
    if row is None:
        if update_only:
            return None
        row = IdTag(id_tag=record.id_tag, created_at=now)
        s.add(row)
    elif create_only:
        return None
    row.status = record.status.value
    row.expiry_date = record.expiry_date
    row.parent_id_tag = record.parent_id_tag
    row.updated_at = now
    return record


def delete(s: Session, id_tag: str) -> bool:
    row = s.get(IdTag, normalise(id_tag))
    if row is None:
        return False
    s.delete(row)
    return True
