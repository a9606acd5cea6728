"""A charger's connects and disconnects as audit events: the history an offline charger otherwise lacks.

The console's charger page reads them back (newest first) to say when a charger came and went and why
("heartbeat lost", "closed by the charger: 1001 Soft reset"). Pure details here; `record` hands the row to
the database writer without waiting (`Database.submit`), so the connection's hot path is not slowed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from csms.db.cleanup_store import audit

if TYPE_CHECKING:
    from csms.context import Context

__all__ = ["ACTOR", "CONNECTED", "DISCONNECTED", "connected_details", "disconnected_details", "record"]

log = logging.getLogger("csms.server")
ACTOR = "system:ocpp"
CONNECTED = "charge_point.connected"
DISCONNECTED = "charge_point.disconnected"

# The close we send when maintenance marks a silent charger offline (csms.services.maintenance._close_quietly).
_OFFLINE_CLOSE = "offline:"


def connected_details(version: str, remote: str, authenticated: bool, replaced: bool) -> dict[str, Any]:
    """What the history says of a new connection: its OCPP version, from where, how it was let in."""
    return {
        "ocpp": version,
        "remote": remote,
        "authenticated": authenticated,
        **({"replaced": "an older connection of the same id (closed)"} if replaced else {}),
    }


def disconnected_details(
    code: int | None, reason: str | None, ping_failed: bool, connected_at: datetime, now: datetime, failed: bool
) -> dict[str, Any]:
    """Why a connection ended, in words an operator reads: heartbeat lost, the close code and reason, or an error."""
    if failed:
        why = "internal error (this connection only)"
    elif ping_failed or (reason or "").startswith(_OFFLINE_CLOSE):
        why = "heartbeat lost"
    elif code is None or code == 1006:
        why = "connection dropped (no close frame)"
    else:
        why = "closed"
    return {
        "why": why,
        "code": code,
        "reason": reason or None,
        "seconds_connected": max(0, round((now - connected_at).total_seconds())),
    }


def record(ctx: Context, cp_id: str, action: str, at: datetime, details: dict[str, Any]) -> None:
    """Queue the audit row; a database that is shutting down must not break the connection's own ending."""
    try:
        ctx.db.submit(lambda s: audit(s, actor=ACTOR, action=action, at=at, charge_point_id=cp_id, **details))
    except Exception as exc:  # DatabaseClosedError at shutdown
        log.info("charge_point.presence_not_recorded charge_point=%s action=%s (%s)", cp_id, action, exc)
