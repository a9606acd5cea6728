"""Webhooks, the IO half: a durable outbox in the database, delivered in order per receiver, with back-off.

Never blocks the OCPP side: the watcher hands events to `publish`, which writes them to the outbox
(csms.db.webhook_outbox_store), one row per receiver, in one write. Any node writes: an event known to
two nodes (an audit fact, a charge point's connect) has one id, so it is one row. The node holding the
cluster duties (a single node always) delivers: one worker per receiver takes its oldest rows and sends
them in order, one at a time, each attempt bounded by a timeout; failures are retried after 1x, 2x,
4x ... `--webhook-retry-seconds` (at most 5 minutes) until `--webhook-max-attempts`. A node that dies
mid-delivery leaves its rows to the next holder: each event is delivered at least once, with the same
id (`X-Unstuck-Delivery`), for the receiver to de-duplicate. A receiver holds at most
`--webhook-queue-size` undelivered events; when it is slow or dead its *oldest* are dropped (counted
and logged), so it costs nothing but its own rows.
Only the status line, the headers and at most `ANSWER_BYTES` of a receiver's answer are
read (raw, never decompressed); a longer answer's connection is closed, so a receiver that
answers with megabytes costs a few KiB.
Every attempt lands in the delivery log (the newest 500 of this node, in memory: `GET /api/webhooks`
and the dashboard's Webhooks page) and in the process log.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import httpx
import trio
from prometheus_client import Counter, Gauge

from csms.core.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookEvent,
    WebhookTarget,
    backoff_seconds,
    sign,
)
from csms.db import webhook_outbox_store as outbox

if TYPE_CHECKING:
    from csms.db.database import Database

__all__ = ["ANSWER_BYTES", "Delivery", "Receiver", "WebhookDispatcher"]

log = logging.getLogger("csms.webhooks")

# The status decides a delivery; the body is read only this far, so that a short answer leaves
# its connection reusable and a long one cannot fill the CSMS's memory.
ANSWER_BYTES = 4096
_TAKE = 1  # rows a worker takes at once: one, so that a full queue drops any row not in flight
_POLL_SECONDS = 1.0  # a worker looks for rows other nodes wrote this often (its own wake it at once)
_WRITE_ROWS = 1000  # outbox rows per statement (8 parameters each)

DELIVERIES = Counter("csms_webhook_deliveries", "Webhook delivery attempts by outcome", ["outcome"])
QUEUED = Gauge("csms_webhook_queued", "Webhook events waiting, all receivers")


@dataclass(frozen=True)
class Delivery:
    """One line of the delivery log."""

    at: str
    receiver: str
    event_id: str
    event_type: str
    attempt: int
    outcome: str  # delivered, retrying, failed (gave up), dropped (queue full)
    status: int | None = None
    error: str | None = None
    duration_ms: int | None = None


@dataclass(eq=False)
class Receiver:
    target: WebhookTarget
    queue_limit: int
    queued: int = 0  # undelivered rows, as of this node's last look
    wake: trio.Event = field(default_factory=trio.Event)
    delivered: int = 0  # the counters are this node's
    failed: int = 0
    dropped: int = 0
    in_flight: outbox.Queued | None = None


class WebhookDispatcher:
    def __init__(
        self,
        targets: Iterable[WebhookTarget],
        db: Database,
        *,
        retry_seconds: float = 1.0,
        max_attempts: int = 6,
        queue_size: int = 1000,
        timeout: float = 10.0,
        log_size: int = 500,
    ) -> None:
        self.db = db
        self.receivers = [Receiver(t, max(1, queue_size)) for t in targets]
        self.retry_seconds = retry_seconds
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self.log: deque[Delivery] = deque(maxlen=log_size)

    @property
    def enabled(self) -> bool:
        return bool(self.receivers)

    def queued(self) -> int:
        return sum(r.queued for r in self.receivers)

    async def publish(self, events: Iterable[WebhookEvent]) -> None:
        """Write events to the outbox for every receiver (an event already there is not written twice)."""
        events = list(events)
        if not events or not self.receivers:
            return
        size = self.receivers[0].queue_limit
        if len(events) > size:  # a burst beyond what a receiver may hold: its oldest are never written
            skipped, events = events[:-size], events[-size:]
            for r in self.receivers:
                r.dropped += len(skipped)
            DELIVERIES.labels("dropped").inc(len(skipped) * len(self.receivers))
            log.warning(
                "webhook.dropped events=%d first=%s type=%s (a burst of %d beyond the queue of %d)",
                len(skipped),
                skipped[0].id,
                skipped[0].type,
                len(skipped) + len(events),
                size,
            )
        for event in events:
            log.info("webhook.event type=%s id=%s data=%s", event.type, event.id, dict(event.data))
        rows = [(event.id, r.target.key, event.type, event.body().decode()) for event in events for r in self.receivers]
        by_key = {r.target.key: r for r in self.receivers}
        now = datetime.now(UTC)
        for i in range(0, len(rows), _WRITE_ROWS):  # bounded statements (PostgreSQL takes 65,535 parameters)
            chunk = rows[i : i + _WRITE_ROWS]
            write = partial(outbox.enqueue, rows=chunk, now=now, queue_size=size)
            dropped, pending = await self.db.write(write)
            for key, n in pending.items():
                by_key[key].queued = n
            for d in dropped:
                r = by_key[d.receiver]
                r.dropped += 1
                self._record(r, d.event_id, d.type, 0, "dropped", error="queue full: the receiver is too slow or down")
                log.warning(
                    "webhook.dropped receiver=%s event=%s type=%s (queue of %d full)",
                    r.target.label,
                    d.event_id,
                    d.type,
                    r.queue_limit,
                )
        for r in self.receivers:
            r.wake.set()

    async def run(self, duties: Callable[[], bool] = lambda: True, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Deliver while `duties()` (the node holding the cluster duties; a single node always)."""
        async with trio.open_nursery() as nursery:
            for r in self.receivers:
                nursery.start_soon(self._worker, r, duties)
            task_status.started()

    def _record(
        self,
        r: Receiver,
        event_id: str,
        event_type: str,
        attempt: int,
        outcome: str,
        *,
        status: int | None = None,
        error: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        DELIVERIES.labels(outcome).inc()
        self.log.append(
            Delivery(
                datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                r.target.label,
                event_id,
                event_type,
                attempt,
                outcome,
                status,
                error,
                duration_ms,
            )
        )

    async def _worker(self, r: Receiver, duties: Callable[[], bool]) -> None:
        key, label = r.target.key, r.target.label
        delivering = False
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                try:
                    if not duties():
                        delivering = False
                        r.queued = 0
                        await trio.sleep(_POLL_SECONDS)
                        continue
                    if not delivering:  # taking over: what a previous holder took and did not finish goes again
                        await self.db.write(lambda s: outbox.requeue_sending(s, key))
                        delivering = True
                    now = datetime.now(UTC)
                    take = partial(outbox.take, receiver=key, now=now, limit=_TAKE)
                    rows: list[outbox.Queued] = await self.db.write(take)
                    if not rows:
                        r.queued = (await self.db.read(outbox.pending_counts)).get(key, 0)
                        QUEUED.set(self.queued())
                        r.wake = trio.Event()
                        with trio.move_on_after(_POLL_SECONDS):
                            await r.wake.wait()
                        continue
                    r.queued = max(0, r.queued - len(rows))
                    for row in rows:
                        r.in_flight = row
                        try:
                            await self._deliver(client, r, row, duties)
                        finally:
                            r.in_flight = None
                except Exception as exc:
                    self.db.log_failure(
                        exc, "webhooks", log, "webhook.worker_failed receiver=%s (looking again in 1 s)", label
                    )
                    delivering = False  # a row whose mark failed is still 'sending': taken again, in order
                    await trio.sleep(_POLL_SECONDS)

    async def _deliver(
        self, client: httpx.AsyncClient, r: Receiver, row: outbox.Queued, duties: Callable[[], bool]
    ) -> None:
        body = row.body.encode()
        for attempt in range(row.attempts + 1, max(row.attempts + 1, self.max_attempts) + 1):  # one at least
            if not duties():  # another node delivers now: the row stays 'sending', for it to take again
                return
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "unstuck-csms-webhooks",
                EVENT_HEADER: row.type,
                DELIVERY_HEADER: row.event_id,
            }
            if r.target.secret:
                headers[SIGNATURE_HEADER] = sign(r.target.secret, body, int(time.time()))
            started = time.perf_counter()
            status, error = None, None
            with trio.move_on_after(self.timeout):
                try:
                    status = await _post(client, r.target.url, body, headers)
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if status is None and error is None:
                error = f"no answer within {self.timeout:g} s"
            ms = int((time.perf_counter() - started) * 1000)
            if status is not None and 200 <= status < 300:
                r.delivered += 1
                await self._mark(row, "delivered", attempt)
                self._record(r, row.event_id, row.type, attempt, "delivered", status=status, duration_ms=ms)
                log.info(
                    "webhook.delivered receiver=%s event=%s type=%s attempt=%d status=%d ms=%d",
                    r.target.label,
                    row.event_id,
                    row.type,
                    attempt,
                    status,
                    ms,
                )
                return
            if status is not None:
                error = f"HTTP {status}"
            last = attempt >= self.max_attempts
            await self._mark(row, "failed" if last else "sending", attempt)
            self._record(
                r,
                row.event_id,
                row.type,
                attempt,
                "failed" if last else "retrying",
                status=status,
                error=error,
                duration_ms=ms,
            )
            if last:
                r.failed += 1
                log.error(
                    "webhook.gave_up receiver=%s event=%s type=%s attempts=%d error=%s",
                    r.target.label,
                    row.event_id,
                    row.type,
                    attempt,
                    error,
                )
                return
            wait = backoff_seconds(attempt, self.retry_seconds)
            log.warning(
                "webhook.retry receiver=%s event=%s type=%s attempt=%d error=%s next_in=%.1fs",
                r.target.label,
                row.event_id,
                row.type,
                attempt,
                error,
                wait,
            )
            await trio.sleep(wait)

    async def _mark(self, row: outbox.Queued, state: str, attempts: int) -> None:
        now = datetime.now(UTC)
        await self.db.write(lambda s: outbox.mark(s, row.row_id, state, attempts, now))


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST and return the status, reading at most ANSWER_BYTES of the answer (raw: a gzip bomb stays packed)."""
    async with client.stream("POST", url, content=body, headers=headers) as res:
        read = 0
        async for chunk in res.aiter_raw():
            read += len(chunk)
            if read >= ANSWER_BYTES:
                break  # leaving the block closes the connection instead of reading the rest
        return res.status_code
