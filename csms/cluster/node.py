"""This process as a node of a cluster (`csms serve --node-id`): the IO shell of csms.cluster.

Three tasks, started with the server:
- publish: every `cluster_refresh_seconds` (and at once on a connect or disconnect) renew this
  node's lease, write the presence rows that changed (csms.cluster.presence.plan_presence) and
  read every other live node's rows, in one transaction;
- listen: a dedicated connection LISTENs on `csms_node_<id>` for calls forwarded here and for
  answers to calls this node forwarded (the NOTIFY carries a row id; payloads live in rows, so
  NOTIFY's 8000-byte limit never bites);
- duties: a session advisory lock on a dedicated connection: whoever holds it runs the
  cluster-wide maintenance (csms.services.maintenance); the lock goes with the holder's
  connection (a dead node's at once, a hung one's after idle_session_timeout).
"""

from __future__ import annotations

import logging
import secrets
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import trio
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from csms.cluster import store
from csms.cluster.forwarding import RemoteConnection, answer_of, result_of
from csms.cluster.presence import (
    ConnectorState,
    Presence,
    PresencePlan,
    apply_changes,
    check_node_id,
    lease_valid,
    live_presences,
    plan_presence,
    replaced_elsewhere,
)
from csms.db.database import is_outage
from csms.db.engine import normalise_url
from csms.ocpp.registry import LiveConnector, RemoteChargePoint
from ocppj import V16, OcppjError
from ocppj.versions import BY_NAME

if TYPE_CHECKING:
    from csms.context import Context

__all__ = ["ClusterNode", "ClusterConfigError", "run_cluster", "check_cluster_settings"]

log = logging.getLogger("csms.cluster")
T = TypeVar("T")
# Session advisory lock of the cluster duties, per schema (two clusters may share one database).
_DUTIES_LOCK = "SELECT pg_try_advisory_lock(hashtext('unstuck.cluster.duties.' || current_schema()))"
# A hung holder (SIGSTOP, a stuck event loop) stops pinging its duty connection; PostgreSQL closes
# it after this and the lock passes on. Must be well above the refresh interval.
_DUTY_IDLE_TIMEOUT = "10s"
# last_seen decides nothing on other nodes (each node judges its own sockets' silence): a coarse copy.
_LAST_SEEN_STEP = timedelta(seconds=60)
# A round reads the rows changed since its last read, less a margin (a write's timestamp precedes its
# commit by its transaction's length: the presence write commits alone, and the margin is the lease, at
# least this, so a commit that late comes with a lapsed lease anyway); every minute it reads them all again.
_MIN_READ_MARGIN = timedelta(seconds=2)
_FULL_READ_SECONDS = 60.0
_MIN_ROUND_GAP = 0.05
# last_boot_at is the booting node's clock: re-read boots this far back, in case clocks differ.
_BOOT_CLOCK_MARGIN = timedelta(seconds=60)
# The dedicated LISTEN and duty connections: libpq TCP keepalives, so a silently dead peer (a failover,
# a cut cable) errors within about half a minute instead of a wait that times out forever.
_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}
# Every this often the listener checks its connection (SELECT 1 within as long) and rescans for calls
# whose NOTIFY it missed; the duty holder pings its connection within as long too.
_LIVENESS_SECONDS = 5.0
# A REST look-up or a forwarded call's database trip waits at most this long for a worker (then: not known).
_REQUEST_DB_TIMEOUT = 2.0
# A forwarded call's asker looks this often whether the charge point left the target (memory only).
_MOVED_POLL_SECONDS = 0.2


class ClusterConfigError(ValueError):
    """Cluster mode asked for where it cannot run (a bad node id, a database other than PostgreSQL)."""


def check_cluster_settings(node_id: str, db_url: str) -> None:
    problem = check_node_id(node_id)
    if problem is not None:
        raise ClusterConfigError(problem)
    if make_url(normalise_url(db_url)).get_backend_name() != "postgresql":
        raise ClusterConfigError(
            "--node-id (cluster mode) needs PostgreSQL: every node reads the others' presence "
            "and forwards commands through it; SQLite serves one node only"
        )


@dataclass(frozen=True)
class _View:
    """The last read of the other nodes' rows: the database's clock then, and our monotonic clock then."""

    presences: dict[str, Presence]
    leases: dict[str, datetime]
    db_now: datetime
    read_at: float


class ClusterNode:
    def __init__(self, ctx: Context, node_id: str) -> None:
        self.ctx = ctx
        self.node_id = node_id
        s = ctx.settings
        self.refresh = s.cluster_refresh_seconds
        self.lease = s.cluster_lease_seconds
        self.duties_held = False
        self.rounds = 0
        self.epoch = 0  # bumped at each lapse of our lease (Presence.epoch); read by the webhook watcher
        # Our connections as the database first saw them: id -> (connected_at, first_seen), sent with each write.
        self._first_seen: dict[str, tuple[datetime, datetime]] = {}
        self._view = _View({}, {}, datetime.min.replace(tzinfo=UTC), 0.0)
        self._full_read_at: float | None = None  # when (trio clock) every presence row was last read
        self._published: dict[str, Presence] = {}
        self._booted_at: datetime | None = None  # the newest boot time read so far (last_boot_at)
        self._changed = trio.Event()
        self._waiters: dict[str, trio.Event] = {}
        self._db_limiter = trio.CapacityLimiter(4)  # per-request trips: look-ups, forwards, claims, the sweep
        self._round_limiter = trio.CapacityLimiter(1)  # the lease renewal never queues behind requests
        self._idle_timeout_unsupported = False
        self._nursery: trio.Nursery | None = None
        url = make_url(normalise_url(s.db_url)).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)

    # ------------------------------------------------------------------ reading, for every node's routes
    def _estimated_db_now(self) -> datetime:
        return self._view.db_now + timedelta(seconds=max(0.0, trio.current_time() - self._view.read_at))

    def elsewhere(self, cp_id: str) -> RemoteChargePoint | None:
        """The charge point as another live node holds it (Registry.get asks this when it is not here)."""
        p = self._view.presences.get(cp_id)
        if p is None or not lease_valid(self._view.leases.get(p.node_id), self._estimated_db_now()):
            return None
        return self._remote(p)

    async def look_up(self, cp_id: str) -> RemoteChargePoint | None:
        """Registry.find for a charge point not in the view: its row, read now (it may have connected to
        another node since our last read), kept in the view when it counts."""
        try:
            found = await self._db(store.load_presence, cp_id, timeout=_REQUEST_DB_TIMEOUT)
        except trio.TooSlowError:
            log.warning("cluster.look_up_slow charge_point=%s (answered as not known)", cp_id)
            return None
        if found is None:
            self._view.presences.pop(cp_id, None)
            return None
        change, lease_until, db_now = found
        p = change.presence
        if change.gone or p.node_id == self.node_id or not lease_valid(lease_until, db_now):
            self._view.presences.pop(cp_id, None)
            return None
        self._view.presences[cp_id] = p
        known = self._view.leases.get(p.node_id)
        self._view.leases[p.node_id] = lease_until if known is None else max(known, lease_until)
        return self._remote(p)

    def everyone_else(self) -> list[RemoteChargePoint]:
        live = live_presences(
            self._view.presences.values(), self._view.leases, self._estimated_db_now(), own_node=self.node_id
        )
        return [self._remote(p) for cp_id, p in live.items() if self.ctx.registry.local(cp_id) is None]

    def presence_elsewhere(self) -> dict[str, tuple[datetime, int]]:
        """Every other live node's charge points: id -> (connection time, epoch), without building a
        RemoteChargePoint each (the webhook watcher asks every second)."""
        live = live_presences(
            self._view.presences.values(), self._view.leases, self._estimated_db_now(), own_node=self.node_id
        )
        local = self.ctx.registry.local
        return {cp_id: (p.connected_at, p.epoch) for cp_id, p in live.items() if local(cp_id) is None}

    def _remote(self, p: Presence) -> RemoteChargePoint:
        return RemoteChargePoint(
            p.charge_point_id,
            p.node_id,
            RemoteConnection(
                self, p.node_id, p.charge_point_id, self.ctx.settings.call_timeout_seconds, BY_NAME.get(p.ocpp, V16)
            ),
            p.connected_at,
            p.last_seen,
            {
                c: LiveConnector(st.status, st.error_code, st.updated_at, st.transaction_id)
                for c, st in p.connectors.items()
            },
            starts_in_flight=dict.fromkeys(p.starting, 1),
            reconnect_probe_answered=p.probe_answered,
            station_tx=dict(p.station_tx),
            epoch=p.epoch,
        )

    # ------------------------------------------------------------------ tasks
    async def _db(self, fn: Any, *args: Any, timeout: float | None = None) -> Any:
        """fn in a transaction in a worker thread; with `timeout`, trio.TooSlowError after that long (the
        thread is abandoned: its transaction ends on its own)."""

        def work() -> Any:
            with self.ctx.db.sessions() as session, session.begin():
                return fn(session, *args)

        if timeout is None:
            return await trio.to_thread.run_sync(work, limiter=self._db_limiter)
        with trio.fail_after(timeout):
            return await trio.to_thread.run_sync(work, limiter=self._db_limiter, abandon_on_cancel=True)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Publish, listen and hold duties until cancelled; then hand over at once (lease ended, rows gone)."""
        cleared = await self._db(store.clear_own_presence, self.node_id)
        await self._db(store.renew_lease, self.node_id, self.lease)
        await self._round()
        log.info(
            "cluster.joined node=%s refresh=%.2fs lease=%.1fs stale_rows_cleared=%d other_charge_points=%d",
            self.node_id,
            self.refresh,
            self.lease,
            cleared,
            len(self._view.presences),
        )
        self.ctx.registry.elsewhere = self.elsewhere
        self.ctx.registry.everyone_else = self.everyone_else
        self.ctx.registry.presence_elsewhere = self.presence_elsewhere
        self.ctx.registry.look_up = self.look_up
        self.ctx.registry.on_change = self._mark_changed
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self._listen)
                nursery.start_soon(self._hold_duties)
                nursery.start_soon(self._publish)
                task_status.started(self)
        finally:
            self.ctx.registry.on_change = None
            self.ctx.registry.elsewhere = self.ctx.registry.everyone_else = self.ctx.registry.look_up = None
            self.ctx.registry.presence_elsewhere = None
            with trio.move_on_after(3) as scope:
                scope.shield = True
                try:
                    await self._db(store.release_node, self.node_id)
                    log.info("cluster.left node=%s (lease ended, presence rows removed)", self.node_id)
                except Exception as exc:
                    log.warning("cluster.leave_failed node=%s error=%r (its lease runs out instead)", self.node_id, exc)

    def _failed(self, exc: BaseException, message: str, *args: Any) -> None:
        """A retried task's failure: a database outage once per outage (the Database's OutageLog), else a line."""
        if is_outage(exc):
            self.ctx.db.outage.failed("cluster", exc)
        else:
            log.warning(message, *args)

    def _mark_changed(self) -> None:
        self._changed.set()

    async def _publish(self) -> None:
        last = trio.current_time()
        while True:
            with trio.move_on_after(self.refresh):
                await self._changed.wait()
            # Changes arriving together (a connect and its statuses, a burst) go in one round; at most
            # twenty rounds a second however busy the fleet.
            await trio.sleep(max(_MIN_ROUND_GAP - (trio.current_time() - last), 0.02))
            last = trio.current_time()
            try:
                await self._round()
            except Exception as exc:
                # Our lease is not renewed: after it runs out the others judge our charge points offline,
                # which is the safe way to be wrong.
                self._failed(exc, "cluster.publish_failed node=%s error=%r", self.node_id, exc)
                await trio.sleep(self.refresh)

    async def _round(self) -> None:
        self._changed = trio.Event()
        current = {
            live.id: Presence(
                live.id,
                self.node_id,
                live.connected_at,
                live.last_seen,
                {
                    c: ConnectorState(st.status, st.error_code, st.updated_at, st.transaction_id)
                    for c, st in live.connectors.items()
                },
                frozenset(c for c, n in live.starts_in_flight.items() if n),
                live.reconnect_probe_answered,
                live.connection.version.name,
                dict(live.station_tx),
                self.epoch,
                self._first_seen_of(live.id, live.connected_at),
            )
            for live in self.ctx.registry
        }
        plan = plan_presence(self._published, current, last_seen_step=_LAST_SEEN_STEP)

        since = None if self._booted_at is None else self._booted_at - _BOOT_CLOCK_MARGIN

        full = self._full_read_at is None or trio.current_time() - self._full_read_at >= _FULL_READ_SECONDS
        changed_since = None if full else self._view.db_now - max(_MIN_READ_MARGIN, timedelta(seconds=self.lease))

        now = self.ctx.clock.now()

        def write(s: Session) -> tuple[store.Written, int]:
            epoch = self.epoch
            if store.renew_lease(s, self.node_id, self.lease) and self.rounds:
                # Our lease lapsed (a stall, a database outage): rows may have been buried meanwhile, so
                # every connection is written again, not only the changed ones, in a new epoch (the others
                # judged them offline: their coming back is news). The epoch counts once this commits.
                epoch += 1
                log.warning(
                    "cluster.lease_lapsed node=%s epoch=%d (republishing %d charge points)",
                    self.node_id,
                    epoch,
                    len(current),
                )
                p = PresencePlan(tuple(replace(c, epoch=epoch) for c in current.values()), plan.deletes)
            else:
                p = plan
            if not p:
                return store.Written(set(), {}), epoch
            return store.write_presence(s, self.node_id, p.upserts, p.deletes, now=now), epoch

        def read(s: Session) -> tuple[store.Snapshot, tuple[set[str], datetime | None]]:
            return store.load_snapshot(s, self.node_id, changed_since), store.booted_since(s, since)

        def work() -> tuple[tuple[store.Written, int], store.Snapshot, tuple[set[str], datetime | None]]:
            # The write commits on its own, short, so its rows' updated_at stays close to its commit.
            return self._run_session(write), *self._run_session(read)

        (written, epoch), snap, (booted, self._booted_at) = await trio.to_thread.run_sync(
            work, limiter=self._round_limiter
        )
        if epoch != self.epoch:  # committed: what we published is in the new epoch
            self.epoch = epoch
            current = {k: replace(v, epoch=epoch) for k, v in current.items()}
        lost = written.lost
        for cp_id, seen in written.first_seen.items():
            self._first_seen[cp_id] = (current[cp_id].connected_at, seen)
        for cp_id in self._first_seen.keys() - current.keys():
            del self._first_seen[cp_id]
        # Booted through another node: this one lets it send more than BootNotification and Heartbeat too.
        self.ctx.accepted_charge_points |= booted
        self.ctx.known_charge_points |= booted
        self._published = {k: v for k, v in current.items() if k not in lost}
        read_at = trio.current_time()
        if full:
            self._full_read_at = read_at
        self._view = _View(
            apply_changes(self._view.presences, snap.changes, own_node=self.node_id, full=snap.full),
            snap.leases,
            snap.now,
            read_at,
        )
        self.rounds += 1
        for cp_id in lost:
            await self._replaced_elsewhere(cp_id, current[cp_id].connected_at)
        # A half-open socket here never changes, so its row is not written again: learn of the newer
        # connection from the read as well.
        local = {
            cp_id: first
            for cp_id, p in current.items()
            if cp_id not in lost and (first := self._first_seen_of(cp_id, p.connected_at)) is not None
        }
        for cp_id in replaced_elsewhere(snap.changes, local, own_node=self.node_id):
            await self._replaced_elsewhere(cp_id, current[cp_id].connected_at)

    def _first_seen_of(self, cp_id: str, connected_at: datetime) -> datetime | None:
        """When the database first saw this connection of ours (None: not written yet)."""
        known = self._first_seen.get(cp_id)
        return known[1] if known is not None and known[0] == connected_at else None

    def _run_session(self, work: Any) -> Any:
        with self.ctx.db.sessions() as session, session.begin():
            return work(session)

    async def _replaced_elsewhere(self, cp_id: str, connected_at: datetime) -> None:
        """A newer connection of this charge point is on another node: ours is a leftover (half-open)."""
        live = self.ctx.registry.local(cp_id)
        if live is None or live.connected_at != connected_at or not self.ctx.registry.detach(live):
            return
        holder = self._view.presences.get(cp_id)
        log.warning(
            "charge_point.replaced charge_point=%s node=%s by_node=%s (it connected again through another "
            "node; this connection is closed)",
            cp_id,
            self.node_id,
            holder.node_id if holder else "?",
        )
        assert self._nursery is not None
        self._nursery.start_soon(live.connection.ws.aclose, 1000, "replaced by a connection on another node")

    # ------------------------------------------------------------------ forwarding
    async def forward(
        self, target: str, cp_id: str, action: str, payload: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Send a call to the node holding cp_id; its answer (or error) within `timeout` (plus a second for
        the trip), else a timeout answer. A missed NOTIFY costs at most a poll of the row each second.

        A call waits on a node only while that node holds the charge point: when the charger reconnects
        here or to a third node, or the target's lease lapses (dead, frozen), before the call was claimed,
        the call is withdrawn (so a frozen target can never run it on waking) and goes once to the new
        holder, or is answered "closed" at once when no node holds the charger. So is a "closed" answer
        from a target the charger has just left."""
        deadline = trio.current_time() + timeout
        answer = await self._send_and_wait(target, cp_id, action, payload, timeout)
        # Only a call that never reached the charger goes elsewhere: withdrawn unclaimed (None), or claimed by
        # a target the charger had already left. A "closed" from a charger that dropped while the call was
        # on its way may have been received: never sent twice.
        if answer is not None and not answer.get("notHere"):
            return answer
        holder = await self._holder(cp_id, avoid=target)
        left = deadline - trio.current_time()
        if holder is None or left <= 0:
            if isinstance(answer, dict):
                return answer
            return {"error": "closed", "message": f"{cp_id} is not connected: node {target} stopped answering for it"}
        log.info(
            "cluster.rerouted action=%s charge_point=%s from_node=%s to_node=%s",
            action,
            cp_id,
            target,
            self.node_id if holder == "here" else holder,
        )
        if holder == "here":
            live = self.ctx.registry.local(cp_id)
            if live is None:
                return {"error": "closed", "message": f"{cp_id} is not connected"}
            return await self._call_local(live, action, payload, left)
        rerouted = await self._send_and_wait(holder, cp_id, action, payload, left)
        if isinstance(rerouted, dict):
            return rerouted
        return {"error": "closed", "message": f"{cp_id} is not connected: node {holder} stopped answering for it"}

    async def _holder(self, cp_id: str, *, avoid: str) -> str | None:
        """Who holds cp_id now, other than `avoid`: "here", another live node's id, or None."""
        if self.ctx.registry.local(cp_id) is not None:
            return "here"
        found = self.elsewhere(cp_id)
        if found is None or found.node_id == avoid:  # the view may be a round behind: read the row now
            found = await self.look_up(cp_id)
        return found.node_id if found is not None and found.node_id != avoid else None

    def _moved(self, target: str, cp_id: str) -> bool:
        """Whether cp_id has left `target` by this node's view: here now, held by another live node, or the
        target's lease lapsed."""
        if self.ctx.registry.local(cp_id) is not None:
            return True
        p = self._view.presences.get(cp_id)
        now = self._estimated_db_now()
        if p is not None and p.node_id != target and lease_valid(self._view.leases.get(p.node_id), now):
            return True
        return not lease_valid(self._view.leases.get(target), now)

    async def _send_and_wait(
        self, target: str, cp_id: str, action: str, payload: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """The target's answer, a timeout answer, or None when the call was withdrawn unclaimed because cp_id
        left the target (_moved)."""
        call_id = secrets.token_hex(12)
        done = self._waiters[call_id] = trio.Event()
        try:
            try:
                await self._db(
                    store.send_call,
                    call_id,
                    self.node_id,
                    target,
                    cp_id,
                    action,
                    payload,
                    timeout,
                    timeout=min(timeout, _REQUEST_DB_TIMEOUT),
                )
            except trio.TooSlowError:
                log.warning(
                    "cluster.forward_slow call=%s action=%s charge_point=%s to_node=%s (the database did not "
                    "take the call in time)",
                    call_id,
                    action,
                    cp_id,
                    target,
                )
                return {"error": "timeout", "uniqueId": f"forwarded-{call_id}", "timeout": timeout}
            log.info("cluster.forwarded call=%s action=%s charge_point=%s to_node=%s", call_id, action, cp_id, target)
            next_read = trio.current_time() + 1.0
            with trio.move_on_after(timeout + 1.0):
                while True:
                    with trio.move_on_after(_MOVED_POLL_SECONDS):
                        await done.wait()
                    if done.is_set() or trio.current_time() >= next_read:
                        next_read = trio.current_time() + 1.0
                        try:
                            answer = await self._db(store.load_answer, call_id, timeout=_REQUEST_DB_TIMEOUT)
                        except trio.TooSlowError:
                            continue
                        if answer is not None:
                            return answer
                    if self._moved(target, cp_id):
                        try:
                            withdrawn = await self._db(store.withdraw_call, call_id, timeout=_REQUEST_DB_TIMEOUT)
                        except trio.TooSlowError:
                            continue
                        if withdrawn:  # else the target claimed it first: its answer comes
                            log.info("cluster.withdrawn call=%s charge_point=%s left node=%s", call_id, cp_id, target)
                            return None
            log.warning(
                "cluster.forward_timeout call=%s action=%s charge_point=%s to_node=%s timeout=%.1fs",
                call_id,
                action,
                cp_id,
                target,
                timeout,
            )
            return {"error": "timeout", "uniqueId": f"forwarded-{call_id}", "timeout": timeout}
        finally:
            self._waiters.pop(call_id, None)

    async def _call_local(self, live: Any, action: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """A call to a charger on this node, as a forwarded call's answer."""
        status_ask = action == "TriggerMessage" and payload.get("requestedMessage") == "StatusNotification"
        try:
            with live.asking_status(payload.get("connectorId"), self.ctx.clock.now) if status_ask else nullcontext():
                return result_of(await live.connection.call_raw(action, payload, timeout=timeout))
        except OcppjError as exc:
            return answer_of(exc)

    async def _serve_call(self, call_id: str) -> None:
        """Run a call another node forwarded here on our connection, and answer it (a failure here is
        logged, never raised: it must not take this node's other tasks down; the asker times out)."""
        try:
            await self._serve_call_once(call_id)
        except Exception:
            log.exception("cluster.serve_failed call=%s", call_id)

    async def _serve_call_once(self, call_id: str) -> None:
        try:
            claimed = await self._db(store.claim_call, call_id, self.node_id)
        except Exception:
            log.exception("cluster.claim_failed call=%s", call_id)
            return
        if claimed is None:
            return
        live = self.ctx.registry.local(claimed.charge_point_id)
        if claimed.seconds_left <= 0:
            answer: dict[str, Any] = {"error": "timeout", "uniqueId": f"forwarded-{call_id}", "timeout": 0}
        elif live is None:
            answer = {
                "error": "closed",
                "notHere": True,  # never sent: the asker may send it where the charger is now
                "message": f"{claimed.charge_point_id} is not connected to node {self.node_id} any more",
            }
        else:
            answer = await self._call_local(live, claimed.action, claimed.payload, claimed.seconds_left)
        log.info(
            "cluster.served call=%s action=%s charge_point=%s from_node=%s answer=%s",
            call_id,
            claimed.action,
            claimed.charge_point_id,
            claimed.origin,
            answer.get("error", "result"),
        )
        try:
            await self._db(store.answer_call, call_id, claimed.origin, answer)
        except Exception:
            log.exception("cluster.answer_failed call=%s (the caller times out)", call_id)

    def _on_notify(self, payload: str) -> None:
        kind, _, call_id = payload.partition(":")
        if kind == "presence":  # another node wrote presence rows: read them now, not at the next refresh
            if call_id != self.node_id:
                self._changed.set()
        elif kind == "call":
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_call, call_id)
        elif kind == "answer":
            waiter = self._waiters.get(call_id)
            if waiter is not None:
                waiter.set()

    async def _connect(self, limiter: trio.CapacityLimiter) -> psycopg.Connection:
        """A dedicated autocommit connection with TCP keepalives."""
        return await trio.to_thread.run_sync(
            partial(psycopg.connect, self._conninfo, autocommit=True, connect_timeout=5, **_KEEPALIVES), limiter=limiter
        )

    async def _ping(self, conn: psycopg.Connection, limiter: trio.CapacityLimiter, what: str) -> None:
        """SELECT 1 within _LIVENESS_SECONDS, else OSError: a connection that stopped answering is lost."""
        with trio.move_on_after(_LIVENESS_SECONDS):
            await trio.to_thread.run_sync(conn.execute, "SELECT 1", limiter=limiter, abandon_on_cancel=True)
            return
        raise OSError(f"the {what} connection did not answer SELECT 1 within {_LIVENESS_SECONDS:.0f} s")

    async def _listen(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        channel = store.channel(self.node_id)
        started = False
        while True:
            conn = None
            # One limiter per connection: a thread abandoned on a dead one must not hold up the next.
            limiter = trio.CapacityLimiter(1)
            try:
                conn = await self._connect(limiter)
                for name in (channel, store.PRESENCE_CHANNEL):
                    await trio.to_thread.run_sync(
                        conn.execute, sql.SQL("LISTEN {}").format(sql.Identifier(name)), limiter=limiter
                    )
                if not started:
                    task_status.started()
                    started = True

                def wait(c: psycopg.Connection = conn) -> list[str]:
                    return [n.payload for n in c.notifies(timeout=1.0, stop_after=1)]

                checked_at = -1e9
                while True:
                    if trio.current_time() - checked_at >= _LIVENESS_SECONDS:
                        # The connection still answers, and no call waits whose NOTIFY was missed.
                        if checked_at > -1e9:
                            await self._ping(conn, limiter, "LISTEN")
                        checked_at = trio.current_time()
                        for call_id in await self._db(store.unclaimed_calls, self.node_id):
                            self._on_notify(f"call:{call_id}")
                    for payload in await trio.to_thread.run_sync(wait, limiter=limiter, abandon_on_cancel=True):
                        self._on_notify(payload)
            except Exception as exc:  # psycopg's, SQLAlchemy's (the rescan), OSError: a database in trouble
                self._failed(exc, "cluster.listen_failed node=%s error=%r (reconnecting in 1 s)", self.node_id, exc)
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(1.0)
            finally:
                if conn is not None:
                    conn.close()

    # ------------------------------------------------------------------ duties
    async def _limit_idle_session(self, conn: psycopg.Connection, limiter: trio.CapacityLimiter) -> None:
        """idle_session_timeout (PostgreSQL >= 14) frees the lock of a hung holder; older servers go without it
        (a hung holder then keeps the duties until its TCP connection dies)."""
        if self._idle_timeout_unsupported:
            return
        try:
            await trio.to_thread.run_sync(
                conn.execute, f"SET idle_session_timeout = '{_DUTY_IDLE_TIMEOUT}'", limiter=limiter
            )
        except psycopg.errors.UndefinedObject as exc:
            self._idle_timeout_unsupported = True
            log.warning(
                "cluster.idle_session_timeout_unsupported node=%s error=%r (PostgreSQL < 14: a hung duty "
                "holder keeps the duties until its connection dies)",
                self.node_id,
                exc,
            )

    async def _hold_duties(self) -> None:
        """Try for the duties lock every refresh; while held, check the connection is still ours."""
        while True:
            conn = None
            limiter = trio.CapacityLimiter(1)
            try:
                conn = await self._connect(limiter)
                await self._limit_idle_session(conn, limiter)
                swept_at = -1e9
                while True:
                    if self.duties_held:
                        await self._ping(conn, limiter, "duty")
                        if trio.current_time() - swept_at > 10:
                            swept_at = trio.current_time()
                            presences, calls = await self._db(store.sweep)
                            if presences or calls:
                                log.info("cluster.swept presence_rows=%d calls=%d", presences, calls)
                    else:
                        cur = await trio.to_thread.run_sync(conn.execute, _DUTIES_LOCK, limiter=limiter)
                        row = cur.fetchone()
                        assert row is not None  # SELECT pg_try_advisory_lock(...) is one row
                        if row[0]:
                            self.duties_held = True
                            log.warning(
                                "cluster.duties_acquired node=%s (maintenance, orphan sweep and the "
                                "cluster's housekeeping run here)",
                                self.node_id,
                            )
                    await trio.sleep(self.refresh)
            except Exception as exc:  # a lost connection, a failed sweep: let go of the duties, try again
                self._failed(exc, "cluster.duties_connection_failed node=%s error=%r", self.node_id, exc)
            finally:
                if self.duties_held:
                    self.duties_held = False
                    log.warning("cluster.duties_released node=%s", self.node_id)
                if conn is not None:
                    conn.close()
            await trio.sleep(1.0)


async def run_cluster(node: ClusterNode | None, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the cluster node when there is one (`--node-id`); outside a cluster, report ready and do nothing."""
    if node is None:
        task_status.started(None)
        return
    await node.run(task_status=task_status)
