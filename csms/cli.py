"""The `csms` command: serve, maintenance and small admin helpers."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from datetime import timedelta

from .config import (
    DEFAULT_DB_URL,
    TEST_BREAKS,
    ApiToken,
    Settings,
    env_flag,
    parse_test_breaks,
    parse_tokens,
)

__all__ = ["main", "build_parser", "settings_from_args"]

log = logging.getLogger("csms")

EPILOG = """examples:
  csms serve                                   # SQLite file ./unstuck.db, OCPP on :9000, REST on :8000
  csms serve --allow-unknown-chargers --api-token admin:s3cret-admin
  csms serve --db postgresql+psycopg://postgres@127.0.0.1:5432/test
  csms serve --ocpp-port 0 --http-port 0 --ports-file /tmp/ports.json   # free ports, written as JSON

Charge points connect to ws://HOST:OCPP_PORT/ocpp/{chargePointId} with subprotocol ocpp1.6.
REST: http://HOST:HTTP_PORT/api/..., OpenAPI docs at /docs, /health and /metrics.
"""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=_env("CSMS_DATABASE_URL", DEFAULT_DB_URL),
                   help="database URL (env CSMS_DATABASE_URL; default %(default)s). "
                        "PostgreSQL: postgresql+psycopg://user@host:5432/db")


def _add_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default=_env("CSMS_LOG_LEVEL", "INFO"), help="default %(default)s")
    p.add_argument("--log-format", choices=("text", "json"), default=_env("CSMS_LOG_FORMAT", "text"))


def _add_maintenance(p: argparse.ArgumentParser, *, live_rules: bool = False) -> None:
    g = p.add_argument_group("maintenance (a threshold of 0 or below disables that cleanup)")
    g.add_argument("--reservation-timeout-minutes", type=float, default=60.0,
                   help="cancel PendingPayment/Authorized/StartRequested reservations older than this (default 60)")
    g.add_argument("--status-release-minutes", type=float, default=240.0,
                   help="flip persisted non-Available statuses older than this to Available (default 240)")
    g.add_argument("--session-idle-hours", type=float, default=0.0,
                   help="force-end sessions silent for this long (default 0 = off)")
    g.add_argument("--orphan-grace-seconds", type=float, default=120.0,
                   help="close an open transaction whose connector reports Available this long (default 120)")
    if live_rules:
        g.add_argument("--quiet-transaction-seconds", type=float, default=600.0,
                       help="TriggerMessage StatusNotification for the connector of an open transaction that sent "
                            "no MeterValues, status or transaction message this long (default 600)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csms", description="unstuck: an OCPP 1.6J central system that keeps connectors honest.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the CSMS (OCPP WebSocket server + REST API)",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_db(serve)
    serve.add_argument("--ocpp-host", default=_env("CSMS_OCPP_HOST", "127.0.0.1"))
    serve.add_argument("--ocpp-port", type=int, default=int(_env("CSMS_OCPP_PORT", "9000")), help="0 picks a free port")
    serve.add_argument("--http-host", default=_env("CSMS_HTTP_HOST", "127.0.0.1"))
    serve.add_argument("--http-port", type=int, default=int(_env("CSMS_HTTP_PORT", "8000")), help="0 picks a free port")
    serve.add_argument("--allow-unknown-chargers", action="store_true", default=env_flag("CSMS_ALLOW_UNKNOWN"),
                       help="accept any charge point id; its first boot registers it and a station (env CSMS_ALLOW_UNKNOWN=1)")
    serve.add_argument("--api-token", action="append", default=[], metavar="ROLE:TOKEN",
                       help="REST bearer token, role admin or user; repeatable (env CSMS_API_TOKENS='admin:...,user:...')")
    serve.add_argument("--call-timeout-seconds", type=float, default=30.0,
                       help="how long a CSMS -> charge point call waits for its answer (default 30)")
    serve.add_argument("--heartbeat-interval", type=int, default=300, help="seconds, sent in BootNotification (default 300)")
    serve.add_argument("--freshness-minutes", type=float, default=30.0,
                       help="a persisted status counts for occupancy only this long without a live one (default 30)")
    serve.add_argument("--max-frame-bytes", type=int, default=65536, help="larger frames close the connection (1009)")
    serve.add_argument("--maintenance-interval-seconds", type=float, default=60.0, help="default 60")
    serve.add_argument("--heartbeat-timeout-factor", type=float, default=2.5,
                       help="offline after this many heartbeat intervals of silence (default 2.5)")
    serve.add_argument("--status-grace-seconds", type=float, default=30.0,
                       help="TriggerMessage StatusNotification for connectors silent this long after boot, and for "
                            "Charging/SuspendedEV/SuspendedEVSE this long with no open transaction (default 30)")
    _add_maintenance(serve, live_rules=True)
    serve.add_argument("--payment-provider", default=_env("CSMS_PAYMENT_PROVIDER", "simulated"),
                       help="'simulated' (default) or package.module:ClassName of a PaymentProvider")
    serve.add_argument("--ports-file", help="write the bound addresses as JSON here once listening")
    # Mutation testing only: brings back a known bug (csms.config.TEST_BREAKS); not in --help.
    serve.add_argument("--test-break", action="append", default=[], metavar="NAME", help=argparse.SUPPRESS)
    _add_logging(serve)

    maint = sub.add_parser(
        "maintenance", help="apply the database maintenance rules once (stale reservations, old statuses, idle sessions)",
        description="Runs the rules that need only the database against --db and prints a table of actions. "
                    "Live rules (offline detection, silent connectors, orphaned transactions) run inside `csms serve`.")
    _add_db(maint)
    maint.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    _add_maintenance(maint)
    _add_logging(maint)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    tokens = parse_tokens(list(args.api_token) or [os.environ.get("CSMS_API_TOKENS", "")])
    return Settings(
        db_url=args.db,
        ocpp_host=args.ocpp_host,
        ocpp_port=args.ocpp_port,
        http_host=args.http_host,
        http_port=args.http_port,
        allow_unknown_chargers=args.allow_unknown_chargers,
        api_tokens=tuple(tokens),
        call_timeout_seconds=args.call_timeout_seconds,
        heartbeat_interval=args.heartbeat_interval,
        max_frame_bytes=args.max_frame_bytes,
        freshness=timedelta(minutes=args.freshness_minutes),
        ports_file=args.ports_file,
        payment_provider=args.payment_provider,
        maintenance_interval_seconds=args.maintenance_interval_seconds,
        reservation_timeout_minutes=args.reservation_timeout_minutes,
        status_release_minutes=args.status_release_minutes,
        heartbeat_timeout_factor=args.heartbeat_timeout_factor,
        status_grace_seconds=args.status_grace_seconds,
        orphan_grace_seconds=args.orphan_grace_seconds,
        session_idle_hours=args.session_idle_hours,
        quiet_transaction_seconds=args.quiet_transaction_seconds,
        test_breaks=parse_test_breaks(args.test_break),
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from .server import run_until_signal

    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"csms: {exc}", file=sys.stderr)
        return 2
    if not settings.api_tokens:
        token = secrets.token_urlsafe(18)
        settings = Settings(**{**settings.__dict__, "api_tokens": (ApiToken("admin", token, "generated-admin"),)})
        log.warning("api.no_tokens_configured generated an admin token for this run: %s "
                    "(set --api-token admin:TOKEN or CSMS_API_TOKENS to choose your own)", token)
    for name in sorted(settings.test_breaks):
        log.warning("test_break.on name=%s: %s (a known bug switched back on for mutation testing; "
                    "never run this in production)", name, TEST_BREAKS[name])
    try:
        trio.run(run_until_signal, settings)
    except OSError as exc:
        log.error("csms.failed_to_start %s", exc)
        return 1
    return 0


def _cmd_maintenance(args: argparse.Namespace) -> int:
    from .clock import SystemClock
    from .db.database import Database
    from .db.engine import create_schema, make_engine
    from .maintenance import Thresholds
    from .maintenance_runner import run_offline

    th = Thresholds.from_settings(Settings(
        db_url=args.db,
        reservation_timeout_minutes=args.reservation_timeout_minutes,
        status_release_minutes=args.status_release_minutes,
        orphan_grace_seconds=args.orphan_grace_seconds,
        session_idle_hours=args.session_idle_hours,
    ))
    engine = make_engine(args.db)
    try:
        create_schema(engine)
        actions = run_offline(Database(engine), th, SystemClock().now(), dry_run=args.dry_run)
    finally:
        engine.dispose()
    header = ("action", "charge point", "connector", "subject", "reason")
    rows = [(a.kind.value, a.charge_point_id, str(a.connector_id or "-"), a.subject, a.reason) for a in actions]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    verb = "would apply" if args.dry_run else "applied"
    print(f"\n{len(actions)} action(s) {verb}{' (dry run: nothing changed)' if args.dry_run else ''}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .logs import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    handlers = {"serve": _cmd_serve, "maintenance": _cmd_maintenance}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
