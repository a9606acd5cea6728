"""The occupancy shell: gather every signal for a connector, then ask `occupancy.decide`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from csms.context import Context
from csms.core.occupancy import (
    ConnectorSignals,
    Decision,
    OpenTransaction,
    PersistedStatus,
    ReservationRef,
    decide,
)
from csms.core.times import as_utc, iso
from csms.db.occupancy_store import StoredSignals, load_all_signals, load_connector_signals
from csms.ocpp.registry import LiveConnector

__all__ = ["Evaluation", "evaluate", "evaluate_all", "explain"]

log = logging.getLogger("csms.occupancy")


@dataclass(frozen=True)
class Evaluation:
    charge_point_id: str
    connector_id: int
    decision: Decision
    websocket_present: bool
    live: LiveConnector | None
    stored: StoredSignals
    now: datetime
    node: str | None = None  # in a cluster: the node holding its WebSocket


StartMarks = dict[tuple[str, int], tuple[int, int]]


def _start_marks(ctx: Context, keys: list[tuple[str, int]] | None = None) -> StartMarks:
    """(in flight, done) StartTransactions per connector of this node's charge points, taken before a
    database read: a start stored after the read's snapshot and finished before the verdict shows in neither."""
    if keys is not None:
        return {(cp, c): live.start_mark(c) for cp, c in keys if (live := ctx.registry.local(cp)) is not None}
    return {
        (live.id, c): live.start_mark(c) for live in ctx.registry for c in {*live.starts_in_flight, *live.starts_done}
    }


def _start_in_flight(live_cp: object, connector_id: int, before: tuple[int, int] | None) -> bool:
    mark = getattr(live_cp, "start_mark", None)
    if mark is None:  # another node's charge point: as that node published it
        return bool(getattr(live_cp, "starts_in_flight", {}).get(connector_id))
    in_flight, done = mark(connector_id)
    return in_flight > 0 or (before is not None and (before[0] > 0 or before[1] != done))


def _decide(
    ctx: Context,
    cp_id: str,
    connector_id: int,
    stored: StoredSignals,
    exclude_reservation_id: str | None,
    before: tuple[int, int] | None = None,
) -> Evaluation:
    now = ctx.clock.now()
    live_cp = ctx.registry.get(cp_id)
    live = None if live_cp is None else live_cp.connectors.get(connector_id)
    signals = ConnectorSignals(
        websocket_present=live_cp is not None,
        live_status=None if live is None else live.status,
        live_status_of=None if live is None else live.transaction_id,
        persisted=None if stored.status is None else PersistedStatus(stored.status.status, stored.status.updated_at),
        open_transactions=tuple(OpenTransaction(t.transaction_id, t.start_time) for t in stored.open_transactions),
        reservations=tuple(ReservationRef(r.reservation_id, r.status) for r in stored.reservations),
        connected_for=None if live_cp is None else now - live_cp.connected_at,
        start_in_flight=live_cp is not None and _start_in_flight(live_cp, connector_id, before),
    )
    decision = decide(
        signals,
        now=now,
        freshness=ctx.settings.freshness,
        exclude_reservation_id=exclude_reservation_id,
        settle=_settle(live_cp, timedelta(seconds=ctx.settings.reconnect_settle_seconds)),
    )
    node = None if live_cp is None else getattr(live_cp, "node_id", ctx.settings.node_id)
    return Evaluation(cp_id, connector_id, decision, live_cp is not None, live, stored, now, node)


def _settle(live_cp: object, settle: timedelta) -> timedelta:
    window = getattr(live_cp, "settle_window", None)  # local and remote charge points both have one
    return settle if window is None else window(settle)


async def evaluate(
    ctx: Context, cp_id: str, connector_id: int, *, exclude_reservation_id: str | None = None
) -> Evaluation:
    """Live registry + one database round trip -> a Decision with its reasons.

    In a cluster the registry answers for charge points other live nodes hold with what those
    nodes published (csms.cluster), so every node gives the holding node's verdict."""
    before = _start_marks(ctx, [(cp_id, connector_id)]).get((cp_id, connector_id))
    stored = await ctx.db.read(lambda s: load_connector_signals(s, cp_id, connector_id))
    await ctx.registry.find(cp_id, fresh=True)  # in a cluster: another node's charge point as of now
    return _decide(ctx, cp_id, connector_id, stored, exclude_reservation_id, before)


async def evaluate_all(ctx: Context, *, charge_point_id_prefix: str | None = None) -> list[Evaluation]:
    """Every connector known to the database or to the live registry (of charge points with that id prefix)."""
    prefix = charge_point_id_prefix or ""
    before = _start_marks(ctx)
    stored = await ctx.db.read(lambda s: load_all_signals(s, prefix))
    for live_cp in ctx.registry.all_live():  # in a cluster, the other nodes' charge points too
        if not live_cp.id.startswith(prefix):
            continue
        for connector_id in live_cp.connectors:
            if connector_id > 0:
                stored.setdefault((live_cp.id, connector_id), StoredSignals())
    return [_decide(ctx, cp, conn, sig, None, before.get((cp, conn))) for (cp, conn), sig in sorted(stored.items())]


def explain(ev: Evaluation, freshness_minutes: float) -> dict[str, Any]:
    """The verdict, its reasons and every raw signal: the seed's debugging checklist in one answer."""
    st = ev.stored.status
    persisted = None
    if st is not None:
        age = (ev.now - as_utc(st.updated_at)).total_seconds()
        persisted = {
            "status": st.status,
            "errorCode": st.error_code,
            "updatedAt": iso(st.updated_at),
            "ageSeconds": round(age, 1),
            "fresh": age <= freshness_minutes * 60,
            "usedForDecision": ev.live is None and age <= freshness_minutes * 60,
        }
    return {
        "chargePointId": ev.charge_point_id,
        "connectorId": ev.connector_id,
        "verdict": ev.decision.verdict.value,
        "reasons": list(ev.decision.reasons),
        "signals": {
            "websocketPresent": ev.websocket_present,
            **({} if ev.node is None else {"node": ev.node}),  # cluster mode: who holds the WebSocket
            "liveStatus": None
            if ev.live is None
            else {"status": ev.live.status, "errorCode": ev.live.error_code, "at": iso(ev.live.updated_at)},
            "persistedStatus": persisted,
            "openTransactions": [
                {
                    "transactionId": t.transaction_id,
                    "idTag": t.id_tag,
                    "startTime": iso(t.start_time),
                    "meterStart": t.meter_start,
                    "latestMeterWh": t.latest_meter_wh,
                }
                for t in ev.stored.open_transactions
            ],
            "activeReservations": [
                {"reservationId": r.reservation_id, "status": r.status, "createdAt": iso(r.created_at)}
                for r in ev.stored.reservations
            ],
            "freshnessMinutes": freshness_minutes,
        },
    }
