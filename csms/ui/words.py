"""The dashboard's words: verdict reasons and suspicions in plain language. Pure (no IO).

Input is the occupancy explanation (`csms.services.occupancy.explain`) plus a few facts the
board gathers (meter activity of open transactions, when a charge point was last
heard from); output is what an operator reads: "open transaction 42 since 14:02 UTC,
no meter value for 3 h".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from csms.core.times import as_utc, parse_iso

__all__ = [
    "TxActivity",
    "BoardRow",
    "age",
    "clock_time",
    "exact_time",
    "action_words",
    "reason_words",
    "suspicions",
    "charging_now",
    "board_row",
    "TRANSACTION_STATUSES",
    "LINGERING_RESERVATION",
]

TRANSACTION_STATUSES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})
# Statuses that hold a connector after a session: normal for a while (the driver unplugs), stuck when they last.
LINGERING_STATUSES = frozenset({"Finishing", "Occupied"})
LINGERING_RESERVATION = timedelta(minutes=15)


@dataclass(frozen=True)
class TxActivity:
    """What the board knows about an open transaction besides the occupancy signals."""

    latest_meter_wh: int | None
    latest_meter_at: datetime | None  # the sample's own stamp
    meter_seen_at: datetime | None  # when we received it (our clock)


def age(seconds: float) -> str:
    """12 s, 5 min, 3 h 5 min, 2 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def clock_time(at: datetime | None, now: datetime) -> str:
    """14:02:05 CET today, else 2026-01-03 14:02:05 CET: in `now`'s time zone (the site's), with seconds,
    so events a minute apart stay apart."""
    if at is None:
        return "-"
    local = as_utc(at).astimezone(now.tzinfo)
    fmt = "%H:%M:%S %Z" if local.date() == now.date() else "%Y-%m-%d %H:%M:%S %Z"
    return local.strftime(fmt)


def exact_time(at: datetime | str | None) -> str:
    """2026-01-03 14:02:05 UTC (a stored time or an ISO string from a charger)."""
    if at is None or at == "":
        return "-"
    if isinstance(at, str):
        parsed = parse_iso(at)
        if parsed is None:
            return at
        at = parsed
    return as_utc(at).strftime("%Y-%m-%d %H:%M:%S UTC")


_ACTION_WORDS = {
    "ui.signed_in": "signed in",
    "ui.signed_out": "signed out",
    "ui.soft_reset": "soft reset",
    "ui.trigger_status": "asked for status",
    "ui.maintenance_run": "ran maintenance",
}


def action_words(action: str) -> str:
    """An audit action as words: ui.soft_reset -> soft reset; session.force_ended -> session: force ended."""
    if action in _ACTION_WORDS:
        return _ACTION_WORDS[action]
    head, _, tail = action.partition(".")
    if head == "ui":
        return tail.replace("_", " ")
    return f"{head.replace('_', ' ')}: {tail.replace('_', ' ')}" if tail else head.replace("_", " ")


def _since(at: datetime | None, now: datetime) -> str:
    return "" if at is None else f" since {clock_time(at, now)} ({age((now - as_utc(at)).total_seconds())})"


def _meter(act: TxActivity | None, now: datetime, quiet: timedelta) -> str:
    if act is None or act.meter_seen_at is None:
        return ", no meter value yet"
    quiet_for = (now - as_utc(act.meter_seen_at)).total_seconds()
    kwh = "" if act.latest_meter_wh is None else f" (register {act.latest_meter_wh / 1000:.3f} kWh)"
    if quiet_for >= quiet.total_seconds():
        return f", no meter value for {age(quiet_for)}{kwh}"
    return f", last meter value {age(quiet_for)} ago{kwh}"


def reason_words(
    reason: str, x: Mapping[str, Any], activity: Mapping[int, TxActivity], now: datetime, quiet: timedelta
) -> str:
    """One `occupancy.decide` reason in plain words."""
    kind, _, rest = reason.partition(":")
    sig = x.get("signals", {})
    if kind == "websocket":
        if rest.startswith("reconnected:"):
            return (
                f"charger reconnected {rest.split(':')[1].removesuffix('s_ago')} s ago and has not reported this "
                "connector yet (it may be replaying a session started while it was away)"
            )
        return "charger offline: it is not connected"
    if kind == "start_transaction":
        return "a StartTransaction from the charger is being stored right now"
    if kind == "live_status":
        live = sig.get("liveStatus") or {}
        return f"charger reports {rest}{_since(parse_iso(live.get('at')), now)}"
    if kind == "persisted_status":
        status, _, minutes = rest.partition(":age=")
        return f"stored status {status} from {minutes.rstrip('m')} min ago (no live status from the charger)"
    if kind == "open_transaction":
        tx_id = int(rest) if rest.isdigit() else rest
        tx: Mapping[str, Any] = next((t for t in sig.get("openTransactions", []) if t["transactionId"] == tx_id), {})
        tag = f" ({tx['idTag']})" if tx.get("idTag") else ""
        return (
            f"open transaction {tx_id}{tag}{_since(parse_iso(tx.get('startTime')), now)}"
            f"{_meter(activity.get(tx_id) if isinstance(tx_id, int) else None, now, quiet)}"
        )
    if kind == "active_reservation":
        res_id, _, status = rest.rpartition(":")
        res: Mapping[str, Any] = next(
            (r for r in sig.get("activeReservations", []) if r["reservationId"] == res_id), {}
        )
        return f"payment reservation {res_id[:8]} is {status}{_since(parse_iso(res.get('createdAt')), now)}"
    return reason


def charging_now(
    txs: list[Mapping[str, Any]], activity: Mapping[int, TxActivity], now: datetime, live: timedelta
) -> bool:
    """An open transaction sent energy within `live`: a car is charging, whatever the statuses say."""
    for t in txs:
        act = activity.get(t["transactionId"])
        if act is not None and act.meter_seen_at is not None and now - as_utc(act.meter_seen_at) < live:
            return True
    return False


def suspicions(
    x: Mapping[str, Any],
    activity: Mapping[int, TxActivity],
    now: datetime,
    *,
    quiet: timedelta,
    live_evidence: timedelta = timedelta(minutes=2),
) -> list[str]:
    """Why this connector may be stuck, in plain words; [] when nothing is odd.

    Live evidence wins: a transaction whose meter values keep coming is a car charging, so a
    silent or stale status beside it is no suspicion. A status that holds the connector with no
    transaction (Finishing, Occupied, Charging) is: the classic "gun already in use".
    """
    sig = x.get("signals", {})
    online = sig.get("websocketPresent", False)
    live = (sig.get("liveStatus") or {}).get("status")
    stored = sig.get("persistedStatus") or {}
    txs = sig.get("openTransactions", [])
    evidence = charging_now(txs, activity, now, live_evidence)
    out = []
    if txs and (live == "Available" or (live is None and stored.get("status") == "Available")):
        out.append(f"open transaction {txs[0]['transactionId']} on a connector that reports Available")
    for t in txs:
        act = activity.get(t["transactionId"])
        heard = None if act is None else act.meter_seen_at
        since = heard or parse_iso(t.get("startTime"))
        if since is not None and (now - as_utc(since)) >= quiet:
            what = "no meter value" if heard is not None else "no meter value at all"
            out.append(f"transaction {t['transactionId']}: {what} for {age((now - as_utc(since)).total_seconds())}")
    if live is None and stored and stored.get("status") != "Available" and not evidence:
        out.append(
            f"stale stored status {stored['status']} ({age(stored.get('ageSeconds', 0))} old), nothing live confirms it"
        )
    for r in sig.get("activeReservations", []):
        created = parse_iso(r.get("createdAt"))
        if r.get("status") != "Charging" and created is not None and now - created >= LINGERING_RESERVATION:
            out.append(
                f"lingering reservation {r['reservationId'][:8]}: {r['status']} for "
                f"{age((now - created).total_seconds())}"
            )
    if online and live is None and not evidence:
        out.append("silent connector: the charger is online but has not reported this connector's status")
    if live in TRANSACTION_STATUSES and not txs:
        out.append(f"reports {live} but no transaction is open")
    live_at = parse_iso((sig.get("liveStatus") or {}).get("at"))
    if live in LINGERING_STATUSES and not txs and live_at is not None and now - as_utc(live_at) >= quiet:
        out.append(
            f"reports {live} for {age((now - as_utc(live_at)).total_seconds())} with no transaction open: "
            "the gun may hang free while the charger still counts it in use"
        )
    return out


@dataclass(frozen=True)
class BoardRow:
    station_id: str
    charge_point_id: str
    connector_id: int
    verdict: str
    reasons: list[str]
    live: str
    stored: str
    transaction: str
    reservation: str
    last_seen: str
    suspicions: list[str] = field(default_factory=list)
    online: bool = True
    tags: tuple[str, ...] = ()  # id tags of its open transactions: the board's search finds them
    transaction_ids: tuple[str, ...] = ()  # ours and, for OCPP 2.0.1, the station's own

    @property
    def href(self) -> str:
        from urllib.parse import quote

        return f"/ui/connectors/{quote(self.station_id, safe='')}/{self.connector_id}"


def board_row(
    x: Mapping[str, Any],
    station_id: str,
    activity: Mapping[int, TxActivity],
    last_seen: datetime | None,
    now: datetime,
    *,
    quiet: timedelta,
    live_evidence: timedelta = timedelta(minutes=2),
) -> BoardRow:
    sig = x["signals"]
    live = sig.get("liveStatus")
    stored = sig.get("persistedStatus")
    txs = sig.get("openTransactions", [])
    res = sig.get("activeReservations", [])
    return BoardRow(
        station_id=station_id,
        charge_point_id=x["chargePointId"],
        connector_id=x["connectorId"],
        verdict=x["verdict"],
        reasons=[reason_words(r, x, activity, now, quiet) for r in x["reasons"]],
        live="-" if not live else f"{live['status']}{_since(parse_iso(live.get('at')), now)}",
        stored="-" if not stored else f"{stored['status']}, {age(stored.get('ageSeconds', 0))} old",
        transaction=", ".join(f"{t['transactionId']}{_since(parse_iso(t.get('startTime')), now)}" for t in txs) or "-",
        reservation=", ".join(f"{r['reservationId'][:8]} {r['status']}" for r in res) or "-",
        last_seen="now (connected)"
        if sig.get("websocketPresent")
        else ("never" if last_seen is None else f"{age((now - as_utc(last_seen)).total_seconds())} ago"),
        # Only a busy connector can be stuck (a free one is not held, an offline one is simply gone).
        suspicions=suspicions(x, activity, now, quiet=quiet, live_evidence=live_evidence)
        if x["verdict"] == "busy"
        else [],
        online=bool(sig.get("websocketPresent")),
        tags=tuple(t["idTag"] for t in txs if t.get("idTag")),
        transaction_ids=tuple(
            str(v) for t in txs for v in (t.get("transactionId"), t.get("stationTransactionId")) if v is not None
        ),
    )
