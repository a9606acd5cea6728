"""Settings of a CSMS process: CLI flags with environment fallbacks."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

__all__ = ["Settings", "ApiToken", "parse_tokens", "parse_tokens_file", "check_tokens", "DEFAULT_DB_URL"]

DEFAULT_DB_URL = "sqlite:///unstuck.db"


@dataclass(frozen=True)
class ApiToken:
    role: str  # "admin" or "user"
    token: str = field(repr=False)  # never in a repr, a log line or an error message
    name: str  # who holds it: the actor of audit events


_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def _parse_token(item: str, where: str) -> ApiToken:
    parts = item.split(":")
    if len(parts) == 2:
        role, token = parts
        name = role
    elif len(parts) == 3:
        role, name, token = parts
    else:
        raise ValueError(f"API token {where} must be ROLE:TOKEN or ROLE:NAME:TOKEN")
    if role not in ("admin", "user"):
        raise ValueError(f"API token role {role!r} ({where}) must be 'admin' or 'user'")
    if not _NAME.fullmatch(name):
        raise ValueError(f"API token name {name!r} ({where}) must be 1 to 64 of A-Z a-z 0-9 _ . @ -")
    if len(token) < 8:
        raise ValueError(f"API token {name!r} ({where}) is too short (8 characters at least)")
    return ApiToken(role=role, token=token, name=name)


def parse_tokens(items: list[str]) -> list[ApiToken]:
    """`ROLE:TOKEN` or `ROLE:NAME:TOKEN` items (also comma-separated) -> tokens (ROLE:TOKEN is named ROLE)."""
    tokens: list[ApiToken] = []
    for raw in items:
        for item in filter(None, (p.strip() for p in raw.split(","))):
            tokens.append(_parse_token(item, f"number {len(tokens) + 1}"))
    return tokens


def parse_tokens_file(path: str | Path) -> list[ApiToken]:
    """One ROLE:NAME:TOKEN (or ROLE:TOKEN) per line; blank lines and `#` comments are skipped.

    A file keeps tokens off the command line, where any local user reads them in /proc/PID/cmdline.
    """
    text = Path(path).read_text(encoding="utf-8")
    tokens = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            tokens.append(_parse_token(line, f"on line {n} of {path}"))
    return tokens


def check_tokens(tokens: list[ApiToken]) -> None:
    """Two tokens with the same secret would make the actor ambiguous."""
    seen: dict[str, str] = {}
    for t in tokens:
        if t.token in seen:
            raise ValueError(f"API tokens {seen[t.token]!r} and {t.name!r} are the same secret")
        seen[t.token] = t.name


@dataclass(frozen=True)
class Settings:
    db_url: str = DEFAULT_DB_URL
    # A database older than the code at start: "auto" upgrades it (logged from/to), "refuse" stops
    # and says to run `csms db upgrade` (csms.db.schema). A newer one is always refused.
    schema_upgrade: str = "auto"
    ocpp_host: str = "127.0.0.1"
    ocpp_port: int = 9000
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    allow_unknown_chargers: bool = False  # lab mode: see csms.core.chargepoint_auth.decide_handshake
    max_auto_registered: int = 100  # lab mode registers at most this many charge points, ever
    accept_unknown_id_tags: bool = False  # test benches: tags not in the list are Accepted
    api_tokens: tuple[ApiToken, ...] = ()
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all (browsers refuse cross-origin calls)
    # Proxies (addresses or networks) whose X-Forwarded-For/-Proto are believed (csms.api.proxies); empty: none.
    trusted_proxies: tuple[str, ...] = ()
    # A trusted proxy's command older than this (its X-Request-Start) is refused, not run (csms.api.deadline).
    request_budget_seconds: float = 5.0
    # The site's tariff per kWh where no station or connector tariff is set (csms.core.tariffs); None: none.
    default_tariff: Decimal | None = None
    tls_cert: str | None = None  # PEM certificate chain; with tls_key, OCPP is wss:// and REST https://
    tls_key: str | None = None
    call_timeout_seconds: float = 30.0
    heartbeat_interval: int = 300
    max_frame_bytes: int = 64 * 1024
    # Abuse limits: what one client may cost the server.
    ocpp_max_queued_calls: int = 16  # a connection's Calls waiting for their answer; more closes it (1008)
    ocpp_messages_per_second: float = 50.0  # sustained, per connection (0: off); beyond the burst it is closed
    ocpp_message_burst: int = 500
    # Connector (and EVSE) ids a charger may name: 0..this; others get a CallError (csms.core.connector_limit).
    max_connectors_per_charger: int = 10
    handshake_timeout_seconds: float = 10.0  # TCP connect to WebSocket request
    max_connections: int = 5000  # open OCPP TCP connections (handshaking or open); more are closed at once
    max_handshakes: int = 200  # OCPP connections still in their handshake at once
    max_handshakes_per_address: int = 20  # of those, held by one IP address (csms.ocpp.ws_server)
    # Wrong charger passwords a minute before the next is refused unchecked (csms.core.throttle): per IP
    # address (an IPv6 /64), and per charge point id from one address. --trusted-proxies are exempt.
    handshake_failures_per_address: int = 30
    handshake_failures_per_id_and_address: int = 5
    max_body_bytes: int = 1024 * 1024  # REST request bodies; larger -> 413 before reading
    body_timeout_seconds: float = 15.0  # a REST body must arrive within this; else 408
    db_read_timeout_seconds: float = 35.0  # a read unanswered this long (a hung database) fails: REST 503
    freshness: timedelta = timedelta(minutes=30)
    # After a charger reconnects, its connectors stay not-free this long until it reports them (csms.core.occupancy).
    reconnect_settle_seconds: float = 10.0
    ports_file: str | None = None
    time_zone: str = "UTC"  # the console shows times in this IANA zone (UTC on hover)
    payment_provider: str = "simulated"
    # maintenance (see csms.core.maintenance)
    maintenance_interval_seconds: float = 60.0
    reservation_timeout_minutes: float = 60.0
    status_release_minutes: float = 240.0
    heartbeat_timeout_factor: float = 2.5
    status_grace_seconds: float = 30.0
    orphan_grace_seconds: float = 120.0
    session_idle_hours: float = 0.0
    quiet_transaction_seconds: float = 600.0
    start_timeout_seconds: float = 180.0
    # Provider cancels that failed are retried after this, doubling each time (at most an hour).
    payment_retry_seconds: float = 10.0
    # What an admin's force-end (unlock) bills: "charge" or "waive" (see csms.core.fee_policy).
    force_end_fee: str = "charge"
    # An unlock leaves open a transaction with live evidence this recent (csms.core.unlock_plan).
    live_evidence_seconds: float = 120.0
    # A paid session ended by an estimate (no StopTransaction) is settled with the provider this much later,
    # so a late StopTransaction can still set its fee.
    estimate_settle_seconds: float = 600.0
    # The console's meter charts: at most one kept energy sample per transaction this often (0: none),
    # deleted this many days after their transaction closed (0: kept) (csms.core.meter_samples).
    meter_sample_seconds: float = 60.0
    meter_sample_days: float = 90.0
    # Webhook receivers (csms.core.webhooks.WebhookTarget) and how deliveries are retried and queued.
    webhooks: tuple = ()
    webhook_retry_seconds: float = 1.0
    webhook_max_attempts: int = 6
    webhook_queue_size: int = 1000
    # Cluster mode (csms.cluster; PostgreSQL only): this node's id, how often it publishes its presence and
    # reads the others' (the verdicts of two nodes agree within about two of these), and how long its
    # word counts without a renewal (a dead node's charge points turn offline after at most this).
    node_id: str | None = None
    cluster_refresh_seconds: float = 0.5
    cluster_lease_seconds: float = 5.0

    def estimate_settle(self) -> timedelta:
        return timedelta(seconds=max(0.0, self.estimate_settle_seconds))

    def meter_sample_every(self) -> timedelta:
        return timedelta(seconds=max(0.0, self.meter_sample_seconds))

    def revive_within(self) -> timedelta | None:
        """How long after a remote start timed out or expired its StartTransaction still revives it
        (the start timeout, never below the call timeout); None when the start timeout is off."""
        if self.start_timeout_seconds <= 0:
            return None
        return timedelta(seconds=max(self.start_timeout_seconds, self.call_timeout_seconds))


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
