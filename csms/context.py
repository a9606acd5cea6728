"""The dependencies a running CSMS hands to its handlers and routes."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from csms.clock import Clock
from csms.config import Settings
from csms.db.database import Database
from csms.ocpp.registry import Registry
from csms.services.payment_provider import PaymentProvider, SimulatedPaymentProvider
from ocppj.connection import TokenBucket, TokenBuckets

__all__ = ["Context"]

# Message-rate buckets kept for this many charge point ids at most (about 200 bytes each); only ids
# that passed the handshake get one, and a bucket that has refilled is forgotten first.
_RATE_BUCKETS = 10_000


@dataclass
class Context:
    settings: Settings
    clock: Clock
    db: Database
    registry: Registry
    # Charge point ids allowed to connect (loaded at start, grown by registration).
    known_charge_points: set[str] = field(default_factory=set)
    # Ids with an accepted BootNotification (ever): only these may send anything but Boot and Heartbeat.
    accepted_charge_points: set[str] = field(default_factory=set)
    # Lab mode: how many charge points it registered (ever), and the unknown ids it let in that
    # have not booted yet (each holds one of the --max-auto-registered slots meanwhile).
    auto_registered: int = 0
    pending_registrations: set[str] = field(default_factory=set)
    payments: PaymentProvider = field(default_factory=SimulatedPaymentProvider)
    _connector_locks: dict[tuple[str, int], trio.Lock] = field(default_factory=dict)
    _message_buckets: TokenBuckets = field(default_factory=lambda: TokenBuckets(_RATE_BUCKETS))

    def registration_slots_left(self, cp_id: str) -> int:
        others = len(self.pending_registrations - {cp_id})
        return self.settings.max_auto_registered - self.auto_registered - others

    def message_bucket(self, cp_id: str, now: float) -> TokenBucket:
        """The charge point's message (and ping) rate bucket, the same for each of its connections:
        reconnecting must not buy a fresh burst. `now` is trio's clock, which the connection takes with."""
        s = self.settings
        return self._message_buckets.get(cp_id, s.ocpp_messages_per_second, s.ocpp_message_burst, now)

    def connector_lock(self, cp_id: str, connector_id: int) -> trio.Lock:
        """Serialises check-then-act flows (start, payment, unlock) on one connector."""
        key = (cp_id, connector_id)
        lock = self._connector_locks.get(key)
        if lock is None:
            lock = self._connector_locks[key] = trio.Lock()
        return lock

    # Which charge point owns each open transaction (filled at StartTransaction, refreshed from the
    # database by maintenance): MeterValues naming another one's transaction are dropped at once.
    transaction_owners: dict[int, str] = field(default_factory=dict)
    # Set when a provider cancel became due (csms.services.payment_calls wakes up).
    payment_cancels_due: trio.Event = field(default_factory=trio.Event)

    def nudge_payment_cancels(self) -> None:
        self.payment_cancels_due.set()
