"""A look at the whole CSMS every second: what the dashboard's timelines and the webhooks need.

The watcher never sits on the OCPP path: it reads the live registry (in memory) and,
only when a webhook receiver is configured, the audit trail and the verdicts.

- Live statuses: each connector's changes, kept in memory (the newest 50 per connector)
  for the connector page's timeline (the database keeps only the last status).
- `charge_point.online` / `.offline`: the live registry's members, compared each look; in a cluster
  the duty holder compares every node's (so a dead node's charge points go offline too), the others
  their own. Each event's id comes from the charge point, its connection time and its node's epoch
  (bumped when the node's lease lapsed), so the node that holds a charger and the duty holder write one
  row for it, and a charger back after its node's lapse is news.
- `session.force_ended`, `transaction.orphaned`: new audit events (only committed facts, also those
  of `csms maintenance` run from cron); every node writes them, with ids from the audit rows.
- `connector.freed`: every connector's verdict, compared every `verdict_interval` seconds (the duty
  holder only).

Events go to the webhook outbox (csms.services.webhooks), which outlives this process.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import trio
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csms.context import Context
from csms.core.times import as_utc, iso
from csms.core.webhooks import (
    AUDITED_EVENTS,
    AuditRow,
    connector_changes,
    events_from_audit,
    presence_changes,
)
from csms.db.models import AuditEvent
from csms.services.occupancy import evaluate_all
from csms.services.webhooks import WebhookDispatcher

__all__ = ["StatusChange", "Watcher"]

log = logging.getLogger("csms.watch")
_HISTORY = 50
_LOOKBACK = 200  # ids below the newest seen that are read again (PostgreSQL commits ids out of order)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of a connector's timeline. There are up to `_HISTORY` per connector ever seen, kept for
    the life of the process (2 million at 20,000 two-connector chargers), so an entry is kept small: slots,
    and the status strings interned (each frame's JSON decodes its own copy of "Charging")."""

    at: datetime  # when the status arrived (our clock)
    status: str
    error_code: str | None


class Watcher:
    def __init__(
        self,
        ctx: Context,
        webhooks: WebhookDispatcher,
        *,
        interval: float = 1.0,
        verdict_interval: float = 2.0,
        duties: Callable[[], bool] = lambda: True,
        epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        self.ctx = ctx
        self.webhooks = webhooks
        self.interval = interval
        self.verdict_interval = verdict_interval
        self.duties = duties  # the cluster duties (a single node always): every node's presence, the verdicts
        self.epoch = epoch  # this node's presence epoch (csms.cluster.presence.Presence.epoch; 0 alone)
        self.statuses: dict[tuple[str, int], deque[StatusChange]] = {}
        self._here: dict[str, tuple[datetime, int]] = {}  # this node's charge points as of the last look
        self._elsewhere: dict[str, tuple[datetime, int]] = {}  # the other nodes', looked at by the duty holder
        self._elsewhere_looked = False  # whether _elsewhere is a look of this node's while it held the duties
        self._audit_cursor = 0
        self._audit_seen: set[int] = set()
        self._verdicts: dict[tuple[str, int], tuple[str, tuple[str, ...]]] | None = None
        self._verdicts_at = 0.0
        self._looked: dict[str, dict] = {}  # charge point -> its connectors as of the last look

    def history(self, cp_id: str, connector_id: int) -> list[StatusChange]:
        return list(self.statuses.get((cp_id, connector_id), ()))

    def _look_at_registry(self) -> None:
        """Once a second over every connected charge point: O(fleet), so the common case (nothing new
        since the last look) is one dict comparison per charge point. A status is stored as a new
        LiveConnector object, and dict equality looks at identity first, so an unchanged charger costs
        no Python-level work (20,000 charge points: 42 ms a round before, a few ms now)."""
        present: set[str] = set()
        looked = self._looked
        for live in self.ctx.registry:
            cp_id, connectors = live.id, live.connectors
            present.add(cp_id)
            if looked.get(cp_id) == connectors:
                continue
            looked[cp_id] = snapshot = dict(connectors)
            for c, st in snapshot.items():
                seen = self.statuses.setdefault((cp_id, c), deque(maxlen=_HISTORY))
                if not seen or (seen[-1].at, seen[-1].status) != (st.updated_at, st.status):
                    code = None if st.error_code is None else sys.intern(st.error_code)
                    seen.append(StatusChange(st.updated_at, sys.intern(st.status), code))
        for gone in looked.keys() - present:
            del looked[gone]

    async def _look(self) -> None:
        self._look_at_registry()

    def _presence_here(self) -> dict[str, tuple[datetime, int]]:
        epoch = self.epoch()
        return {live.id: (live.connected_at, epoch) for live in self.ctx.registry}

    def _presence_elsewhere(self, duties: bool) -> dict[str, tuple[datetime, int]]:
        """With the duties, every other node's charge points (so a dead node's go offline); else none."""
        look = self.ctx.registry.presence_elsewhere
        return look() if duties and look is not None else {}

    async def _compare_presence(self) -> None:
        """This node's charge points always; the others' on the duty holder, where taking the duties is a new
        baseline (what the previous holder saw is not news)."""
        here, at = self._presence_here(), iso(self.ctx.clock.now())
        duties = self.duties()
        elsewhere = self._presence_elsewhere(duties)
        events = presence_changes(self._here, here, at)
        if duties and self._elsewhere_looked:
            events += presence_changes(self._elsewhere, elsewhere, at)  # one that moved here: offline there
        await self.webhooks.publish(events)
        self._here, self._elsewhere, self._elsewhere_looked = here, elsewhere, duties

    def _audit_rows(self, s: Session) -> list[AuditRow]:
        rows = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.id > self._audit_cursor - _LOOKBACK, AuditEvent.action.in_(AUDITED_EVENTS))
            .order_by(AuditEvent.id)
            .limit(2000)
        )
        return [
            AuditRow(r.id, as_utc(r.at), r.actor, r.action, r.charge_point_id, r.connector_id, r.subject, r.details)
            for r in rows
        ]

    async def _tail_audit(self) -> None:
        rows = [r for r in await self.ctx.db.read(self._audit_rows) if r.id not in self._audit_seen]
        if not rows:
            return
        await self.webhooks.publish(events_from_audit(rows))  # first: a failed write is tried again next look
        self._audit_seen.update(r.id for r in rows)
        self._audit_cursor = max(self._audit_cursor, *(r.id for r in rows))
        self._audit_seen = {i for i in self._audit_seen if i > self._audit_cursor - _LOOKBACK}

    async def _compare_verdicts(self) -> None:
        if not self.duties():
            self._verdicts = None  # the duty holder compares them; taking the duties starts a new baseline
            return
        evaluations = await evaluate_all(self.ctx)
        now = {(e.charge_point_id, e.connector_id): (e.decision.verdict.value, e.decision.reasons) for e in evaluations}
        if self._verdicts is not None:
            await self.webhooks.publish(connector_changes(self._verdicts, now, iso(self.ctx.clock.now())))
        self._verdicts = now

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._here = self._presence_here()
        self._elsewhere_looked = self.duties()
        self._elsewhere = self._presence_elsewhere(self._elsewhere_looked)
        if self.webhooks.enabled:  # only what happens from now on
            self._audit_cursor = await self.ctx.db.read(lambda s: s.scalar(select(func.max(AuditEvent.id))) or 0)
            self._audit_seen = set(range(self._audit_cursor - _LOOKBACK + 1, self._audit_cursor + 1))
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            steps = [self._look]
            if self.webhooks.enabled:
                steps += [self._compare_presence, self._tail_audit]
            if self.webhooks.enabled and trio.current_time() - self._verdicts_at >= self.verdict_interval:
                self._verdicts_at = trio.current_time()
                steps.append(self._compare_verdicts)
            for step in steps:  # each on its own: one that fails does not keep the others from running
                try:
                    await step()
                except Exception as exc:
                    self.ctx.db.log_failure(
                        exc, "watcher", log, "watch.%s_failed (will look again in %.1f s)", step.__name__, self.interval
                    )
