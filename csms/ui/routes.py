"""The connector board, a connector's page and its actions, maintenance, the audit log and webhooks.

Server-rendered over the same services as the REST API; live parts are HTML fragments that
`static/ui.js` fetches every two seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from csms.context import Context
from csms.core.occupancy import ConnectorSignals, decide
from csms.db.cleanup_store import audit
from csms.db.occupancy_store import StoredSignals
from csms.ocpp.commands import commands_for
from csms.services import unlock, unlock_preview
from csms.services.maintenance import run_once
from csms.services.occupancy import Evaluation, evaluate, evaluate_all, explain
from csms.ui import auth, store
from csms.ui.board import BoardView, arrange_board
from csms.ui.timeline import build_timeline
from csms.ui.web import (
    audit_action,
    checked_form,
    ctx_of,
    flash,
    fragment,
    live_or_refuse,
    page,
    redirect,
    resolve,
    signed_in,
    site_now,
    station_path,
)
from csms.ui.words import board_row, reason_words
from ocppj import OcppjError

__all__ = ["router"]

log = logging.getLogger("csms.ui")
router = APIRouter(prefix="/ui", include_in_schema=False)


# ------------------------------------------------------------------ connector board
def _windows(ctx: Context) -> dict[str, timedelta]:
    """The board's time windows: when a transaction counts as quiet, and how fresh a meter value is live."""
    seconds = ctx.settings.quiet_transaction_seconds
    return {
        "quiet": timedelta(seconds=seconds if seconds > 0 else 600),
        "live_evidence": timedelta(seconds=ctx.settings.live_evidence_seconds),
    }


def _quiet_only(ctx: Context) -> dict[str, timedelta]:
    return {"quiet": _windows(ctx)["quiet"]}


_BOARD_LIMIT = 600  # connectors per page: suspected stuck and busy first; a search narrows a big site


def _idle_evaluations(ctx: Context, facts: store.BoardFacts, evaluated: set[tuple[str, int]], now) -> list[Evaluation]:
    """Connectors that had transactions but hold nothing now (evaluate_all lists only those with a signal)."""
    out = []
    for cp_id, connector_id in sorted(facts.used_connectors - evaluated):
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


@dataclass(frozen=True)
class BoardQuery:
    busy: bool = False
    stuck: bool = False
    q: str = ""  # a charger or station id (part of it), an id tag, or a transaction id
    sort: str = "state"  # "state": chargers with suspected stuck and busy connectors first; "charger": by id
    view: str = "table"  # or "cards"

    def url(self, path: str) -> str:
        parts = [
            p
            for p in (
                self.busy and "busy=1",
                self.stuck and "stuck=1",
                self.q and f"q={quote(self.q)}",
                self.sort != "state" and f"sort={self.sort}",
                self.view != "table" and f"view={self.view}",
            )
            if p
        ]
        return path + (f"?{'&'.join(parts)}" if parts else "")


def _board_query(busy: bool, stuck: bool, q: str, sort: str, view: str) -> BoardQuery:
    return BoardQuery(
        busy,
        stuck,
        q.strip()[:64],
        sort if sort in ("state", "charger") else "state",
        "cards" if view == "cards" else "table",
    )


async def _board(ctx: Context, query: BoardQuery) -> BoardView:
    evaluations = await evaluate_all(ctx)
    facts = await ctx.db.read(store.board_facts)
    minutes = ctx.settings.freshness.total_seconds() / 60
    now = site_now(ctx)
    evaluations += _idle_evaluations(ctx, facts, {(e.charge_point_id, e.connector_id) for e in evaluations}, now)
    windows = _windows(ctx)
    rows = [
        board_row(
            explain(ev, minutes),
            facts.stations.get(ev.charge_point_id, ev.charge_point_id),
            facts.activity,
            facts.last_seen.get(ev.charge_point_id),
            now,
            **windows,
        )
        for ev in evaluations
    ]
    return arrange_board(rows, busy=query.busy, stuck=query.stuck, q=query.q, sort=query.sort, limit=_BOARD_LIMIT)


def _board_context(query: BoardQuery, view: BoardView) -> dict[str, Any]:
    return {
        "board": view,
        "query": query,
        "poll_url": query.url("/ui/board/rows"),
        "clear_url": BoardQuery(sort=query.sort, view=query.view).url("/ui/"),
    }


@router.get("/")
async def board_page(
    request: Request, busy: bool = False, stuck: bool = False, q: str = "", sort: str = "state", view: str = "table"
):
    session = await signed_in(request)
    query = _board_query(busy, stuck, q, sort, view)
    board = await _board(ctx_of(request), query)
    return page(request, "board.html", session, **_board_context(query, board))


@router.get("/board/rows")
async def board_rows(
    request: Request, busy: bool = False, stuck: bool = False, q: str = "", sort: str = "state", view: str = "table"
):
    started = time.perf_counter()
    await signed_in(request)
    query = _board_query(busy, stuck, q, sort, view)
    board = await _board(ctx_of(request), query)
    response = fragment(request, "_board_rows.html", **_board_context(query, board))
    # The server's own time for the board (what a site of 200 chargers waits for), for browsers' dev tools.
    response.headers["Server-Timing"] = f"board;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


# ------------------------------------------------------------------ connector page
async def _connector(request: Request, station_id: str, connector_id: int) -> dict[str, Any]:
    ctx = ctx_of(request)
    st_id, cp_id = await resolve(ctx, station_id)
    ev = await evaluate(ctx, cp_id, connector_id)
    x = explain(ev, ctx.settings.freshness.total_seconds() / 60)
    facts = await ctx.db.read(store.board_facts)
    records = await ctx.db.read(lambda s: store.connector_records(s, cp_id, connector_id))
    now = site_now(ctx)
    row = board_row(x, st_id, facts.activity, facts.last_seen.get(cp_id), now, **_windows(ctx))
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
        "base": f"/ui/connectors/{station_path(st_id)}/{connector_id}",
    }


@router.get("/connectors/{station_id}/{connector_id}")
async def connectorpage(request: Request, station_id: str, connector_id: int):
    session = await signed_in(request)
    data = await _connector(request, station_id, connector_id)
    return page(request, "connector.html", session, **data)


@router.get("/connectors/{station_id}/{connector_id}/live")
async def connector_live(request: Request, station_id: str, connector_id: int, part: str = "head"):
    await signed_in(request)
    data = await _connector(request, station_id, connector_id)
    return fragment(request, "_connector_body.html" if part == "body" else "_connector_head.html", **data)


@router.post("/connectors/{station_id}/{connector_id}/unlock/preview")
async def unlock_previewpage(request: Request, station_id: str, connector_id: int):
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    st_id, _cp = await resolve(ctx, station_id)
    preview = await unlock_preview.preview_unlock(ctx, st_id, connector_id, force_active=form.get("force") == "1")
    return page(
        request,
        "unlock_preview.html",
        session,
        p=preview,
        fee_policy=ctx.settings.force_end_fee,
        base=f"/ui/connectors/{station_path(st_id)}/{connector_id}",
    )


@router.post("/connectors/{station_id}/{connector_id}/unlock")
async def unlock_connector(request: Request, station_id: str, connector_id: int):
    session = await signed_in(request, "operator")
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    st_id, cp_id = await resolve(ctx, station_id)
    result = await unlock.unlock_connector(
        ctx, st_id, connector_id, actor=session.name, force_active=form.get("force") == "1"
    )
    cleaned = f" {len(result.cleaned)} stuck session(s) force-ended." if result.cleaned else ""
    notes = " ".join(w for w in result.warnings if not w.endswith("was automatically ended"))
    after = explain(await evaluate(ctx, cp_id, connector_id), ctx.settings.freshness.total_seconds() / 60)
    if result.success and after["verdict"] == "busy":
        # Unlocked, yet something still holds it (most often the charger's own status): say what, and what next.
        facts = await ctx.db.read(store.board_facts)
        why = "; ".join(
            reason_words(r, after, facts.activity, site_now(ctx), **_quiet_only(ctx)) for r in after["reasons"]
        )
        flash(
            request,
            session,
            "warn",
            f"The charger unlocked connector {connector_id}, but it still counts as busy: {why}.{cleaned} {notes} "
            "Next: Ask for status so the charger reports the connector again; if it stays busy with no car, "
            "a soft reset of the charger clears its state.",
        )
    elif result.success:
        flash(request, session, "ok", f"Unlocked: connector {connector_id} is free.{cleaned} {notes}".strip())
    elif result.kept_live:
        flash(request, session, "warn", f"{result.message}.{cleaned} {notes}".strip())
    else:
        flash(
            request,
            session,
            "warn",
            f"The database was cleaned, but the charger did not unlock: {result.message}.{cleaned} {notes}".strip(),
        )
    return redirect(f"/ui/connectors/{station_path(st_id)}/{connector_id}")


@router.post("/connectors/{station_id}/{connector_id}/trigger")
async def ask_for_status(request: Request, station_id: str, connector_id: int):
    session = await signed_in(request, "operator")
    await checked_form(request, session)
    ctx = ctx_of(request)
    st_id, cp_id = await resolve(ctx, station_id)
    live = live_or_refuse(ctx, cp_id)
    try:
        with live.asking_status(connector_id, ctx.clock.now):  # its answer is not the connector's own report
            answer = await commands_for(live, timeout=min(10.0, ctx.settings.call_timeout_seconds)).trigger(
                "StatusNotification", connector_id
            )
    except OcppjError as exc:
        answer = f"error: {exc}"
    audit_action(ctx, session, "ui.trigger_status", charge_point_id=cp_id, connector_id=connector_id, answer=answer)
    kind = "ok" if answer == "Accepted" else "warn"
    flash(
        request,
        session,
        kind,
        f"Asked {cp_id} for connector {connector_id}'s status: {answer}."
        + (" Its StatusNotification shows on this page when it comes." if answer == "Accepted" else ""),
    )
    return redirect(f"/ui/connectors/{station_path(st_id)}/{connector_id}")


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
    ctx = ctx_of(request)
    lines = await ctx.db.read(lambda s: store.audit_lines(s, action_like=store.MAINTENANCE_ACTIONS, limit=60))
    runs = [e for e in lines if e.action in ("ui.maintenance_run", "maintenance.run_requested")][:10]
    changes = [e for e in lines if e.action.startswith("maintenance.") and e.action != "maintenance.run_requested"]
    return page(
        request, "maintenance.html", session, rules=_rules(ctx), runs=runs, changes=changes[:40], preview=preview
    )


@router.get("/maintenance")
async def maintenancepage(request: Request):
    return await _maintenance_page(request, await signed_in(request))


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
    session = await signed_in(request, "operator")
    await checked_form(request, session)
    actions = await run_once(ctx_of(request), dry_run=True)
    return await _maintenance_page(request, session, preview=_action_rows(actions))


@router.post("/maintenance/run")
async def maintenance_run(request: Request):
    session = await signed_in(request, "operator")
    await checked_form(request, session)
    ctx = ctx_of(request)
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
    flash(
        request,
        session,
        "ok",
        f"Maintenance ran: {len(rows)} action(s) applied." + ("" if rows else " Nothing was stale."),
    )
    return redirect("/ui/maintenance")


# ------------------------------------------------------------------ audit log, webhooks
@router.get("/audit")
async def auditpage(
    request: Request, actor: str = "", action: str = "", cp: str = "", connector: str = "", before: int | None = None
):
    session = await signed_in(request)
    conn = int(connector) if connector.strip().isdigit() else None
    lines = await ctx_of(request).db.read(
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
    return page(
        request, "audit.html", session, lines=lines, actor=actor, action=action, cp=cp, connector=connector, older=older
    )


@router.get("/webhooks")
async def webhookspage(request: Request):
    from csms.api.webhooks import webhook_status

    session = await signed_in(request, "admin")  # receivers' addresses, as the REST API's GET /api/webhooks
    return page(request, "webhooks.html", session, **webhook_status(request.app.state.webhooks))
