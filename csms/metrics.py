"""Prometheus metrics of the CSMS (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OCPP_CALLS = Counter("csms_ocpp_calls_total", "OCPP calls received from charge points", ["action"])
OCPP_ERRORS = Counter("csms_ocpp_call_errors_total", "CallErrors sent to charge points", ["code"])
CONNECTED = Gauge("csms_connected_charge_points", "Charge points with an open WebSocket")
HANDSHAKES_REFUSED = Counter("csms_handshakes_refused_total", "WebSocket handshakes refused", ["reason"])
START_REFUSED = Counter("csms_start_refused_total", "Session starts refused", ["code"])
UNLOCK_CALLS = Counter("csms_unlock_calls_total", "unlock-connector calls", ["outcome"])
STUCK_FOUND = Counter("csms_stuck_sessions_found_total", "Stuck sessions found by unlock")
STUCK_CLEANED = Counter("csms_stuck_sessions_cleaned_total", "Stuck sessions force-ended by unlock")
CLEANUP_FAILURES = Counter("csms_stuck_session_cleanup_failures_total", "Stuck sessions that failed to clean")
CLEANUP_SECONDS = Histogram("csms_stuck_session_cleanup_seconds", "Time to clean a connector's stuck sessions")
MAINTENANCE_ACTIONS = Counter("csms_maintenance_actions_total", "Maintenance actions applied", ["kind"])
LATE_STOPS = Counter("csms_late_stop_transactions_total", "StopTransactions that reconciled a force-ended transaction")
PAYMENT_CANCELS = Counter(
    "csms_payment_cancels_total", "Provider cancels of reservations that ended before charging", ["outcome"]
)
PAYMENT_CAPTURES = Counter(
    "csms_payment_captures_total", "Provider captures of the fees of paid sessions that ended", ["outcome"]
)
CONNECTIONS_REPLACED = Counter(
    "csms_connections_replaced_total", "Charge point connections closed because the same id connected again"
)
CALLS_NOT_ACCEPTED = Counter(
    "csms_calls_refused_not_accepted_total",
    "Calls refused with SecurityError: the charge point has no accepted BootNotification",
    ["action"],
)
BOOTS_REJECTED = Counter("csms_boots_rejected_total", "BootNotifications answered Rejected", ["reason"])
ID_TAG_ANSWERS = Counter(
    "csms_id_tag_answers_total", "idTagInfo statuses answered to charge points", ["message", "status"]
)
OCPP_LIMITS = Counter(
    "csms_ocpp_limit_events_total",
    "OCPP frames and connections stopped by a limit: bad_frame, binary_frame, invalid_utf8, "
    "rate_limited, too_many_calls",
    ["kind"],
)
CONNECTIONS_REFUSED = Counter(
    "csms_ocpp_connections_refused_total",
    "TCP connections closed before the handshake: max_connections, max_handshakes, max_handshakes_per_address, "
    "evicted (the oldest without its request, for a newcomer), handshake_timeout, check_timeout, peer_closed",
    ["reason"],
)
CONNECTION_FAILURES = Counter(
    "csms_ocpp_connection_failures_total",
    "OCPP connections that ended by an exception, by stage (accept, handshake, open) and "
    "kind (peer_gone: closed or reset mid-way; internal_error: a fault of this server's)",
    ["stage", "kind"],
)
HTTP_LIMITS = Counter(
    "csms_http_limit_events_total", "REST requests stopped by a limit: body_too_large, body_timeout", ["kind"]
)
