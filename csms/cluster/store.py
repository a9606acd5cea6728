"""The cluster's rows in PostgreSQL: node leases, presence, forwarded calls.

Synchronous repository functions over a Session (run in worker threads by the shell). The lease
times are the database's clock (`now()`), so nodes with skewed clocks still agree on who is alive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from csms.cluster.presence import (
    Presence,
    PresenceChange,
    connectors_from_json,
    connectors_to_json,
    epoch_from_json,
    signals_from_json,
    version_from_json,
)
from csms.core.times import as_utc
from csms.db.database import rowcount

__all__ = [
    "load_presence",
    "booted_since",
    "Snapshot",
    "renew_lease",
    "release_node",
    "clear_own_presence",
    "write_presence",
    "load_snapshot",
    "sweep",
    "send_call",
    "claim_call",
    "answer_call",
    "load_answer",
    "unclaimed_calls",
    "withdraw_call",
    "Written",
]


@dataclass(frozen=True)
class Snapshot:
    """Other nodes' presence rows changed since a moment (all of them on a full read), every node's
    lease, and the database's `now` of the read."""

    now: datetime
    leases: dict[str, datetime]
    changes: list[PresenceChange]
    full: bool


def renew_lease(s: Session, node_id: str, lease_seconds: float) -> bool:
    """Insert or extend this node's lease; True when it had lapsed (or never existed): then the others
    stopped counting this node's presence rows, and the duty holder may have buried them."""
    held = s.execute(
        text("SELECT lease_until > now() FROM cluster_nodes WHERE node_id = :node FOR UPDATE"), {"node": node_id}
    ).scalar()
    s.execute(
        text(
            "INSERT INTO cluster_nodes (node_id, started_at, heartbeat_at, lease_until) "
            "VALUES (:node, now(), now(), now() + make_interval(secs => :lease)) "
            "ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
            "lease_until = excluded.lease_until"
        ),
        {"node": node_id, "lease": lease_seconds},
    )
    return not held


# Every node listens here too: a node that wrote presence rows says so (payload `presence:<node>`).
PRESENCE_CHANNEL = "csms_presence"

_BURY = "UPDATE cluster_presence SET gone = true, updated_at = clock_timestamp() WHERE node_id = :node AND NOT gone"


def release_node(s: Session, node_id: str) -> None:
    """A graceful stop: the lease ends now and the presence rows go, so the others judge at once."""
    s.execute(text(_BURY), {"node": node_id})
    s.execute(text("UPDATE cluster_nodes SET lease_until = now() WHERE node_id = :node"), {"node": node_id})


def clear_own_presence(s: Session, node_id: str) -> int:
    """At start: rows under this node id are a previous process's (its sockets died with it)."""
    return rowcount(s.execute(text(_BURY), {"node": node_id}))


# A connection's first write stamps first_seen_at: the database's clock less the connection's age as its node
# measured it (one clock, so the node's skew cancels; a first write that comes late still dates the connection
# when it was made). The node sends it back with every later write of that connection. So a node that
# refreshes an old connection after another node wrote a newer one is refused, whatever the clocks say.
_UPSERT = text("""
INSERT INTO cluster_presence
    (charge_point_id, node_id, connected_at, last_seen, connectors, gone, updated_at, first_seen_at)
SELECT r.charge_point_id, :node, r.connected_at, r.last_seen, r.connectors, false, clock_timestamp(),
       COALESCE(r.first_seen_at, clock_timestamp() - make_interval(secs => GREATEST(COALESCE(r.age, 0), 0)))
FROM json_to_recordset(CAST(:rows AS json))
     AS r(charge_point_id text, connected_at timestamptz, last_seen timestamptz, connectors json,
          first_seen_at timestamptz, age float8)
ON CONFLICT (charge_point_id) DO UPDATE SET node_id = excluded.node_id, connected_at = excluded.connected_at,
    last_seen = excluded.last_seen, connectors = excluded.connectors, gone = false, updated_at = clock_timestamp(),
    first_seen_at = CASE
        WHEN cluster_presence.node_id = excluded.node_id AND cluster_presence.connected_at = excluded.connected_at
        THEN COALESCE(cluster_presence.first_seen_at, excluded.first_seen_at)
        ELSE excluded.first_seen_at END
WHERE cluster_presence.node_id = excluded.node_id
   OR cluster_presence.gone
   OR COALESCE(cluster_presence.first_seen_at, '-infinity') <= excluded.first_seen_at
   OR NOT EXISTS (SELECT 1 FROM cluster_nodes n
                  WHERE n.node_id = cluster_presence.node_id AND n.lease_until > now())
RETURNING charge_point_id, first_seen_at
""")


@dataclass(frozen=True)
class Written:
    """What a presence write did: the ids whose row is another node's newer connection (ours was replaced),
    and when the database first saw each connection it took (to send back with its later writes)."""

    lost: set[str]
    first_seen: dict[str, datetime]


def write_presence(
    s: Session, node_id: str, upserts: Iterable[Presence], deletes: Iterable[str], *, now: datetime | None = None
) -> Written:
    """Apply a PresencePlan in one round trip each way; `now` is the node's clock, for the age of connections
    written for the first time (None: as old as this write)."""
    rows: list[dict[str, Any]] = [
        {
            "charge_point_id": p.charge_point_id,
            "connected_at": p.connected_at.isoformat(),
            "last_seen": p.last_seen.isoformat(),
            "connectors": connectors_to_json(
                p.connectors, p.starting, p.probe_answered, ocpp=p.ocpp, station_tx=p.station_tx, epoch=p.epoch
            ),
            "first_seen_at": None if p.first_seen is None else p.first_seen.isoformat(),
            "age": None if p.first_seen is not None or now is None else (now - p.connected_at).total_seconds(),
        }
        for p in upserts
    ]
    lost: set[str] = set()
    first_seen: dict[str, datetime] = {}
    if rows:
        taken = s.execute(_UPSERT, {"node": node_id, "rows": json.dumps(rows)}).all()
        first_seen = {cp: as_utc(at) for cp, at in taken}
        lost = {r["charge_point_id"] for r in rows} - first_seen.keys()
    gone = sorted(deletes)
    if gone:
        s.execute(text(_BURY + " AND charge_point_id = ANY(:ids)"), {"node": node_id, "ids": gone})
    if rows or gone:  # the other nodes read at once instead of at their next refresh
        s.execute(text("SELECT pg_notify(:channel, :msg)"), {"channel": PRESENCE_CHANNEL, "msg": f"presence:{node_id}"})
    return Written(lost, first_seen)


def booted_since(s: Session, since: datetime | None) -> tuple[set[str], datetime | None]:
    """Charge points whose BootNotification was accepted (by any node) at or after `since` (all when None),
    and the newest such time: a node learns that a charge point another node booted may send to it."""
    query = "SELECT id, last_boot_at FROM charge_points WHERE last_boot_at IS NOT NULL"
    rows = s.execute(
        text(query + ("" if since is None else " AND last_boot_at >= :since")),
        {} if since is None else {"since": since},
    ).all()
    newest = max((as_utc(at) for _, at in rows), default=since)
    return {cp_id for cp_id, _ in rows}, newest


def load_snapshot(s: Session, node_id: str, since: datetime | None = None) -> Snapshot:
    """Other nodes' presence rows changed at or after `since` (tombstones included), or, with None, every
    row that is not a tombstone: a round reads what changed, not the whole fleet."""
    now = as_utc(s.execute(text("SELECT now()")).scalar_one())
    leases = {n: as_utc(t) for n, t in s.execute(text("SELECT node_id, lease_until FROM cluster_nodes"))}
    cols = (
        "SELECT charge_point_id, node_id, connected_at, last_seen, connectors, gone, first_seen_at "
        "FROM cluster_presence WHERE node_id <> :node"
    )
    if since is None:
        rows = s.execute(text(cols + " AND NOT gone"), {"node": node_id})
    else:
        rows = s.execute(text(cols + " AND updated_at >= :since"), {"node": node_id, "since": since})
    changes = [
        PresenceChange(_presence(cp, node, at, seen, conns, first), bool(gone))
        for cp, node, at, seen, conns, gone, first in rows
    ]
    return Snapshot(now, leases, changes, since is None)


def load_presence(s: Session, cp_id: str) -> tuple[PresenceChange, datetime, datetime] | None:
    """One charge point's presence row with its node's lease and the database's now (None: no row)."""
    row = s.execute(
        text(
            "SELECT p.charge_point_id, p.node_id, p.connected_at, p.last_seen, p.connectors, p.gone, p.first_seen_at, "
            "n.lease_until, now() "
            "FROM cluster_presence p JOIN cluster_nodes n ON n.node_id = p.node_id WHERE p.charge_point_id = :cp"
        ),
        {"cp": cp_id},
    ).first()
    if row is None:
        return None
    cp, node, at, seen, conns, gone, first, lease_until, now = row
    return PresenceChange(_presence(cp, node, at, seen, conns, first), bool(gone)), as_utc(lease_until), as_utc(now)


def _presence(cp: str, node: str, at: datetime, seen: datetime, conns: Any, first: datetime | None) -> Presence:
    starting, probe = signals_from_json(conns)
    ocpp, station_tx = version_from_json(conns)
    connectors = connectors_from_json(conns)
    epoch = epoch_from_json(conns)
    first_seen = None if first is None else as_utc(first)
    return Presence(
        cp, node, as_utc(at), as_utc(seen), connectors, starting, probe, ocpp, station_tx, epoch, first_seen
    )


def sweep(
    s: Session,
    *,
    tombstones_seconds: float = 600,
    keep_calls_seconds: float = 3600,
    forget_nodes_seconds: float = 86400,
) -> tuple[int, int]:
    """The duty holder's housekeeping: presence rows of expired leases become tombstones (readers
    learn of them), old tombstones and forwarded calls go, and nodes gone for a day."""
    buried = rowcount(
        s.execute(
            text(
                "UPDATE cluster_presence p SET gone = true, updated_at = clock_timestamp() FROM cluster_nodes n "
                "WHERE n.node_id = p.node_id AND NOT p.gone AND n.lease_until <= now()"
            )
        )
    )
    s.execute(
        text("DELETE FROM cluster_presence WHERE gone AND updated_at < now() - make_interval(secs => :keep)"),
        {"keep": tombstones_seconds},
    )
    calls = rowcount(
        s.execute(
            text("DELETE FROM cluster_calls WHERE created_at < now() - make_interval(secs => :keep)"),
            {"keep": keep_calls_seconds},
        )
    )
    s.execute(
        text("DELETE FROM cluster_nodes WHERE lease_until < now() - make_interval(secs => :forget)"),
        {"forget": forget_nodes_seconds},
    )
    return buried, calls


def channel(node_id: str) -> str:
    """The NOTIFY channel a node listens on (node ids are checked: letters, digits, _ and -)."""
    return f"csms_node_{node_id}"


def send_call(
    s: Session, call_id: str, origin: str, target: str, cp_id: str, action: str, payload: dict[str, Any], timeout: float
) -> None:
    """The call row and its NOTIFY in one transaction: the target hears of it only once it is readable."""
    s.execute(
        text(
            "INSERT INTO cluster_calls (id, origin_node, target_node, charge_point_id, action, payload, timeout_seconds, "  # noqa: E501
            "state, created_at) VALUES (:id, :origin, :target, :cp, :action, CAST(:payload AS json), :timeout, 'sent', "
            "now())"
        ),
        {
            "id": call_id,
            "origin": origin,
            "target": target,
            "cp": cp_id,
            "action": action,
            "payload": json.dumps(payload),
            "timeout": timeout,
        },
    )
    s.execute(text("SELECT pg_notify(:channel, :msg)"), {"channel": channel(target), "msg": f"call:{call_id}"})


@dataclass(frozen=True)
class ClaimedCall:
    call_id: str
    origin: str
    charge_point_id: str
    action: str
    payload: dict[str, Any]
    seconds_left: float


def claim_call(s: Session, call_id: str, node_id: str) -> ClaimedCall | None:
    """Take a call for this node exactly once (a repeated NOTIFY or a rescan finds it taken)."""
    row = s.execute(
        text(
            "UPDATE cluster_calls SET state = 'running' WHERE id = :id AND target_node = :node AND state = 'sent' "
            "RETURNING origin_node, charge_point_id, action, payload, "
            "timeout_seconds - EXTRACT(EPOCH FROM (now() - created_at))"
        ),
        {"id": call_id, "node": node_id},
    ).first()
    if row is None:
        return None
    origin, cp_id, action, payload, left = row
    return ClaimedCall(call_id, origin, cp_id, action, payload or {}, float(left))


def withdraw_call(s: Session, call_id: str) -> bool:
    """Take back a call its target has not claimed (the charge point left it); False when it was claimed.
    Asking again is harmless (a first try that committed after its asker gave up on it counts)."""
    row = s.execute(
        text(
            "UPDATE cluster_calls SET state = 'withdrawn' WHERE id = :id AND state IN ('sent', 'withdrawn') "
            "RETURNING id"
        ),
        {"id": call_id},
    ).first()
    return row is not None


def unclaimed_calls(s: Session, node_id: str) -> list[str]:
    """Calls sent to this node while it was not listening (its LISTEN connection was being re-made)."""
    return list(
        s.execute(
            text("SELECT id FROM cluster_calls WHERE target_node = :node AND state = 'sent' ORDER BY created_at"),
            {"node": node_id},
        ).scalars()
    )


def answer_call(s: Session, call_id: str, origin: str, answer: dict[str, Any]) -> None:
    s.execute(
        text(
            "UPDATE cluster_calls SET state = 'answered', answer = CAST(:answer AS json), answered_at = now() "
            "WHERE id = :id"
        ),
        {"id": call_id, "answer": json.dumps(answer)},
    )
    s.execute(text("SELECT pg_notify(:channel, :msg)"), {"channel": channel(origin), "msg": f"answer:{call_id}"})


def load_answer(s: Session, call_id: str) -> dict[str, Any] | None:
    row = s.execute(
        text("SELECT answer FROM cluster_calls WHERE id = :id AND state = 'answered'"), {"id": call_id}
    ).first()
    return None if row is None else row[0]
