"""Ground truth: what is really happening at each connector, to compare with what the CSMS believes.

Live snapshots come from `Fleet.truth()` / `ChargePoint.truth()`; the same
questions about any past moment are answered from a trace by `truth_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FiredFault", "ConnectorTruth", "ChargePointTruth", "truth_at"]


@dataclass(frozen=True, slots=True)
class FiredFault:
    t: float
    name: str
    connector: int | None
    index: int
    params: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ConnectorTruth:
    cp_id: str
    connector_id: int
    state: str  # model.State value
    operative: bool
    transaction_running: bool  # physically: energy may flow, the charger has a transaction
    transaction_id: int | str | None  # 1.6: as the CSMS gave it; 2.0.1: the station's, once acknowledged
    id_tag: str | None
    session_energy_wh: float  # of the running (or last) transaction
    register_wh: float
    reported_status: str | None  # the last StatusNotification the CSMS accepted (2.0.1: its connectorStatus)
    faults: tuple[FiredFault, ...]

    @property
    def honest(self) -> bool:
        """Does the last reported status agree with the physical state?"""
        from .model import State, status_of
        from .wire import connector_status

        status = status_of(State(self.state), self.operative)
        return self.reported_status in (status, connector_status(status))


@dataclass(frozen=True, slots=True)
class ChargePointTruth:
    cp_id: str
    connected: bool
    booted: bool
    muted: bool  # heartbeat_stop fired: connected but silent
    queued: int  # transaction messages waiting for the connection
    connectors: tuple[ConnectorTruth, ...]
    faults: tuple[FiredFault, ...]  # charge-point-wide ones


def truth_at(records: Iterable[dict[str, Any]], cp: str, connector: int, t: float) -> dict[str, Any]:
    """The connector's physical state, transaction and faults at time `t`, from trace records."""
    state = "unplugged"
    running = False
    tx_id: int | str | None = None
    live_local: object = None  # the local id of the transaction running now, if any
    faults: list[str] = []
    for r in records:
        if r.get("t", 0.0) > t:
            break
        if r.get("cp") != cp:
            continue
        kind = r.get("kind")
        if kind == "fault" and r.get("connector") in (connector, None):
            faults.append(r["fault"])
        if r.get("connector") != connector:
            continue
        if kind == "state":
            state = r["after"]
            running = state in ("charging", "suspended")
        elif kind == "tx" and r.get("event") == "start":
            tx_id, live_local = None, r.get("local_id")
        elif kind == "tx" and r.get("event") == "answered":
            if r.get("local_id") == live_local:  # a late answer for an ended transaction changes nothing
                tx_id = r.get("transaction_id")
        elif kind == "tx" and r.get("event") in ("stop", "lost", "start_lost"):
            if r.get("local_id") == live_local:
                tx_id, live_local = None, None
    return {"state": state, "transaction_running": running, "transaction_id": tx_id, "faults": faults}
