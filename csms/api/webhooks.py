"""/api/webhooks: the configured receivers, their queues and the delivery log (admin, read only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from csms.api.auth import Admin
from csms.api.envelope import ok
from csms.services.webhooks import WebhookDispatcher

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


def webhook_status(hooks: WebhookDispatcher | None) -> dict:
    receivers = (
        []
        if hooks is None
        else [
            {
                "url": r.target.label,
                "signed": r.target.secret is not None,
                "queued": r.queued,
                "queueLimit": r.queue_limit,
                "inFlight": None if r.in_flight is None else r.in_flight.event_id,
                "delivered": r.delivered,
                "failed": r.failed,
                "dropped": r.dropped,
            }
            for r in hooks.receivers
        ]
    )
    log = (
        []
        if hooks is None
        else [
            {
                "at": d.at,
                "receiver": d.receiver,
                "eventId": d.event_id,
                "eventType": d.event_type,
                "attempt": d.attempt,
                "outcome": d.outcome,
                "status": d.status,
                "error": d.error,
                "durationMs": d.duration_ms,
            }
            for d in reversed(hooks.log)
        ]
    )
    return {"receivers": receivers, "deliveries": log}


@router.get("")
async def list_webhooks(request: Request, who: Admin):
    """Receivers (URL without secrets), queue depth, counters, and the newest delivery attempts first."""
    return ok(webhook_status(request.app.state.webhooks))


__all__ = ["router", "webhook_status"]
