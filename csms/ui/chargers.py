"""The console's Chargers pages: every charge point in one table, one charger's facts, connectors, history and
actions (remote start and stop, availability, resets, its password).

Actions go through the same services and commands as the REST API (`csms.services.sessions`,
`csms.ocpp.commands.commands_for`, so OCPP 1.6 and 2.0.1 alike); every one is audited with the user's
name and answered in words in a flash. Those that end something (a stop, a reset, a new password) show
what they will end first. Actions that need the charger's connection are not offered while it is offline:
the page says since when instead of leading to an error page.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from csms.api.id_tags import check_tag_for_start
from csms.context import Context
from csms.core.billing import InvalidTariffError, parse_tariff
from csms.core.chargepoint_auth import MIN_PASSWORD_LENGTH, charge_point_id_problem, password_problem
from csms.core.tariffs import may_set_price
from csms.errors import CsmsError
from csms.ocpp.commands import commands_for
from csms.services import sessions
from csms.services.occupancy import Evaluation, evaluate_all
from csms.services.provisioning import provision
from csms.ui import auth
from csms.ui.chargers_store import ChargerDetail, ChargerRow, OpenTransaction, charger_detail, charger_rows
from csms.ui.web import (
    Refused,
    audit_action,
    checked_form,
    ctx_of,
    flash,
    page,
    redirect,
    signed_in,
    station_path,
)
from ocppj import OcppjError

__all__ = [
    "router",
    "Plug",
    "ChargerLine",
    "charger_lines",
    "sort_lines",
    "SORTS",
    "answer_words",
    "new_password",
    "real_connectors",
]

log = logging.getLogger("csms.ui")
router = APIRouter(prefix="/ui", include_in_schema=False)

RESET_KINDS = ("Soft", "Hard")
AVAILABILITY = ("Operative", "Inoperative")
_PASSWORD_ALPHABET = string.ascii_letters + string.digits  # printable, no quoting trouble in a charger's config
PASSWORD_LENGTH = 24  # ~142 bits; password_problem allows 16..40


# ------------------------------------------------------------------ functional core
@dataclass(frozen=True)
class Plug:
    """One connector as the list shows it: its number, its verdict, the link to its page."""

    connector_id: int
    verdict: str  # free, busy, offline
    href: str


@dataclass(frozen=True)
class ChargerLine:
    row: ChargerRow
    online: bool
    connected_at: datetime | None
    plugs: tuple[Plug, ...]

    @property
    def href(self) -> str:
        return charger_path(self.row.id)


def charger_path(cp_id: str) -> str:
    return f"/ui/chargers/{station_path(cp_id)}"


def connector_href(station_id: str, connector_id: int) -> str:
    return f"/ui/connectors/{station_path(station_id)}/{connector_id}"


def real_connectors(ids: Iterable[int]) -> list[int]:
    """Connector numbers as a person counts them: connector 0 is the charger itself, never a connector."""
    return sorted({c for c in ids if c > 0})


def charger_lines(
    rows: Iterable[ChargerRow], evaluations: Iterable[Evaluation], connected: Mapping[str, datetime]
) -> list[ChargerLine]:
    """The list's lines: each charger with its connectors' verdicts (from one occupancy pass) and whether
    it is connected (`connected`: charge point id -> connected since)."""
    verdicts: dict[str, dict[int, str]] = {}
    for ev in evaluations:
        if ev.connector_id > 0:
            verdicts.setdefault(ev.charge_point_id, {})[ev.connector_id] = ev.decision.verdict.value
    return [
        ChargerLine(
            r,
            r.id in connected,
            connected.get(r.id),
            tuple(Plug(n, v, connector_href(r.station_id, n)) for n, v in sorted(verdicts.get(r.id, {}).items())),
        )
        for r in rows
    ]


def _seen(line: ChargerLine) -> datetime | None:
    return line.row.last_seen_at


SORTS: dict[str, Callable[[ChargerLine], Any]] = {
    "id": lambda ln: ln.row.id.lower(),
    "state": lambda ln: (not ln.online, ln.row.id.lower()),
    "ocpp": lambda ln: ln.row.ocpp_version,
    "vendor": lambda ln: (ln.row.vendor or "").lower() or None,
    "model": lambda ln: (ln.row.model or "").lower() or None,
    "firmware": lambda ln: ln.row.firmware,
    "serial": lambda ln: ln.row.serial,
    "boot": lambda ln: ln.row.last_boot_at,
    "seen": _seen,
    "password": lambda ln: (not ln.row.password_set, ln.row.id.lower()),
}


def sort_lines(lines: list[ChargerLine], key: str, desc: bool) -> list[ChargerLine]:
    """Sorted by one column; charges without a value (never booted, no vendor) last either way, then by id."""
    by = SORTS.get(key, SORTS["id"])
    known = [ln for ln in lines if by(ln) is not None]
    unknown = [ln for ln in lines if by(ln) is None]
    known.sort(key=lambda ln: ln.row.id.lower())
    known.sort(key=by, reverse=desc)  # stable: ties stay by id
    return known + sorted(unknown, key=lambda ln: ln.row.id.lower())


_ANSWERS = {
    "Accepted": "accepted",
    "Rejected": "refused",
    "Scheduled": "scheduled: it takes effect when the transaction running there ends",
    "NotSupported": "not supported by this charger",
    "NotImplemented": "not implemented by this charger",
}


def answer_words(answer: str) -> str:
    """A charger's answer as words: Accepted -> accepted; an error as it came."""
    return _ANSWERS.get(answer, answer)


def new_password(choice: Callable[[str], str] = secrets.choice, length: int = PASSWORD_LENGTH) -> str:
    """A strong random charger password that `password_problem` accepts."""
    password = "".join(choice(_PASSWORD_ALPHABET) for _ in range(max(length, MIN_PASSWORD_LENGTH)))
    assert password_problem(password) is None
    return password


def _kwh(wh: int | None) -> str:
    return "no meter value yet" if wh is None else f"{wh / 1000:.3f} kWh"


# ------------------------------------------------------------------ imperative shell
def _connected(ctx: Context) -> dict[str, datetime]:
    return {live.id: live.connected_at for live in ctx.registry.all_live()}


@router.get("/chargers")
async def chargerspage(request: Request, q: str = "", sort: str = "id", desc: bool = False):
    session = await signed_in(request)
    ctx = ctx_of(request)
    q, sort = q.strip()[:64], sort if sort in SORTS else "id"
    rows = await ctx.db.read(lambda s: charger_rows(s, q))
    evaluations = await evaluate_all(ctx)
    lines = sort_lines(charger_lines(rows, evaluations, _connected(ctx)), sort, desc)
    return page(
        request,
        "chargers.html",
        session,
        lines=lines,
        q=q,
        sort=sort,
        desc=desc,
        online=sum(1 for ln in lines if ln.online),
    )


@router.post("/chargers")
async def add_charger(request: Request) -> Response:
    """A new charger from the console (what `csms chargers add ID --password-stdin` does): its id, a station of
    the same id, and a random password shown once."""
    session = await signed_in(request, "admin")
    form = await checked_form(request, session)
    cp_id = form.get("id", "").strip()
    problem = charge_point_id_problem(cp_id)
    if problem:
        flash(request, session, "warn", f"Not added: {problem}.")
        return redirect("/ui/chargers")
    ctx = ctx_of(request)
    if await ctx.db.read(lambda s: charger_detail(s, cp_id)) is not None:
        flash(request, session, "warn", f"Not added: {cp_id} is registered already; set a new password on its page.")
        return redirect(charger_path(cp_id))
    password = new_password()
    await provision(ctx, cp_id, password, actor=session.name, create_station=True, via="console")
    return page(
        request,
        "charger_password.html",
        session,
        cp_id=cp_id,
        password=password,
        rotated=False,
        was_online=False,
        base=charger_path(cp_id),
    )


async def _detail(ctx: Context, cp_id: str) -> ChargerDetail:
    detail = await ctx.db.read(lambda s: charger_detail(s, cp_id))
    if detail is None:
        raise Refused(404, "Not found", f"No charge point {cp_id!r}.")
    return detail


def _offline_since(detail: ChargerDetail) -> datetime | None:
    """When it went away: its last disconnect in the audit log, else when it was last heard from."""
    return detail.disconnected_at or detail.row.last_seen_at


@router.get("/chargers/{cp_id}")
async def chargerpage(request: Request, cp_id: str):
    session = await signed_in(request)
    ctx = ctx_of(request)
    detail = await _detail(ctx, cp_id)
    live = ctx.registry.get(cp_id)
    evaluations = [e for e in await evaluate_all(ctx, charge_point_id_prefix=cp_id) if e.charge_point_id == cp_id]
    connectors = [
        {
            "id": e.connector_id,
            "verdict": e.decision.verdict.value,
            "live": None if e.live is None else e.live.status,
            "stored": None if e.stored.status is None else e.stored.status.status,
            "href": connector_href(detail.row.station_id, e.connector_id),
        }
        for e in evaluations
        if e.connector_id > 0
    ]
    return page(
        request,
        "charger.html",
        session,
        d=detail,
        r=detail.row,
        online=live is not None,
        connected_at=None if live is None else live.connected_at,
        offline_since=_offline_since(detail),
        connectors=connectors,
        base=charger_path(cp_id),
    )


def _back(form: Mapping[str, str], cp_id: str) -> str:
    """Where an action returns: the charger or connector page it came from, else the charger page."""
    back = form.get("back", "")
    ok = back.startswith(("/ui/chargers/", "/ui/connectors/")) and "//" not in back and "\\" not in back
    return back if ok else charger_path(cp_id)


def _live_or_flash(request: Request, session: auth.UiSession, cp_id: str):
    """The live connection, or None after flashing why nothing could be sent (the page then shows the offline state)."""
    live = ctx_of(request).registry.get(cp_id)
    if live is None:
        flash(request, session, "warn", f"{cp_id} is offline: nothing was sent. Try again when it is connected.")
    return live


def _int(value: str | None, low: int = 0, high: int = 100) -> int | None:
    try:
        n = int((value or "").strip())
    except ValueError:
        return None
    return n if low <= n <= high else None


@router.post("/chargers/{cp_id}/start")
async def remote_start(request: Request, cp_id: str):
    """Remote start exactly as POST /api/ChargingSession/start-charging-session: the id tag list first, then
    `sessions.start_session` (a session with its tariff, then RemoteStartTransaction)."""
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    detail = await _detail(ctx, cp_id)
    connector, id_tag = _int(form.get("connector"), 1), form.get("id_tag", "").strip()
    asked = form.get("tariff", "").strip()
    try:
        tariff: Decimal | None = parse_tariff(asked) if asked else None  # empty: the site's tariff
    except InvalidTariffError:
        asked, tariff = "invalid", None
    if connector is None or not 1 <= len(id_tag) <= 20 or asked == "invalid":
        flash(
            request,
            session,
            "warn",
            "Remote start needs a connector, an id tag (1-20 characters) and, if any, a tariff per kWh.",
        )
        return redirect(charger_path(cp_id))
    if _live_or_flash(request, session, cp_id) is None:
        return redirect(charger_path(cp_id))
    started = None
    try:
        await check_tag_for_start(ctx, id_tag)
        started = await sessions.start_session(
            ctx,
            station_id=detail.row.station_id,
            connector_id=connector,
            id_tag=id_tag,
            tariff=tariff,
            may_set_price=may_set_price(session.role),  # an operator starts at the site's tariff only
        )
        answer = "Accepted"
    except CsmsError as exc:
        answer = exc.message
    audit_action(
        ctx,
        session,
        "ui.remote_start",
        charge_point_id=cp_id,
        connector_id=connector,
        subject=id_tag,
        tariff=str(tariff if started is None else started.tariff),
        asked_tariff=asked or None,
        answer=answer,
        **({} if started is None else {"charging_session": started.session_id}),
    )
    if started is None:
        flash(request, session, "warn", f"Remote start on {cp_id} connector {connector} failed: {answer}.")
        return redirect(charger_path(cp_id))
    flash(
        request,
        session,
        "ok",
        f"Remote start on {cp_id} connector {connector} for {id_tag} at {started.tariff} per kWh: accepted "
        f"(session {started.session_id[:8]}). The transaction shows here when the charger starts it.",
    )
    return redirect(charger_path(cp_id))


def _transaction(detail: ChargerDetail, form: Mapping[str, str]) -> OpenTransaction:
    tx_id = _int(form.get("transaction"), 0, 2**63)
    found = next((t for t in detail.transactions if t.id == tx_id), None)
    if found is None:
        raise Refused(409, "Nothing to stop", f"{detail.row.id} has no open transaction {form.get('transaction')!r}.")
    return found


@router.post("/chargers/{cp_id}/stop/confirm")
async def stop_confirmpage(request: Request, cp_id: str):
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    detail = await _detail(ctx, cp_id)
    tx = _transaction(detail, form)
    return page(
        request,
        "charger_confirm.html",
        session,
        what="stop",
        cp_id=cp_id,
        tx=tx,
        kwh=_kwh(tx.energy_wh),
        online=ctx.registry.get(cp_id) is not None,
        base=charger_path(cp_id),
    )


@router.post("/chargers/{cp_id}/stop")
async def remote_stop(request: Request, cp_id: str):
    """A confirmed stop: the session's stop as the REST API does it, or RemoteStopTransaction for a transaction
    no session bills (a local start)."""
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    if form.get("confirm") != "yes":
        raise Refused(400, "Not confirmed", "A remote stop needs its confirmation.")
    ctx = ctx_of(request)
    tx = _transaction(await _detail(ctx, cp_id), form)
    live = _live_or_flash(request, session, cp_id)
    if live is None:
        return redirect(charger_path(cp_id))
    try:
        if tx.session_id is not None:
            await sessions.stop_session(ctx, tx.session_id)
            answer = "Accepted"
        else:
            answer = await (await sessions.commands_naming_transactions(ctx, live)).remote_stop(tx.id)
    except CsmsError as exc:
        answer = exc.message
    except OcppjError as exc:
        answer = f"error: {exc}"
    audit_action(
        ctx,
        session,
        "ui.remote_stop",
        charge_point_id=cp_id,
        connector_id=tx.connector_id,
        subject=str(tx.id),
        charging_session=tx.session_id,
        energy_wh=tx.energy_wh,
        answer=answer,
    )
    ok = answer == "Accepted"
    flash(
        request,
        session,
        "ok" if ok else "warn",
        f"Remote stop of transaction {tx.id} on connector {tx.connector_id}: {answer_words(answer)}."
        + (" It ends when the charger sends its StopTransaction." if ok else ""),
    )
    return redirect(charger_path(cp_id))


@router.post("/chargers/{cp_id}/availability")
async def change_availability(request: Request, cp_id: str):
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    await _detail(ctx, cp_id)
    connector, kind = _int(form.get("connector")), form.get("type", "")
    if connector is None or kind not in AVAILABILITY:
        raise Refused(400, "Bad request", "Change availability needs a connector (0: the whole charger) and a type.")
    live = _live_or_flash(request, session, cp_id)
    if live is None:
        return redirect(_back(form, cp_id))
    try:
        answer = await commands_for(live, timeout=min(10.0, ctx.settings.call_timeout_seconds)).change_availability(
            connector, kind
        )
    except OcppjError as exc:
        answer = f"error: {exc}"
    audit_action(
        ctx,
        session,
        "ui.change_availability",
        charge_point_id=cp_id,
        connector_id=connector or None,
        type=kind,
        answer=answer,
    )
    what = "the whole charger" if connector == 0 else f"connector {connector}"
    flash(
        request,
        session,
        "ok" if answer in ("Accepted", "Scheduled") else "warn",
        f"{kind} for {what} of {cp_id}: {answer_words(answer)}.",
    )
    return redirect(_back(form, cp_id))


async def reset_context(ctx: Context, cp_id: str, kind: str, back: str) -> dict[str, Any]:
    """What a reset confirmation shows: the open transactions it will end and the real connectors (not 0)."""
    detail = await _detail(ctx, cp_id)
    live = ctx.registry.get(cp_id)
    known = [
        e.connector_id for e in await evaluate_all(ctx, charge_point_id_prefix=cp_id) if e.charge_point_id == cp_id
    ]
    return {
        "cp_id": cp_id,
        "kind": kind,
        "online": live is not None,
        "connectors": real_connectors([*known, *(live.connectors if live else [])]),
        "transactions": [(t, _kwh(t.energy_wh)) for t in detail.transactions],
        "action": f"{charger_path(cp_id)}/reset",
        "base": back,
    }


@router.post("/chargers/{cp_id}/reset/confirm")
async def reset_confirmpage(request: Request, cp_id: str):
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    kind = form.get("kind", "Soft")
    if kind not in RESET_KINDS:
        raise Refused(400, "Bad request", "A reset is Soft or Hard.")
    context = await reset_context(ctx_of(request), cp_id, kind, _back(form, cp_id))
    return page(request, "reset_confirm.html", session, **context)


@router.post("/chargers/{cp_id}/reset")
async def reset(request: Request, cp_id: str):
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    kind = form.get("kind", "")
    if form.get("confirm") != "yes" or kind not in RESET_KINDS:
        raise Refused(400, "Not confirmed", "A reset needs its confirmation.")
    ctx = ctx_of(request)
    detail = await _detail(ctx, cp_id)
    back = _back(form, cp_id)
    live = _live_or_flash(request, session, cp_id)
    if live is None:
        return redirect(back)
    try:
        answer = await commands_for(live).reset(kind)
    except OcppjError as exc:
        answer = f"error: {exc}"
    action = f"ui.{kind.lower()}_reset"
    audit_action(
        ctx, session, action, charge_point_id=cp_id, answer=answer, transactions=[t.id for t in detail.transactions]
    )
    log.warning("%s charge_point=%s actor=%s answer=%s", action, cp_id, session.name, answer)
    flash(
        request,
        session,
        "ok" if answer in ("Accepted", "Scheduled") else "warn",
        f"{kind} reset of {cp_id}: {answer_words(answer)}."
        + (" It restarts now and reconnects in a moment." if answer == "Accepted" else ""),
    )
    return redirect(back)


@router.post("/chargers/{cp_id}/password/confirm")
async def password_confirmpage(request: Request, cp_id: str):
    session = await signed_in(request, "admin")
    await checked_form(request, session)
    ctx = ctx_of(request)
    detail = await _detail(ctx, cp_id)
    return page(
        request,
        "charger_confirm.html",
        session,
        what="password",
        cp_id=cp_id,
        had_password=detail.row.password_set,
        online=ctx.registry.get(cp_id) is not None,
        base=charger_path(cp_id),
    )


@router.post("/chargers/{cp_id}/password")
async def provision_password(request: Request, cp_id: str) -> Response:
    """A new random password, provisioned as the REST API does (`csms.services.provisioning`), shown once on
    this answer only: never in a flash, a URL or a log."""
    session = await signed_in(request, "admin")
    form = await checked_form(request, session)
    if form.get("confirm") != "yes":
        raise Refused(400, "Not confirmed", "A new password needs its confirmation.")
    ctx = ctx_of(request)
    detail = await _detail(ctx, cp_id)
    password = new_password()
    done = await provision(ctx, cp_id, password, actor=session.name, create_station=False, via="console")
    return page(
        request,
        "charger_password.html",
        session,
        cp_id=cp_id,
        password=password,
        rotated=detail.row.password_set,
        was_online=done.disconnected,
        base=charger_path(cp_id),
    )
