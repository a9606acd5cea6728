"""Live state: who is connected right now and what each connector last said.

This is the seeds' `_chargePointStatusDict`: in memory only, rebuilt from the
wire. A reconnect of the same id (which passed the same handshake) replaces the old connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .ocppj import OcppConnection

__all__ = ["LiveConnector", "LiveChargePoint", "Registry"]


@dataclass
class LiveConnector:
    status: str
    error_code: str | None
    updated_at: datetime


@dataclass(eq=False)
class LiveChargePoint:
    id: str
    connection: OcppConnection
    connected_at: datetime
    last_seen: datetime
    heartbeat_interval: int
    connectors: dict[int, LiveConnector] = field(default_factory=dict)
    booted_at: datetime | None = None
    # Connectors we sent TriggerMessage StatusNotification for (0: all of them).
    triggered: set[int] = field(default_factory=set)
    ping_failed: bool = False
    # When each connector last sent MeterValues (any, with or without an energy register).
    meter_seen: dict[int, datetime] = field(default_factory=dict)
    # Open transactions we sent a quiet-transaction TriggerMessage for, and when.
    quiet_probes: dict[int, datetime] = field(default_factory=dict)
    # When a StopTransaction last arrived for each connector (our clock, not the charger's timestamp).
    stops_seen: dict[int, datetime] = field(default_factory=dict)
    # Connectors we sent a contradicted-status TriggerMessage for, and when.
    status_probes: dict[int, datetime] = field(default_factory=dict)
    remote: str = ""  # the peer's address, for the logs
    authenticated: bool = False  # HTTP Basic checked at the handshake (False: lab mode let it in)


class Registry:
    def __init__(self) -> None:
        self._by_id: dict[str, LiveChargePoint] = {}

    def attach(self, cp: LiveChargePoint) -> LiveChargePoint | None:
        """Make cp the live one for its id; returns the one it replaced, if any."""
        old = self._by_id.get(cp.id)
        self._by_id[cp.id] = cp
        return old

    def detach(self, cp: LiveChargePoint) -> bool:
        """Forget cp, unless a newer connection of the same id already replaced it."""
        if self._by_id.get(cp.id) is cp:
            del self._by_id[cp.id]
            return True
        return False

    def get(self, cp_id: str) -> LiveChargePoint | None:
        return self._by_id.get(cp_id)

    def is_connected(self, cp_id: str) -> bool:
        return cp_id in self._by_id

    def live_status(self, cp_id: str, connector_id: int) -> LiveConnector | None:
        cp = self._by_id.get(cp_id)
        return None if cp is None else cp.connectors.get(connector_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(list(self._by_id.values()))
