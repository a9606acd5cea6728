"""Live state: who is connected right now and what each connector last said.

This is the seeds' `_chargePointStatusDict`: in memory only, rebuilt from the
wire. A reconnect of the same id (which passed the same handshake) replaces the old connection.
In a cluster (`--node-id`) a charge point may be held by another node: `get` then answers a
`RemoteChargePoint` (its statuses as that node published them, calls forwarded to it), while
`local` and iteration stay this process's own connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from csms.core.maintenance import SilentAsk
from ocppj import OcppConnection

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

__all__ = ["LiveConnector", "LiveChargePoint", "RemoteChargePoint", "Registry", "STATUS_ANSWER_WINDOW"]

# A StatusNotification this soon after the answer to our TriggerMessage(StatusNotification) is taken
# for what the trigger asked for (chargers send it just after answering), not the charger's own report.
STATUS_ANSWER_WINDOW = timedelta(seconds=2)


def _settle_window(connected_at: datetime, probe_answered: datetime | None, settle: timedelta) -> timedelta:
    if probe_answered is None:
        return settle
    return min(settle, probe_answered - connected_at + STATUS_ANSWER_WINDOW)


@dataclass
class LiveConnector:
    status: str
    error_code: str | None
    updated_at: datetime
    # OCPP 2.0.1: inferred from this transaction's chargingState, not said by the connector (core.occupancy)
    transaction_id: int | None = None


@dataclass(eq=False)
class LiveChargePoint:
    id: str
    connection: OcppConnection[WebSocketConnection]
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
    # Connectors that sent a StatusNotification of their own accord since connect (not one we asked for).
    self_reported: set[int] = field(default_factory=set)
    # Our stale-silent-status TriggerMessages, per connector (maintenance.select_stale_silent_statuses).
    silent_asks: dict[int, SilentAsk] = field(default_factory=dict)
    # When our TriggerMessage(StatusNotification) after a reconnect got its answer (csms.services.maintenance).
    reconnect_probe_answered: datetime | None = None
    # StartTransactions received and not yet stored, per connector: a car is starting there now.
    starts_in_flight: dict[int, int] = field(default_factory=dict)
    # ... and how many have finished (stored or failed), per connector: a start that ends while the
    # occupancy read is on its way is seen by comparing this before and after (`start_mark`).
    starts_done: dict[int, int] = field(default_factory=dict)
    # TriggerMessage(StatusNotification) calls on their way, and when each last got its answer (None: all connectors).
    # Told of every live status (set by Registry.attach; in a cluster the presence is published at once).
    on_change: Callable[[], None] | None = field(default=None, repr=False)
    # OCPP 2.0.1: our transaction id -> the station's, and our RequestStartTransaction remoteStartIds
    # -> (connector, id tag), learnt on this connection.
    station_tx: dict[int, str] = field(default_factory=dict)
    remote_starts: dict[int, tuple[int, str]] = field(default_factory=dict)
    _status_asks: dict[int | None, int] = field(default_factory=dict, init=False, repr=False)
    _status_answered: dict[int | None, datetime] = field(default_factory=dict, init=False, repr=False)

    @contextmanager
    def asking_status(self, connector_id: int | None, now: Callable[[], datetime]) -> Iterator[None]:
        """Around our TriggerMessage(StatusNotification) for a connector (None: all): a StatusNotification
        for it while the call is on its way, or within STATUS_ANSWER_WINDOW of its answer (whatever the
        answer: a charger that refused sends nothing to mistake), is taken for the one we asked for."""
        self._status_asks[connector_id] = self._status_asks.get(connector_id, 0) + 1
        try:
            yield
        finally:
            left = self._status_asks.pop(connector_id) - 1
            if left:
                self._status_asks[connector_id] = left
            self._status_answered[connector_id] = now()

    def settle_window(self, settle: timedelta) -> timedelta:
        """How long after connecting this connection's unreported connectors stay not-free: `settle`, cut short
        STATUS_ANSWER_WINDOW after the answer to our reconnect probe (a charger that ignores it has had its say)."""
        return _settle_window(self.connected_at, self.reconnect_probe_answered, settle)

    def start_mark(self, connector_id: int) -> tuple[int, int]:
        """(starts in flight, starts done) on a connector: taken before a database read and compared after it."""
        return self.starts_in_flight.get(connector_id, 0), self.starts_done.get(connector_id, 0)

    @contextmanager
    def starting(self, connector_id: int) -> Iterator[None]:
        """Around storing a StartTransaction: until it is stored (and so an open transaction), the
        occupancy verdict still knows a car is starting on the connector."""
        self.starts_in_flight[connector_id] = self.starts_in_flight.get(connector_id, 0) + 1
        if self.on_change is not None:  # in a cluster, the other nodes see the start too
            self.on_change()
        try:
            yield
        finally:
            self.starts_done[connector_id] = self.starts_done.get(connector_id, 0) + 1
            left = self.starts_in_flight.pop(connector_id) - 1
            if left:
                self.starts_in_flight[connector_id] = left
            if self.on_change is not None:
                self.on_change()

    def status_received(
        self, connector_id: int, status: str, error_code: str | None, now: datetime, transaction_id: int | None = None
    ) -> bool:
        """A StatusNotification becomes the connector's live status; returns whether the charger sent it of
        its own accord. A new status ends the back-off of the stale-silent-status asks."""
        asked = any(
            self._status_asks.get(k)
            or (k in self._status_answered and now - self._status_answered[k] <= STATUS_ANSWER_WINDOW)
            for k in (connector_id, None)
        )
        if not asked:
            self.self_reported.add(connector_id)
        before = self.connectors.get(connector_id)
        if before is None or before.status != status:
            self.silent_asks.pop(connector_id, None)
        self.connectors[connector_id] = LiveConnector(status, error_code, now, transaction_id)
        if self.on_change is not None:
            self.on_change()
        return not asked


@dataclass(eq=False)
class RemoteChargePoint:
    """A charge point whose WebSocket another live node holds (csms.cluster): what that node published.

    `connection` forwards calls to the holding node (csms.cluster.forwarding); the holding node marks
    its own status asks, so `asking_status` here is a no-op. `starts_in_flight` and
    `reconnect_probe_answered` are as that node published them, so occupancy judges them alike.
    """

    id: str
    node_id: str
    connection: Any
    connected_at: datetime
    last_seen: datetime
    connectors: dict[int, LiveConnector] = field(default_factory=dict)
    heartbeat_interval: int = 0
    starts_in_flight: dict[int, int] = field(default_factory=dict)
    reconnect_probe_answered: datetime | None = None
    epoch: int = 0  # its node's lease lapses (csms.cluster.presence.Presence.epoch)
    # OCPP 2.0.1: its open transactions by the station's ids, as the holding node published them; the
    # remoteStartIds this node asked for (a Started naming one reaches the holding node, which links by tag).
    station_tx: dict[int, str] = field(default_factory=dict)
    remote_starts: dict[int, tuple[int, str]] = field(default_factory=dict)

    def settle_window(self, settle: timedelta) -> timedelta:
        """As LiveChargePoint.settle_window, with the holding node's probe answer."""
        return _settle_window(self.connected_at, self.reconnect_probe_answered, settle)

    def asking_status(self, connector_id: int | None, now: Callable[[], datetime]) -> AbstractContextManager[None]:
        return nullcontext()


class Registry:
    def __init__(self) -> None:
        self._by_id: dict[str, LiveChargePoint] = {}
        # Set by csms.cluster in cluster mode: the charge points other live nodes hold.
        self.elsewhere: Callable[[str], RemoteChargePoint | None] | None = None
        self.everyone_else: Callable[[], list[RemoteChargePoint]] | None = None
        # The other nodes' charge points as (connection time, epoch) only: the watcher's every-second look.
        self.presence_elsewhere: Callable[[], dict[str, tuple[datetime, int]]] | None = None
        # Set by csms.cluster: told on every attach and detach (presence is published at once).
        self.on_change: Callable[[], None] | None = None
        # Set by csms.cluster: asks the database for a charge point not (yet) in this node's view.
        self.look_up: Callable[[str], Awaitable[RemoteChargePoint | None]] | None = None

    def attach(self, cp: LiveChargePoint) -> LiveChargePoint | None:
        """Make cp the live one for its id; returns the one it replaced, if any."""
        old = self._by_id.get(cp.id)
        self._by_id[cp.id] = cp
        cp.on_change = self.on_change
        if self.on_change is not None:
            self.on_change()
        return old

    def detach(self, cp: LiveChargePoint) -> bool:
        """Forget cp, unless a newer connection of the same id already replaced it."""
        if self._by_id.get(cp.id) is cp:
            del self._by_id[cp.id]
            if self.on_change is not None:
                self.on_change()
            return True
        return False

    def get(self, cp_id: str) -> LiveChargePoint | RemoteChargePoint | None:
        """The charge point's connection here, else (in a cluster) on another live node, else None."""
        cp = self._by_id.get(cp_id)
        if cp is None and self.elsewhere is not None:
            return self.elsewhere(cp_id)
        return cp

    async def find(self, cp_id: str, *, fresh: bool = False) -> LiveChargePoint | RemoteChargePoint | None:
        """As `get`, and in a cluster it asks the database about a charge point this node has not seen
        elsewhere yet (it connected to another node within the last refresh), or with `fresh` about any
        charge point another node holds (its statuses as of now, not of our last read)."""
        cp = self._by_id.get(cp_id)
        if cp is not None or self.look_up is None:
            return cp
        remote = None if fresh or self.elsewhere is None else self.elsewhere(cp_id)
        return remote if remote is not None else await self.look_up(cp_id)

    def local(self, cp_id: str) -> LiveChargePoint | None:
        """This process's own connection only (maintenance acts on sockets it holds)."""
        return self._by_id.get(cp_id)

    def all_live(self) -> list[LiveChargePoint | RemoteChargePoint]:
        """Every connected charge point: this process's, then (in a cluster) the other live nodes'."""
        here: list[LiveChargePoint | RemoteChargePoint] = list(self._by_id.values())
        return here + (self.everyone_else() if self.everyone_else is not None else [])

    def is_connected(self, cp_id: str) -> bool:
        return self.get(cp_id) is not None

    def live_status(self, cp_id: str, connector_id: int) -> LiveConnector | None:
        cp = self.get(cp_id)
        return None if cp is None else cp.connectors.get(connector_id)

    def __len__(self) -> int:
        """This process's connections (the /metrics gauge, shutdown)."""
        return len(self._by_id)

    def __iter__(self) -> Iterator[LiveChargePoint]:
        """This process's connections only."""
        return iter(list(self._by_id.values()))
