"""The id tags page, /ui/id-tags: who may charge (the RFID list), searched, with what a charger is answered now
and whether each tag is charging; admins add, block, unblock, set an expiry or a parent, and delete.

Every change goes through csms/services/id_tags.py, as the REST API's do: the same validation
(`record_from`), the audit row written with the change (the person's name as the actor), the same log when
a tag that is charging can no longer start a charge. Nothing here ends a session: a blocked or deleted tag's
open transaction goes on, and deleting a tag that is charging asks first, saying so.
The tag is a form field, not part of the URL: an id tag may hold any printable character, "/" too.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from csms.core.id_tags import STORABLE, IdTagStatus, normalise, record_from
from csms.services import id_tags
from csms.ui import auth
from csms.ui.web import Refused, checked_form, ctx_of, flash, page, redirect, signed_in

__all__ = ["router"]

log = logging.getLogger("csms.ui")
router = APIRouter(prefix="/ui", include_in_schema=False)
_LIST = "/ui/id-tags"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _back(q: str) -> str:
    """The list again, with the search it was changed from."""
    return f"{_LIST}?q={quote(q)}" if q else _LIST


def _expiry(text: str) -> str | None:
    """The form's expiry date (a date input: YYYY-MM-DD) as the ISO date-time stored: 00:00 UTC that day.
    Empty: no expiry. Anything else goes to `record_from` as typed, which says what is wrong with it."""
    text = text.strip()
    if not text:
        return None
    return f"{text}T00:00:00Z" if _DATE.fullmatch(text) else text


def _charging_words(open_tx: list[int]) -> str:
    txs = ", ".join(f"#{t}" for t in open_tx)
    return f"transaction{'s' if len(open_tx) > 1 else ''} {txs}"


def _goes_on(tag: str, open_tx: list[int]) -> str:
    """What happens to a tag's open session when the tag changes: nothing (said in plain words)."""
    if not open_tx:
        return ""
    return (
        f" {tag} is charging now ({_charging_words(open_tx)}): that session goes on; the charger learns "
        "the tag's new answer at its next Authorize or StopTransaction."
    )


async def _list_page(
    request: Request, session: auth.UiSession, q: str = "", *, status: int = 200, error: str | None = None
) -> Response:
    rows, total = await id_tags.listing(ctx_of(request), q[:40])
    return page(
        request,
        "id_tags.html",
        session,
        status=status,
        rows=rows,
        total=total,
        q=q[:40],
        error=error,
        statuses=[s.value for s in STORABLE],
        accept_unknown=ctx_of(request).settings.accept_unknown_id_tags,
    )


@router.get("/id-tags")
async def id_tags_page(request: Request, q: str = "") -> Response:
    """Everyone signed in sees the list; only admins get its forms (`may(who.role, 'admin')` in the template)."""
    # The list is who may charge (RFID credentials): operators look tags up, viewers do not see them.
    return await _list_page(request, await signed_in(request, "operator"), q)


@router.post("/id-tags")
async def add_id_tag(request: Request) -> Response:
    session = await signed_in(request, "admin")
    form = await checked_form(request, session)
    q = form.get("q", "")
    try:
        record = record_from(
            form.get("id_tag", ""),
            form.get("status", "Accepted"),
            _expiry(form.get("expiry", "")),
            form.get("parent", "").strip() or None,
        )
    except ValueError as exc:
        return await _list_page(request, session, q, status=400, error=f"Not added: {exc}.")
    ctx = ctx_of(request)
    done = await id_tags.save(ctx, record, session.name, create_only=True)
    if done.existed:
        return await _list_page(
            request, session, q, status=409, error=f"Not added: {record.id_tag} is in the list already."
        )
    answer = id_tags.answer_now(ctx, record).status.value
    flash(
        request,
        session,
        "warn" if done.open_transactions else "ok",
        f"Added {record.id_tag} ({record.status.value}): chargers are answered {answer} for it from now."
        + _goes_on(record.id_tag, done.open_transactions),
    )
    return redirect(_back(q))


async def _admin_form(request: Request) -> tuple[auth.UiSession, dict[str, str], str, str]:
    """The admin, the checked form, the tag it names and the search it came from."""
    session = await signed_in(request, "admin")
    form = await checked_form(request, session)
    return session, form, normalise(form.get("tag", "")), form.get("q", "")


async def _change(
    request: Request,
    what: str,
    *,
    status: str | id_tags.Keep = id_tags.KEEP,
    expiry_date: str | None | id_tags.Keep = id_tags.KEEP,
    parent_id_tag: str | None | id_tags.Keep = id_tags.KEEP,
) -> Response:
    """One change to one listed tag (the form's `tag`), then the list with a flash saying what it did."""
    session, _form, tag, q = await _admin_form(request)
    ctx = ctx_of(request)
    done = await id_tags.change(
        ctx, tag, session.name, status=status, expiry_date=expiry_date, parent_id_tag=parent_id_tag
    )
    if done.record is None:
        status_code = 400 if done.existed else 404
        return await _list_page(request, session, q, status=status_code, error=f"{tag} not changed: {done.problem}.")
    answer = id_tags.answer_now(ctx, done.record)
    said = f"{what} {tag}: chargers are answered {answer.status.value} for it from now."
    if answer.status is IdTagStatus.EXPIRED and done.record.status is IdTagStatus.ACCEPTED:
        said += " (Its expiry date has passed: clear or move it to let it charge.)"
    kind = "warn" if done.open_transactions and answer.status is not IdTagStatus.ACCEPTED else "ok"
    flash(request, session, kind, said + _goes_on(tag, done.open_transactions))
    return redirect(_back(q))


@router.post("/id-tags/block")
async def block_id_tag(request: Request) -> Response:
    return await _change(request, "Blocked", status=IdTagStatus.BLOCKED.value)


@router.post("/id-tags/unblock")
async def unblock_id_tag(request: Request) -> Response:
    return await _change(request, "Unblocked", status=IdTagStatus.ACCEPTED.value)


@router.post("/id-tags/expiry")
async def set_expiry(request: Request) -> Response:
    """Set (a date) or clear (the Clear button) a tag's expiry date."""
    session, form, tag, q = await _admin_form(request)
    if "clear" in form:
        return await _change(request, "Cleared the expiry date of", expiry_date=None)
    expiry = _expiry(form.get("expiry", ""))
    if expiry is None:
        return await _list_page(request, session, q, status=400, error=f"{tag} not changed: pick a date, or Clear.")
    return await _change(request, "Set the expiry date of", expiry_date=expiry)


@router.post("/id-tags/parent")
async def set_parent(request: Request) -> Response:
    """Set or clear (the Clear button, or an empty field) a tag's parent id tag (its group)."""
    _session, form, _tag, _q = await _admin_form(request)
    parent = None if "clear" in form else form.get("parent", "").strip() or None
    if parent is None:
        return await _change(request, "Cleared the parent of", parent_id_tag=None)
    return await _change(request, f"Set parent {normalise(parent)} of", parent_id_tag=parent)


@router.post("/id-tags/delete")
async def delete_id_tag(request: Request) -> Response:
    """Delete at once, unless the tag is charging now: then a page says the session is not ended by it and
    asks to confirm (`confirm=yes`)."""
    session, form, tag, q = await _admin_form(request)
    ctx = ctx_of(request)
    if form.get("confirm") != "yes":
        row = await id_tags.row(ctx, tag)
        if row is None:
            raise Refused(404, "Not found", f"{tag} is not in the id tag list (deleted meanwhile?).")
        if row.open_transactions:
            gone_answer = id_tags.answer_now(ctx, None).status.value
            return page(request, "id_tag_delete.html", session, row=row, q=q, back=_back(q), gone_answer=gone_answer)
    done = await id_tags.delete(ctx, tag, session.name)
    if not done.existed:
        raise Refused(404, "Not found", f"{tag} is not in the id tag list (deleted meanwhile?).")
    answer = id_tags.answer_now(ctx, None).status.value
    ended = (
        f" Its open session ({_charging_words(done.open_transactions)}) was NOT ended: it goes on until the car "
        "or the charger stops it."
        if done.open_transactions
        else ""
    )
    flash(
        request,
        session,
        "warn" if done.open_transactions else "ok",
        f"Deleted {tag}: chargers are answered {answer} for it from now.{ended}",
    )
    return redirect(_back(q))
