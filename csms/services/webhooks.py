"""Webhooks, the IO half: one bounded queue and one worker per receiver, retries with back-off.

Never blocks the OCPP side: `publish` appends to each receiver's queue and returns at
once. A queue holds at most `--webhook-queue-size` events; when a receiver is slow or
dead its queue fills and its *oldest* events are dropped (counted and logged), so it
costs nothing but its own queue. Each worker delivers its events in order, one at a
time, each attempt bounded by a timeout; failures are retried after 1x, 2x, 4x ...
`--webhook-retry-seconds` (at most 5 minutes) until `--webhook-max-attempts`.
Only the status line, the headers and at most `ANSWER_BYTES` of a receiver's answer are
read (raw, never decompressed); a longer answer's connection is closed, so a receiver that
answers with megabytes costs a few KiB.
Every attempt lands in the delivery log (the newest 500, in memory: `GET /api/webhooks`
and the dashboard's Webhooks page) and in the process log.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

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

__all__ = ["ANSWER_BYTES", "Delivery", "Receiver", "WebhookDispatcher"]

log = logging.getLogger("csms.webhooks")

# The status decides a delivery; the body is read only this far, so that a short answer leaves
# its connection reusable and a long one cannot fill the CSMS's memory.
ANSWER_BYTES = 4096

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
    queue: deque[WebhookEvent]
    wake: trio.Event = field(default_factory=trio.Event)
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    in_flight: WebhookEvent | None = None


class WebhookDispatcher:
    def __init__(
        self,
        targets: Iterable[WebhookTarget],
        *,
        retry_seconds: float = 1.0,
        max_attempts: int = 6,
        queue_size: int = 1000,
        timeout: float = 10.0,
        log_size: int = 500,
    ) -> None:
        self.receivers = [Receiver(t, deque(maxlen=max(1, queue_size))) for t in targets]
        self.retry_seconds = retry_seconds
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self.log: deque[Delivery] = deque(maxlen=log_size)

    @property
    def enabled(self) -> bool:
        return bool(self.receivers)

    def queued(self) -> int:
        return sum(len(r.queue) for r in self.receivers)

    def publish(self, events: Iterable[WebhookEvent]) -> None:
        """Queue events for every receiver; never waits (a full queue drops its oldest event)."""
        for event in events:
            log.info("webhook.event type=%s id=%s data=%s", event.type, event.id, dict(event.data))
            for r in self.receivers:
                if len(r.queue) == r.queue.maxlen:
                    lost = r.queue[0]
                    r.dropped += 1
                    self._record(r, lost, 0, "dropped", error="queue full: the receiver is too slow or down")
                    log.warning(
                        "webhook.dropped receiver=%s event=%s type=%s (queue of %d full)",
                        r.target.label,
                        lost.id,
                        lost.type,
                        r.queue.maxlen,
                    )
                r.queue.append(event)
                r.wake.set()
        QUEUED.set(self.queued())

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for r in self.receivers:
                nursery.start_soon(self._worker, r)
            task_status.started()

    def _record(
        self,
        r: Receiver,
        event: WebhookEvent,
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
                event.id,
                event.type,
                attempt,
                outcome,
                status,
                error,
                duration_ms,
            )
        )

    async def _worker(self, r: Receiver) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                while not r.queue:
                    r.wake = trio.Event()
                    await r.wake.wait()
                event = r.in_flight = r.queue.popleft()
                QUEUED.set(self.queued())
                try:
                    await self._deliver(client, r, event)
                finally:
                    r.in_flight = None

    async def _deliver(self, client: httpx.AsyncClient, r: Receiver, event: WebhookEvent) -> None:
        body = event.body()
        for attempt in range(1, self.max_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "unstuck-csms-webhooks",
                EVENT_HEADER: event.type,
                DELIVERY_HEADER: event.id,
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
                self._record(r, event, attempt, "delivered", status=status, duration_ms=ms)
                log.info(
                    "webhook.delivered receiver=%s event=%s type=%s attempt=%d status=%d ms=%d",
                    r.target.label,
                    event.id,
                    event.type,
                    attempt,
                    status,
                    ms,
                )
                return
            if status is not None:
                error = f"HTTP {status}"
            last = attempt == self.max_attempts
            self._record(
                r, event, attempt, "failed" if last else "retrying", status=status, error=error, duration_ms=ms
            )
            if last:
                r.failed += 1
                log.error(
                    "webhook.gave_up receiver=%s event=%s type=%s attempts=%d error=%s",
                    r.target.label,
                    event.id,
                    event.type,
                    attempt,
                    error,
                )
                return
            wait = backoff_seconds(attempt, self.retry_seconds)
            log.warning(
                "webhook.retry receiver=%s event=%s type=%s attempt=%d error=%s next_in=%.1fs",
                r.target.label,
                event.id,
                event.type,
                attempt,
                error,
                wait,
            )
            await trio.sleep(wait)


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST and return the status, reading at most ANSWER_BYTES of the answer (raw: a gzip bomb stays packed)."""
    async with client.stream("POST", url, content=body, headers=headers) as res:
        read = 0
        async for chunk in res.aiter_raw():
            read += len(chunk)
            if read >= ANSWER_BYTES:
                break  # leaving the block closes the connection instead of reading the rest
        return res.status_code
