"""/api/id-tags: the id tag list (admins). Authorize and StartTransaction answer from it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field
from sqlalchemy.orm import Session

from csms.api.auth import Admin
from csms.api.envelope import ApiError, CamelModel, ok
from csms.core.id_tags import IdTagRecord, IdTagStatus, decide, normalise, record_from
from csms.core.times import iso
from csms.db import id_tag_store
from csms.db.cleanup_store import audit
from csms.errors import IdTagNotAcceptedError
from csms.metrics import START_REFUSED

__all__ = ["router", "tag_view", "check_tag_for_start"]

router = APIRouter(prefix="/api/id-tags", tags=["id tags"])
log = logging.getLogger("csms.id_tags")


class IdTagFields(CamelModel):
    status: str = Field(default="Accepted", description="Accepted, Blocked, Expired or Invalid")
    expiry_date: str | None = Field(default=None, description="ISO 8601; an Accepted tag past it answers Expired")
    parent_id_tag: str | None = Field(default=None, max_length=20)


class IdTagIn(IdTagFields):
    id_tag: str = Field(min_length=1, max_length=20)


async def check_tag_for_start(ctx, id_tag: str) -> None:
    """The REST start (and a paid reservation) asks the list before anything reaches the charge point."""
    now = ctx.clock.now()
    info = await ctx.db.read(
        lambda s: id_tag_store.judge(
            s, id_tag, now=now, accept_unknown=ctx.settings.accept_unknown_id_tags, check_concurrent=True
        )
    )
    if not info.accepted:
        START_REFUSED.labels("IdTagNotAccepted").inc()
        log.warning("start.refused code=IdTagNotAccepted id_tag=%s status=%s", id_tag, info.status.value)
        raise IdTagNotAcceptedError(id_tag, info.status.value)


def tag_view(r: IdTagRecord) -> dict[str, Any]:
    return {
        "idTag": r.id_tag,
        "status": r.status.value,
        "expiryDate": iso(r.expiry_date),
        "parentIdTag": r.parent_id_tag,
    }


def _record(id_tag: str, body: IdTagFields) -> IdTagRecord:
    try:
        return record_from(id_tag, body.status, body.expiry_date, body.parent_id_tag)
    except ValueError as exc:
        raise ApiError(400, f"Invalid request data: {exc}") from None


def _save(record: IdTagRecord, actor: str, now, *, create_only: bool):
    def work(s: Session) -> tuple[bool, IdTagRecord | None, list[int]]:
        existed = id_tag_store.lookup(s, record.id_tag) is not None
        saved = id_tag_store.upsert(s, record, now, create_only=create_only)
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
        return existed, saved, id_tag_store.open_transactions_of(s, record.id_tag)

    return work


def _log_if_charging(ctx, record: IdTagRecord | None, id_tag: str, open_tx: list[int], why: str) -> None:
    """A tag that can no longer start a charge while it is charging: said, not acted on (the car keeps
    its energy; the charge point learns at the next Authorize or StopTransaction)."""
    info = decide(record, now=ctx.clock.now(), accept_unknown=ctx.settings.accept_unknown_id_tags)
    if open_tx and info.status is not IdTagStatus.ACCEPTED:
        log.warning(
            "id_tag.not_accepted_mid_session id_tag=%s status=%s transactions=%s (%s; the transactions "
            "go on, nothing is force-ended)",
            id_tag,
            info.status.value,
            ",".join(map(str, open_tx)),
            why,
        )


@router.post("", status_code=201)
async def create_id_tag(body: IdTagIn, request: Request, who: Admin):
    ctx = request.app.state.ctx
    record = _record(body.id_tag, body)
    existed, saved, _ = await ctx.db.write(_save(record, who.name, ctx.clock.now(), create_only=True))
    if existed:
        raise ApiError(409, f"Id tag {record.id_tag} already exists; PUT /api/id-tags/{record.id_tag} changes it")
    log.info("id_tag.created id_tag=%s status=%s by=%s", record.id_tag, record.status.value, who.name)
    return ok(tag_view(record), "Id tag created", status=201)


@router.get("")
async def list_id_tags(request: Request, who: Admin):
    rows = await request.app.state.ctx.db.read(id_tag_store.list_tags)
    return ok([tag_view(r) for r in rows])


@router.get("/{id_tag}")
async def get_id_tag(id_tag: str, request: Request, who: Admin):
    ctx = request.app.state.ctx
    tag = normalise(id_tag)
    record, open_tx = await ctx.db.read(
        lambda s: (id_tag_store.lookup(s, tag), id_tag_store.open_transactions_of(s, tag))
    )
    if record is None:
        raise ApiError(404, f"Id tag {tag} is not in the list")
    answer = decide(
        record,
        now=ctx.clock.now(),
        accept_unknown=ctx.settings.accept_unknown_id_tags,
        in_another_transaction=bool(open_tx),
    )
    return ok(tag_view(record) | {"openTransactions": open_tx, "answerNow": answer.status.value})


@router.put("/{id_tag}", responses={201: {"description": "Created: the id tag did not exist"}})
async def put_id_tag(id_tag: str, body: IdTagFields, request: Request, who: Admin):
    ctx = request.app.state.ctx
    record = _record(id_tag, body)
    existed, _, open_tx = await ctx.db.write(_save(record, who.name, ctx.clock.now(), create_only=False))
    log.info(
        "id_tag.%s id_tag=%s status=%s by=%s",
        "updated" if existed else "created",
        record.id_tag,
        record.status.value,
        who.name,
    )
    _log_if_charging(ctx, record, record.id_tag, open_tx, f"changed by {who.name}")
    return ok(tag_view(record), "Id tag updated" if existed else "Id tag created", status=200 if existed else 201)


@router.delete("/{id_tag}")
async def delete_id_tag(id_tag: str, request: Request, who: Admin):
    ctx = request.app.state.ctx
    tag = normalise(id_tag)
    now = ctx.clock.now()

    def work(s: Session) -> tuple[bool, list[int]]:
        gone = id_tag_store.delete(s, tag)
        if gone:
            audit(s, actor=who.name, action="id_tag.deleted", at=now, subject=tag)
        return gone, id_tag_store.open_transactions_of(s, tag)

    gone, open_tx = await ctx.db.write(work)
    if not gone:
        raise ApiError(404, f"Id tag {tag} is not in the list")
    log.info("id_tag.deleted id_tag=%s by=%s", tag, who.name)
    _log_if_charging(ctx, None, tag, open_tx, f"deleted by {who.name}")
    return ok({"idTag": tag}, "Id tag deleted")
