"""/api/id-tags: the id tag list (admins). Authorize and StartTransaction answer from it.

Saving, changing and deleting are csms/services/id_tags.py's (the console's id tags page does the same);
here: HTTP in and out."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from csms.api.auth import Admin
from csms.api.envelope import ApiError, CamelModel, ok
from csms.core.id_tags import IdTagRecord, decide, normalise, record_from
from csms.core.times import iso
from csms.db import id_tag_store
from csms.errors import IdTagNotAcceptedError
from csms.metrics import START_REFUSED
from csms.services import id_tags

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


@router.post("", status_code=201)
async def create_id_tag(body: IdTagIn, request: Request, who: Admin):
    record = _record(body.id_tag, body)
    done = await id_tags.save(request.app.state.ctx, record, who.name, create_only=True)
    if done.existed:
        raise ApiError(409, f"Id tag {record.id_tag} already exists; PUT /api/id-tags/{record.id_tag} changes it")
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
    record = _record(id_tag, body)
    existed = (await id_tags.save(request.app.state.ctx, record, who.name)).existed
    return ok(tag_view(record), "Id tag updated" if existed else "Id tag created", status=200 if existed else 201)


@router.delete("/{id_tag}")
async def delete_id_tag(id_tag: str, request: Request, who: Admin):
    tag = normalise(id_tag)
    if not (await id_tags.delete(request.app.state.ctx, tag, who.name)).existed:
        raise ApiError(404, f"Id tag {tag} is not in the list")
    return ok({"idTag": tag}, "Id tag deleted")
