"""The pure rules of cluster presence: whose charge points count as connected, and what to publish.

A node holds the WebSockets of some charge points; every node must judge every charge point
the same way. Each node publishes one presence row per charge point it holds, and renews a
lease on its own node row. A presence row counts only while its node's lease is valid, so a
node that dies (SIGKILL, a cut cable) takes its charge points offline when the lease runs out,
never leaving them "connected" (and their connectors free) on the word of a dead process.
No IO here: the shell (`csms.cluster.node`) reads the rows and applies the plans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "NODE_ID_PATTERN",
    "ConnectorState",
    "Presence",
    "PresenceChange",
    "PresencePlan",
    "apply_changes",
    "check_node_id",
    "lease_valid",
    "live_presences",
    "plan_presence",
    "replaced_elsewhere",
    "connectors_from_json",
    "connectors_to_json",
    "signals_from_json",
    "version_from_json",
    "epoch_from_json",
]

# Node ids name NOTIFY channels (`csms_node_<id>`, at most 63 bytes) and appear in logs.
NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")


def check_node_id(node_id: str) -> str | None:
    """None when node_id may name a node, else why not."""
    if NODE_ID_PATTERN.fullmatch(node_id):
        return None
    return f"node id {node_id!r} must be 1 to 40 of A-Z a-z 0-9 _ -"


@dataclass(frozen=True)
class ConnectorState:
    """A connector's live status as the holding node has it (its last StatusNotification on this connection)."""

    status: str
    error_code: str | None
    updated_at: datetime
    transaction_id: int | None = None  # 2.0.1: inferred from this transaction's events (LiveConnector's)


@dataclass(frozen=True)
class Presence:
    """One charge point's WebSocket on one node."""

    charge_point_id: str
    node_id: str
    connected_at: datetime
    last_seen: datetime
    connectors: Mapping[int, ConnectorState] = field(default_factory=dict)
    # The holding node's other occupancy signals: connectors with a StartTransaction being stored, and when
    # its reconnect probe got its answer (LiveChargePoint.starts_in_flight, .reconnect_probe_answered).
    starting: frozenset[int] = frozenset()
    probe_answered: datetime | None = None
    # The OCPP version it speaks and, for 2.0.1, its open transactions by the station's own ids: what a
    # command from another node must say to it (csms.ocpp.commands).
    ocpp: str = "1.6"
    station_tx: Mapping[int, str] = field(default_factory=dict)
    # How often the holding node's lease lapsed and came back (its rows were buried meanwhile): a webhook
    # presence event names it, so "online again" after a lapse is a new event, not a copy of the first.
    epoch: int = 0
    # When the database first saw this connection (None until written): the newer of two connections of one
    # charge point is the one first seen later, by the database's clock, whatever the nodes' clocks say.
    first_seen: datetime | None = None


def lease_valid(lease_until: datetime | None, now: datetime) -> bool:
    """A node's word counts until its lease runs out (the instant itself is already too late)."""
    return lease_until is not None and now < lease_until


def live_presences(
    rows: Iterable[Presence], leases: Mapping[str, datetime], now: datetime, *, own_node: str | None = None
) -> dict[str, Presence]:
    """The presence rows that count at `now`: those of nodes whose lease is valid.

    A node's own rows are left out when `own_node` is given: its own registry is the truth for them
    (newer than any row it published). A charge point with rows of two live nodes (it moved and the
    first has not yet noticed) goes to the newest connection, as a reconnect replaces a connection on
    one node.
    """
    out: dict[str, Presence] = {}
    for p in rows:
        if p.node_id == own_node or not lease_valid(leases.get(p.node_id), now):
            continue
        held = out.get(p.charge_point_id)
        if held is None or p.connected_at > held.connected_at:
            out[p.charge_point_id] = p
    return out


@dataclass(frozen=True)
class PresenceChange:
    """A presence row as read: `gone` is a tombstone (the charge point left that node)."""

    presence: Presence
    gone: bool = False


def apply_changes(
    view: Mapping[str, Presence], changes: Iterable[PresenceChange], *, own_node: str, full: bool = False
) -> dict[str, Presence]:
    """Another node's view of who holds what, after the rows changed since its last read (or, `full`,
    after reading every row). One row per charge point: the row is the truth, whichever node it names;
    tombstones and rows naming this node leave the view (its own registry answers for those)."""
    out = {} if full else dict(view)
    for ch in changes:
        p = ch.presence
        if ch.gone or p.node_id == own_node:
            out.pop(p.charge_point_id, None)
        else:
            out[p.charge_point_id] = p
    return out


def replaced_elsewhere(changes: Iterable[PresenceChange], local: Mapping[str, datetime], *, own_node: str) -> list[str]:
    """Charge points held here (`local`: id -> when the database first saw our connection) whose row, just
    read, is another node's newer connection (first seen later): the charger reconnected there, so ours is a
    leftover (half-open) socket. Without this, a node whose socket never changes would only learn it when it
    next wrote that row (the 60 s last_seen step) or when its own silence detection fired. Both times are the
    database's: the nodes' clocks do not decide."""
    out = []
    for ch in changes:
        p = ch.presence
        at = local.get(p.charge_point_id)
        if not ch.gone and p.node_id != own_node and at is not None and p.first_seen is not None and at < p.first_seen:
            out.append(p.charge_point_id)
    return out


@dataclass(frozen=True)
class PresencePlan:
    """What a node writes this round: rows to insert or update, charge point ids whose row goes."""

    upserts: tuple[Presence, ...] = ()
    deletes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)


def plan_presence(
    published: Mapping[str, Presence], current: Mapping[str, Presence], *, last_seen_step: timedelta
) -> PresencePlan:
    """Batch the presence writes of one refresh round, not one per frame.

    A row is written when its charge point connected (or reconnected: a new connected_at), when a
    connector's live status changed, or when last_seen moved by `last_seen_step` or more; a row
    goes when its charge point is no longer held here.
    """
    upserts = []
    for cp_id, now_p in current.items():
        before = published.get(cp_id)
        if (
            before is None
            or before.connected_at != now_p.connected_at
            or before.connectors != now_p.connectors
            or before.starting != now_p.starting
            or before.probe_answered != now_p.probe_answered
            or before.ocpp != now_p.ocpp
            or before.station_tx != now_p.station_tx
            or before.epoch != now_p.epoch
            or now_p.last_seen - before.last_seen >= last_seen_step
        ):
            upserts.append(now_p)
    deletes = tuple(sorted(cp_id for cp_id in published if cp_id not in current))
    return PresencePlan(tuple(upserts), deletes)


def connectors_to_json(
    connectors: Mapping[int, ConnectorState],
    starting: Iterable[int] = (),
    probe_answered: datetime | None = None,
    *,
    ocpp: str = "1.6",
    station_tx: Mapping[int, str] | None = None,
    epoch: int = 0,
) -> dict[str, Any]:
    """Connector states as a JSON object (connector ids become string keys), with `starting` (connector ids),
    `probe` (an ISO time), `ocpp` (when not 1.6) and `stationTx` only when set, so the usual row stays small."""
    out: dict[str, Any] = {
        str(c): {
            "status": s.status,
            "errorCode": s.error_code,
            "at": s.updated_at.isoformat(),
            **({"tx": s.transaction_id} if s.transaction_id is not None else {}),
        }
        for c, s in sorted(connectors.items())
    }
    if starting:
        out["starting"] = sorted(starting)
    if probe_answered is not None:
        out["probe"] = probe_answered.isoformat()
    if ocpp != "1.6":
        out["ocpp"] = ocpp
    if station_tx:
        out["stationTx"] = {str(k): v for k, v in sorted(station_tx.items())}
    if epoch:
        out["epoch"] = epoch
    return out


def epoch_from_json(data: Mapping[str, Any] | None) -> int:
    """The `epoch` entry of connectors_to_json (0 when absent or unreadable)."""
    value = (data or {}).get("epoch")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def version_from_json(data: Mapping[str, Any] | None) -> tuple[str, dict[int, str]]:
    """The `ocpp` and `stationTx` entries of connectors_to_json ("1.6" and none when absent or unreadable)."""
    data = data or {}
    ocpp = data.get("ocpp") if isinstance(data.get("ocpp"), str) else "1.6"
    try:
        station_tx = {int(k): str(v) for k, v in (data.get("stationTx") or {}).items()}
    except (AttributeError, TypeError, ValueError):
        station_tx = {}
    return str(ocpp), station_tx


def signals_from_json(data: Mapping[str, Any] | None) -> tuple[frozenset[int], datetime | None]:
    """The `starting` and `probe` entries of connectors_to_json (empty, None when absent or unreadable)."""
    data = data or {}
    try:
        starting = frozenset(int(c) for c in data.get("starting") or ())
    except (TypeError, ValueError):
        starting = frozenset()
    try:
        probe = datetime.fromisoformat(data["probe"]) if data.get("probe") else None
    except (TypeError, ValueError):
        probe = None
    return starting, probe


def connectors_from_json(data: Mapping[str, Any] | None) -> dict[int, ConnectorState]:
    """The inverse of connectors_to_json; entries that do not parse are left out."""
    out: dict[int, ConnectorState] = {}
    for key, value in (data or {}).items():
        try:
            tx = value["tx"] if isinstance(value, Mapping) and "tx" in value else None
            out[int(key)] = ConnectorState(
                str(value["status"]),
                value.get("errorCode"),
                datetime.fromisoformat(value["at"]),
                tx if isinstance(tx, int) else None,
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out
