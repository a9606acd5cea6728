"""Webhooks, the pure half: receivers, event bodies, signatures, back-off, and which facts are events.

Events (the seed's future enhancements 3 and 6):

| type | fired when |
|---|---|
| `session.ended` | any charging session ended, whatever closed its transaction (audit `session.ended`) |
| `session.force_ended` | an admin's unlock or the idle rule ended a session (audit `session.force_ended`) |
| `transaction.orphaned` | the orphan rule closed a transaction whose StopTransaction never came |
| `connector.freed` | a connector the CSMS called busy is called free |
| `charge_point.offline` / `charge_point.online` | a charge point's WebSocket is gone / is there |

A delivery is `POST URL` with a JSON body `{"id", "type", "createdAt", "data"}` and, when the
receiver has a secret, `X-Unstuck-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
(the timestamp lets a receiver refuse replays). The IO shell is `csms.services.webhooks`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "EVENT_TYPES",
    "WebhookTarget",
    "WebhookEvent",
    "parse_webhook",
    "sign",
    "verify",
    "backoff_seconds",
    "events_from_audit",
    "connector_changes",
    "presence_changes",
    "fact_id",
    "SIGNATURE_HEADER",
    "EVENT_HEADER",
    "DELIVERY_HEADER",
    "AuditRow",
    "AUDITED_EVENTS",
]

EVENT_TYPES = (
    "session.ended",
    "session.force_ended",
    "transaction.orphaned",
    "connector.freed",
    "charge_point.offline",
    "charge_point.online",
)
# The audit actions that are webhook events (the outbox's filter).
AUDITED_EVENTS = ("session.ended", "session.force_ended", "maintenance.close_orphaned")
SIGNATURE_HEADER = "X-Unstuck-Signature"
EVENT_HEADER = "X-Unstuck-Event"
DELIVERY_HEADER = "X-Unstuck-Delivery"


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str | None = field(default=None, repr=False)  # never in a log line or a page

    @property
    def key(self) -> str:
        """The outbox's name for it: its label and a digest of the whole URL, so two receivers that differ only
        in a query or user info are two (at most 300 characters)."""
        return f"{self.label[:280]}#{hashlib.sha256(self.url.encode()).hexdigest()[:12]}"

    @property
    def label(self) -> str:
        """The URL without user info, query or fragment: safe to show."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def parse_webhook(option: str) -> WebhookTarget:
    """`URL` or `URL,SECRET` (the --webhook flag) -> a target; ValueError naming what is wrong."""
    url, _, secret = option.strip().partition(",")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--webhook {url!r} must be an http:// or https:// URL")
    secret = secret.strip()
    if secret and len(secret) < 16:
        raise ValueError(f"--webhook secret for {url} is too short (16 characters at least)")
    return WebhookTarget(url.strip(), secret or None)


@dataclass(frozen=True)
class WebhookEvent:
    type: str
    data: Mapping[str, Any]
    created_at: str  # ISO 8601 UTC
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def body(self) -> bytes:
        return json.dumps(
            {"id": self.id, "type": self.type, "createdAt": self.created_at, "data": dict(self.data)},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does: the signature matches and is no older than `tolerance` seconds."""
    fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(sign(secret, body, timestamp), header)


def backoff_seconds(attempt: int, base: float, cap: float = 300.0) -> float:
    """Wait before retry number `attempt` (1 = the first retry): base, 2 base, 4 base, ... at most cap."""
    factor: float = 2 ** (attempt - 1)
    return min(cap, base * factor)


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    charge_point_id: str | None
    connector_id: int | None
    subject: str | None
    details: Mapping[str, Any] | None


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def events_from_audit(rows: Iterable[AuditRow]) -> list[WebhookEvent]:
    """The audit trail is the outbox: committed facts only, also those written by `csms maintenance`."""
    events = []
    for r in rows:
        d = dict(r.details or {})
        where = {"chargePointId": r.charge_point_id, "connectorId": r.connector_id}
        if r.action == "session.ended":
            events.append(
                WebhookEvent(
                    "session.ended",
                    {
                        **where,
                        "sessionId": r.subject,
                        "reason": d.get("reason"),
                        "transactionId": d.get("transaction_id"),
                        "energyWh": d.get("energy_wh"),
                        "fee": d.get("fee"),
                        "meterSource": d.get("meter_source"),
                        "feeWaived": d.get("fee_waived"),
                        "reservationId": d.get("reservation_id"),
                        "providerCall": d.get("provider_call"),
                        "actor": r.actor,
                    },
                    _iso(r.at),
                    fact_id("audit", r.id),
                )
            )
        elif r.action == "session.force_ended":
            events.append(
                WebhookEvent(
                    "session.force_ended",
                    {
                        **where,
                        "sessionId": r.subject,
                        "reason": d.get("reason"),
                        "transactionId": d.get("transaction_id"),
                        "energyWh": d.get("energy_wh"),
                        "fee": d.get("fee"),
                        "meterSource": d.get("meter_source"),
                        "feeWaived": d.get("fee_waived"),
                        "actor": r.actor,
                    },
                    _iso(r.at),
                    fact_id("audit", r.id),
                )
            )
        elif r.action == "maintenance.close_orphaned":
            events.append(
                WebhookEvent(
                    "transaction.orphaned",
                    {
                        **where,
                        "transactionId": int(r.subject) if r.subject and r.subject.isdigit() else r.subject,
                        "reason": d.get("reason"),
                    },
                    _iso(r.at),
                    fact_id("audit", r.id),
                )
            )
    return events


# Events that two nodes may both see get ids from the fact itself, so the outbox keeps one row of each.
_IDS = uuid.UUID("6f0b3a52-3c5e-4d0e-9a51-7d7f3b1c2e90")


def fact_id(*parts: object) -> str:
    """A stable event id for one fact ("audit", 42) or ("charge_point.online", "CP1", connected_at)."""
    return str(uuid.uuid5(_IDS, "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)))


def presence_changes(
    before: Mapping[str, tuple[datetime, int]], after: Mapping[str, tuple[datetime, int]], at: str
) -> list[WebhookEvent]:
    """Charge points that came and went between two looks (id -> its connection time and its node's epoch); a
    new connection time is a reconnect: offline, then online. Each event's id is its charge point's,
    connection's and epoch's, whoever sees it."""

    def event(kind: str, cp: str, seen: tuple[datetime, int]) -> WebhookEvent:
        return WebhookEvent(f"charge_point.{kind}", {"chargePointId": cp}, at, fact_id(kind, cp, *seen))

    out = []
    for cp in sorted(after):
        was = before.get(cp)
        if was is not None and was[0] != after[cp][0]:
            out.append(event("offline", cp, was))
        if was is None or was[0] != after[cp][0]:
            out.append(event("online", cp, after[cp]))
    return out + [event("offline", cp, before[cp]) for cp in sorted(before.keys() - after.keys())]


def connector_changes(
    before: Mapping[tuple[str, int], tuple[str, tuple[str, ...]]],
    after: Mapping[tuple[str, int], tuple[str, tuple[str, ...]]],
    at: str,
) -> list[WebhookEvent]:
    """`connector.freed` for each connector whose verdict went from busy to free (verdict, reasons per key)."""
    out = []
    for key in sorted(after):
        was, now = before.get(key), after[key]
        if was is not None and was[0] == "busy" and now[0] == "free":
            out.append(
                WebhookEvent(
                    "connector.freed",
                    {"chargePointId": key[0], "connectorId": key[1], "previousReasons": list(was[1])},
                    at,
                )
            )
    return out
