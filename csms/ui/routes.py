"""The dashboard at /ui/: server-rendered pages over the same services as the REST API.

Every page needs a signed-in admin token (see `csms.ui.auth`); every POST carries the
session's CSRF token and comes from this origin; every action is audited with the
token's name as the actor. Live parts are HTML fragments that `static/ui.js` fetches
every two seconds.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import trio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from csms.api.envelope import http_status
from csms.context import Context
from csms.core.occupancy import ConnectorSignals, decide
from csms.db.cleanup_store import audit
from csms.db.occupancy_store import StoredSignals
from csms.errors import CsmsError
from csms.ocpp.commands import commands_for
from csms.services import unlock, unlock_preview
from csms.services.maintenance import run_once
from csms.services.occupancy import Evaluation, evaluate, evaluate_all, explain
from csms.ui import auth, store
from csms.ui.timeline import build_timeline, details_text
from csms.ui.words import board_row, clock_time
from ocppj import OcppjError

__all__ = ["mount", "router"]

log = logging.getLogger("csms.ui")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["clock"] = lambda at, now: clock_time(at, now)
templates.env.filters["details"] = details_text
router = APIRouter(prefix="/ui", include_in_schema=False)

_LOGIN_COOKIE = "unstuck_ui_login"
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make a form POST's Origin "null"
    "Cache-Control": "no-store",
}


@dataclass
class UiState:
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # per process: a restart signs all out
    revoked: dict[str, int] = field(default_factory=dict)  # signed-out session id -> its expiry
    flash: dict[str, tuple[str, str]] = field(default_factory=dict)  # session id -> (kind, text)


class SignInNeeded(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _ui(request: Request) -> UiState:
    return request.app.state.ui


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _session(request: Request) -> auth.UiSession | None:
    ui = _ui(request)
    session = auth.read(ui.key, request.cookies.get(auth.COOKIE), time.time(), _ctx(request).settings.api_tokens)
    if session is None or session.sid in ui.revoked or session.role != "admin":
        return None
    return session


def signed_in(request: Request) -> auth.UiSession:
    session = _session(request)
    if session is None:
        raise SignInNeeded()
    return session


def _same_origin(request: Request) -> bool:
    """A POST from a page of this server: Origin (or Referer) names this host, when the browser sends one."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:65536].decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def checked_form(request: Request, session: auth.UiSession) -> dict[str, str]:
    """The POSTed form, refused without this session's CSRF token or from another origin."""
    form = await _form(request)
    if not _same_origin(request) or not auth.csrf_ok(_ui(request).key, session, form.get("csrf")):
        log.warning(
            "ui.csrf_refused path=%s actor=%s origin=%s", request.url.path, session.name, request.headers.get("origin")
        )
        raise Refused(
            403,
            "Refused",
            "This form is out of date or did not come from this dashboard (no valid CSRF "
            "token). Go back, reload the page and try again.",
        )
    return form


def _page(request: Request, name: str, session: auth.UiSession | None, status: int = 200, **context: Any) -> Response:
    ui = _ui(request)
    flash = None if session is None else ui.flash.pop(session.sid, None)
    ctx = _ctx(request)
    response = templates.TemplateResponse(
        request,
        name,
        {
            "who": session,
            "csrf": "" if session is None else auth.csrf_token(ui.key, session),
            "flash": flash,
            "now": ctx.clock.now(),
            "path": request.url.path,
            **context,
        },
        status_code=status,
    )
    response.headers.update(_HEADERS)
    return response


def _fragment(request: Request, name: str, **context: Any) -> Response:
    response = templates.TemplateResponse(request, name, {"now": _ctx(request).clock.now(), **context})
    response.headers.update(_HEADERS)
    return response


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(_HEADERS)
    return response


def _flash(request: Request, session: auth.UiSession, kind: str, text: str) -> None:
    _ui(request).flash[session.sid] = (kind, text)


def _audit(ctx: Context, session: auth.UiSession, action: str, **kw: Any) -> None:
    now = ctx.clock.now()
    ctx.db.submit(lambda s: audit(s, actor=session.name, action=action, at=now, **kw))


# ------------------------------------------------------------------ sign-in
@router.get("/login")
async def login_page(request: Request, next: str = "/ui/", error: str | None = None):
    if _session(request) is not None:
        return _redirect(_safe_next(next))
    nonce = secrets.token_urlsafe(16)
    response = _page(
        request, "login.html", None, next=_safe_next(next), login_csrf=_login_csrf(request, nonce), error=error
    )
    response.set_cookie(
        _LOGIN_COOKIE, nonce, max_age=1800, path="/ui", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


def _login_csrf(request: Request, nonce: str) -> str:
    return auth.csrf_token(_ui(request).key, auth.UiSession("", "", "login:" + nonce, 0))


def _safe_next(url: str) -> str:
    return url if url.startswith("/ui/") and not url.startswith("//") and "\\" not in url else "/ui/"


@router.post("/login")
async def login(request: Request):
    form = await _form(request)
    nonce = request.cookies.get(_LOGIN_COOKIE, "")
    ctx = _ctx(request)
    if (
        not nonce
        or not _same_origin(request)
        or not secrets.compare_digest(_login_csrf(request, nonce), form.get("csrf", ""))
    ):
        raise Refused(
            403,
            "Refused",
            "The sign-in form is out of date (no valid CSRF token). Reload the sign-in page and try again.",
        )
    token = auth.find_token(ctx.settings.api_tokens, form.get("token", ""))
    if token is None or token.role != "admin":
        await trio.sleep(0.5)  # guessing tokens costs time
        log.warning("ui.sign_in_refused remote=%s", request.client.host if request.client else "?")
        nonce = secrets.token_urlsafe(16)
        response = _page(
            request,
            "login.html",
            None,
            status=401,
            next=_safe_next(form.get("next", "/ui/")),
            login_csrf=_login_csrf(request, nonce),
            error="Sign-in failed: that admin token is not valid. Check it and try again.",
        )
        response.set_cookie(
            _LOGIN_COOKIE, nonce, max_age=1800, path="/ui", httponly=True, samesite="strict", secure=_secure(request)
        )
        return response
    value, session = auth.issue(_ui(request).key, token, time.time())
    log.info("ui.signed_in actor=%s", session.name)
    _audit(ctx, session, "ui.signed_in")
    response = _redirect(_safe_next(form.get("next", "/ui/")))
    response.set_cookie(
        auth.COOKIE,
        value,
        max_age=auth.LIFETIME_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(_LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
async def logout(request: Request):
    session = signed_in(request)
    await checked_form(request, session)
    ui = _ui(request)
    now = int(time.time())
    ui.revoked = {sid: exp for sid, exp in ui.revoked.items() if exp > now}
    ui.revoked[session.sid] = session.expires
    _audit(_ctx(request), session, "ui.signed_out")
    response = _redirect("/ui/login")
    response.delete_cookie(auth.COOKIE, path="/ui")
    return response


# ------------------------------------------------------------------ connector board
def _quiet(ctx: Context) -> timedelta:
    seconds = ctx.settings.quiet_transaction_seconds
    return timedelta(seconds=seconds if seconds > 0 else 600)


_BOARD_LIMIT = 300  # cards per page: busy and suspected first; a prefix or a filter narrows a big site


def _idle_evaluations(
    ctx: Context, facts: store.BoardFacts, evaluated: set[tuple[str, int]], prefix: str, now
) -> list[Evaluation]:
    """Connectors that had transactions but hold nothing now (evaluate_all lists only those with a signal)."""
    out = []
    for cp_id, connector_id in sorted(facts.used_connectors - evaluated):
        if cp_id.startswith(prefix):
            online = ctx.registry.is_connected(cp_id)
            out.append(
                Evaluation(
                    cp_id,
                    connector_id,
                    decide(ConnectorSignals(websocket_present=online), now=now),
                    online,
                    None,
                    StoredSignals(),
                    now,
                )
            )
    return out


async def _board(ctx: Context, busy: bool, stuck: bool, q: str) -> tuple[list, dict[str, int]]:
    evaluations = await evaluate_all(ctx, charge_point_id_prefix=q or None)
    facts = await ctx.db.read(store.board_facts)
    minutes = ctx.settings.freshness.total_seconds() / 60
    now = ctx.clock.now()
    evaluations += _idle_evaluations(ctx, facts, {(e.charge_point_id, e.connector_id) for e in evaluations}, q, now)
    rows = [
        board_row(
            explain(ev, minutes),
            facts.stations.get(ev.charge_point_id, ev.charge_point_id),
            facts.activity,
            facts.last_seen.get(ev.charge_point_id),
            now,
            quiet=_quiet(ctx),
        )
        for ev in evaluations
    ]
    counts = {v: sum(1 for r in rows if r.verdict == v) for v in ("free", "busy", "offline")}
    counts["stuck"] = sum(1 for r in rows if r.suspicions)
    if busy:
        rows = [r for r in rows if r.verdict == "busy"]
    if stuck:
        rows = [r for r in rows if r.suspicions]
    rows.sort(
        key=lambda r: (
            {"busy": 0, "offline": 1, "free": 2}[r.verdict],
            not r.suspicions,
            r.charge_point_id,
            r.connector_id,
        )
    )
    counts["shown"], counts["matching"] = min(len(rows), _BOARD_LIMIT), len(rows)
    return rows[:_BOARD_LIMIT], counts


@router.get("/")
async def board_page(request: Request, busy: bool = False, stuck: bool = False, q: str = ""):
    session = signed_in(request)
    rows, counts = await _board(_ctx(request), busy, stuck, q[:64])
    query = "&".join(p for p in (busy and "busy=1", stuck and "stuck=1", q and f"q={quote(q[:64])}") if p)
    return _page(
        request,
        "board.html",
        session,
        rows=rows,
        counts=counts,
        busy=busy,
        stuck=stuck,
        q=q[:64],
        poll_url="/ui/board/rows" + (f"?{query}" if query else ""),
    )


@router.get("/board/rows")
async def board_rows(request: Request, busy: bool = False, stuck: bool = False, q: str = ""):
    signed_in(request)
    rows, counts = await _board(_ctx(request), busy, stuck, q[:64])
    return _fragment(request, "_board_rows.html", rows=rows, counts=counts)


# ------------------------------------------------------------------ connector page
async def _resolve(ctx: Context, station_id: str) -> tuple[str, str]:
    found = await ctx.db.read(lambda s: store.station_of(s, station_id))
    if found is None:
        raise Refused(404, "Not found", f"No active station or charge point {station_id!r}.")
    return found


async def _connector(request: Request, station_id: str, connector_id: int) -> dict[str, Any]:
    ctx = _ctx(request)
    st_id, cp_id = await _resolve(ctx, station_id)
    ev = await evaluate(ctx, cp_id, connector_id)
    x = explain(ev, ctx.settings.freshness.total_seconds() / 60)
    facts = await ctx.db.read(store.board_facts)
    records = await ctx.db.read(lambda s: store.connector_records(s, cp_id, connector_id))
    now = ctx.clock.now()
    row = board_row(x, st_id, facts.activity, facts.last_seen.get(cp_id), now, quiet=_quiet(ctx))
    watcher = request.app.state.watcher
    statuses = [] if watcher is None else watcher.history(cp_id, connector_id)
    live_cp = ctx.registry.get(cp_id)
    return {
        "station_id": st_id,
        "cp_id": cp_id,
        "connector_id": connector_id,
        "x": x,
        "row": row,
        "timeline": build_timeline(statuses, records.transactions, records.sessions, records.audit),
        "online": live_cp is not None,
        "connected_at": None if live_cp is None else live_cp.connected_at,
        "last_seen_live": None if live_cp is None else live_cp.last_seen,
        "base": f"/ui/connectors/{quote(st_id, safe='')}/{connector_id}",
    }


@router.get("/connectors/{station_id}/{connector_id}")
async def connector_page(request: Request, station_id: str, connector_id: int):
    session = signed_in(request)
    data = await _connector(request, station_id, connector_id)
    return _page(request, "connector.html", session, **data)


@router.get("/connectors/{station_id}/{connector_id}/live")
async def connector_live(request: Request, station_id: str, connector_id: int, part: str = "head"):
    signed_in(request)
    data = await _connector(request, station_id, connector_id)
    return _fragment(request, "_connector_body.html" if part == "body" else "_connector_head.html", **data)


@router.post("/connectors/{station_id}/{connector_id}/unlock/preview")
async def unlock_preview_page(request: Request, station_id: str, connector_id: int):
    session = signed_in(request)
    form = await checked_form(request, session)
    ctx = _ctx(request)
    st_id, _cp = await _resolve(ctx, station_id)
    preview = await unlock_preview.preview_unlock(ctx, st_id, connector_id, force_active=form.get("force") == "1")
    return _page(
        request,
        "unlock_preview.html",
        session,
        p=preview,
        fee_policy=ctx.settings.force_end_fee,
        base=f"/ui/connectors/{quote(st_id, safe='')}/{connector_id}",
    )


@router.post("/connectors/{station_id}/{connector_id}/unlock")
async def unlock_connector(request: Request, station_id: str, connector_id: int):
    session = signed_in(request)
    form = await checked_form(request, session)
    ctx = _ctx(request)
    st_id, _cp = await _resolve(ctx, station_id)
    result = await unlock.unlock_connector(
        ctx, st_id, connector_id, actor=session.name, force_active=form.get("force") == "1"
    )
    cleaned = f" {len(result.cleaned)} stuck session(s) force-ended." if result.cleaned else ""
    notes = " ".join(w for w in result.warnings if not w.endswith("was automatically ended"))
    if result.success:
        _flash(request, session, "ok", f"Unlocked.{cleaned} {notes}".strip())
    elif result.kept_live:
        _flash(request, session, "warn", f"{result.message}.{cleaned} {notes}".strip())
    else:
        _flash(
            request,
            session,
            "warn",
            f"The database was cleaned, but the charger did not unlock: {result.message}.{cleaned} {notes}".strip(),
        )
    return _redirect(f"/ui/connectors/{quote(st_id, safe='')}/{connector_id}")


async def _live_or_refuse(ctx: Context, cp_id: str):
    live = ctx.registry.get(cp_id)
    if live is None:
        raise Refused(409, "Charger offline", f"Charge point {cp_id} is not connected: nothing can be sent to it.")
    return live


@router.post("/connectors/{station_id}/{connector_id}/trigger")
async def ask_for_status(request: Request, station_id: str, connector_id: int):
    session = signed_in(request)
    await checked_form(request, session)
    ctx = _ctx(request)
    st_id, cp_id = await _resolve(ctx, station_id)
    live = await _live_or_refuse(ctx, cp_id)
    try:
        with live.asking_status(connector_id, ctx.clock.now):  # its answer is not the connector's own report
            answer = await commands_for(live, timeout=min(10.0, ctx.settings.call_timeout_seconds)).trigger(
                "StatusNotification", connector_id
            )
    except OcppjError as exc:
        answer = f"error: {exc}"
    _audit(ctx, session, "ui.trigger_status", charge_point_id=cp_id, connector_id=connector_id, answer=answer)
    kind = "ok" if answer == "Accepted" else "warn"
    _flash(
        request,
        session,
        kind,
        f"Asked {cp_id} for connector {connector_id}'s status: {answer}."
        + (" Its StatusNotification shows on this page when it comes." if answer == "Accepted" else ""),
    )
    return _redirect(f"/ui/connectors/{quote(st_id, safe='')}/{connector_id}")


@router.post("/connectors/{station_id}/{connector_id}/reset/confirm")
async def reset_confirm_page(request: Request, station_id: str, connector_id: int):
    session = signed_in(request)
    await checked_form(request, session)
    ctx = _ctx(request)
    st_id, cp_id = await _resolve(ctx, station_id)
    live = ctx.registry.get(cp_id)
    return _page(
        request,
        "reset_confirm.html",
        session,
        cp_id=cp_id,
        online=live is not None,
        connectors=sorted(live.connectors) if live else [],
        base=f"/ui/connectors/{quote(st_id, safe='')}/{connector_id}",
    )


@router.post("/connectors/{station_id}/{connector_id}/reset")
async def soft_reset(request: Request, station_id: str, connector_id: int):
    session = signed_in(request)
    form = await checked_form(request, session)
    ctx = _ctx(request)
    st_id, cp_id = await _resolve(ctx, station_id)
    if form.get("confirm") != "yes":
        raise Refused(400, "Not confirmed", "A soft reset needs its confirmation.")
    live = await _live_or_refuse(ctx, cp_id)
    try:
        answer = await commands_for(live).reset("Soft")
    except OcppjError as exc:
        answer = f"error: {exc}"
    _audit(ctx, session, "ui.soft_reset", charge_point_id=cp_id, answer=answer)
    log.warning("ui.soft_reset charge_point=%s actor=%s answer=%s", cp_id, session.name, answer)
    _flash(request, session, "ok" if answer == "Accepted" else "warn", f"Soft reset of {cp_id}: {answer}.")
    return _redirect(f"/ui/connectors/{quote(st_id, safe='')}/{connector_id}")


# ------------------------------------------------------------------ maintenance
def _rules(ctx: Context) -> list[tuple[str, str]]:
    s = ctx.settings

    def off(v: float, unit: str) -> str:
        return f"{v:g} {unit}" if v > 0 else "off"

    return [
        ("Reservation timeout", off(s.reservation_timeout_minutes, "min")),
        ("Status release", off(s.status_release_minutes, "min")),
        ("Offline after", f"{s.heartbeat_timeout_factor:g} x heartbeat interval ({s.heartbeat_interval} s)"),
        ("Silent connectors / contradicted statuses", off(s.status_grace_seconds, "s")),
        ("Orphaned transactions", off(s.orphan_grace_seconds, "s")),
        ("Idle sessions", off(s.session_idle_hours, "h")),
        ("Quiet transactions", off(s.quiet_transaction_seconds, "s")),
        ("Start timeout", off(s.start_timeout_seconds, "s")),
        ("Runs every", off(s.maintenance_interval_seconds, "s")),
        ("Force-end fee", s.force_end_fee),
    ]


async def _maintenance_page(request: Request, session: auth.UiSession, preview: list | None = None) -> Response:
    ctx = _ctx(request)
    lines = await ctx.db.read(lambda s: store.audit_lines(s, action_like=store.MAINTENANCE_ACTIONS, limit=60))
    runs = [e for e in lines if e.action in ("ui.maintenance_run", "maintenance.run_requested")][:10]
    changes = [e for e in lines if e.action.startswith("maintenance.") and e.action != "maintenance.run_requested"]
    return _page(
        request, "maintenance.html", session, rules=_rules(ctx), runs=runs, changes=changes[:40], preview=preview
    )


@router.get("/maintenance")
async def maintenance_page(request: Request):
    return await _maintenance_page(request, signed_in(request))


def _action_rows(actions) -> list[dict[str, Any]]:
    return [
        {
            "kind": a.kind.value,
            "cp": a.charge_point_id,
            "connector": a.connector_id,
            "subject": a.subject,
            "reason": a.reason,
        }
        for a in actions
    ]


@router.post("/maintenance/preview")
async def maintenance_preview(request: Request):
    session = signed_in(request)
    await checked_form(request, session)
    actions = await run_once(_ctx(request), dry_run=True)
    return await _maintenance_page(request, session, preview=_action_rows(actions))


@router.post("/maintenance/run")
async def maintenance_run(request: Request):
    session = signed_in(request)
    await checked_form(request, session)
    ctx = _ctx(request)
    actions = await run_once(ctx, dry_run=False)
    rows = _action_rows(actions)
    now = ctx.clock.now()
    await ctx.db.write(
        lambda s: audit(
            s,
            actor=session.name,
            action="ui.maintenance_run",
            at=now,
            actions=len(rows),
            kinds=sorted({r["kind"] for r in rows}),
        )
    )
    _flash(
        request,
        session,
        "ok",
        f"Maintenance ran: {len(rows)} action(s) applied." + ("" if rows else " Nothing was stale."),
    )
    return _redirect("/ui/maintenance")


# ------------------------------------------------------------------ audit log, webhooks
@router.get("/audit")
async def audit_page(
    request: Request, actor: str = "", action: str = "", cp: str = "", connector: str = "", before: int | None = None
):
    session = signed_in(request)
    conn = int(connector) if connector.strip().isdigit() else None
    lines = await _ctx(request).db.read(
        lambda s: store.audit_lines(
            s,
            actor=actor[:64],
            action=action[:64],
            charge_point_id=cp[:64],
            connector_id=conn,
            before_id=before,
            limit=100,
        )
    )
    older = None
    if len(lines) == 100:
        older = "/ui/audit?" + "&".join(
            f"{k}={quote(v)}"
            for k, v in (("actor", actor), ("action", action), ("cp", cp), ("connector", connector))
            if v
        )
        older += f"&before={lines[-1].id}"
    return _page(
        request, "audit.html", session, lines=lines, actor=actor, action=action, cp=cp, connector=connector, older=older
    )


@router.get("/webhooks")
async def webhooks_page(request: Request):
    from csms.api.webhooks import webhook_status

    session = signed_in(request)
    return _page(request, "webhooks.html", session, **webhook_status(request.app.state.webhooks))


# ------------------------------------------------------------------ wiring
def mount(app: FastAPI) -> None:
    """Serve the dashboard from `app`: its routes, its static files, its own error pages."""
    app.state.ui = UiState()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")

    @app.get("/ui", include_in_schema=False)
    async def _ui_root():
        return _redirect("/ui/")

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded):
        if request.method == "GET" and "x-ui-poll" not in request.headers:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return _redirect(f"/ui/login?next={quote(target)}")
        return HTMLResponse("Signed out: sign in again.", status_code=401, headers=_HEADERS)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        return _page(
            request, "message.html", _session(request), status=exc.status, title=exc.title, message=exc.message
        )

    rest_handler = app.exception_handlers[CsmsError]

    @app.exception_handler(CsmsError)
    async def _domain(request: Request, exc: CsmsError):
        """Domain errors from the services: a page under /ui/, the REST API's own answer elsewhere."""
        if not request.url.path.startswith("/ui/"):
            answer = rest_handler(request, exc)  # async (csms.api.app); Starlette allows sync handlers too
            return await answer if inspect.isawaitable(answer) else answer
        return _page(
            request,
            "message.html",
            _session(request),
            status=http_status(exc),
            title="Could not do that",
            message=exc.message,
        )
