"""The `csms` command: serve, maintenance and small admin helpers."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from datetime import timedelta

from csms.config import (
    DEFAULT_DB_URL,
    ApiToken,
    Settings,
    check_tokens,
    env_flag,
    parse_tokens,
    parse_tokens_file,
)
from csms.core.web_access import ROLES
from csms.core.webhooks import parse_webhook

__all__ = ["main", "build_parser", "settings_from_args"]

log = logging.getLogger("csms")

EPILOG = """examples:
  csms serve --api-tokens-file /etc/csms/tokens --tls-cert cert.pem --tls-key key.pem   # a site
  csms chargers add CP001 --password-stdin < cp001.pw   # provision a charge point (and its station)
  csms id-tags import tags.csv                          # idTag,status,expiryDate,parentIdTag
  csms serve --allow-unknown-chargers --accept-unknown-id-tags   # lab mode, for test benches only
  csms serve --db postgresql+psycopg://postgres@127.0.0.1:5432/test
  csms db upgrade --db postgresql+psycopg://postgres@127.0.0.1:5432/test   # after installing a new version
  csms serve --ocpp-port 0 --http-port 0 --ports-file /tmp/ports.json   # free ports, written as JSON

Charge points connect to ws://HOST:OCPP_PORT/ocpp/{chargePointId} (wss:// with --tls-cert) with
subprotocol ocpp2.0.1 or ocpp1.6 (the charger's order of preference; docs/ocpp201.md) and HTTP Basic auth
(user: the id, password: its own; OCPP security profiles 1/2).
REST: http(s)://HOST:HTTP_PORT/api/..., OpenAPI docs at /docs, /health (readiness: the database answers), /health/live
(liveness, for a load balancer) and /metrics.
"""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _time_zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None
    return name


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=_env("CSMS_DATABASE_URL", DEFAULT_DB_URL),
        help="database URL (env CSMS_DATABASE_URL; default %(default)s). "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )


def _add_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default=_env("CSMS_LOG_LEVEL", "INFO"), help="default %(default)s")
    p.add_argument("--log-format", choices=("text", "json"), default=_env("CSMS_LOG_FORMAT", "text"))


def _add_maintenance(p: argparse.ArgumentParser, *, live_rules: bool = False) -> None:
    g = p.add_argument_group("maintenance (a threshold of 0 or below disables that cleanup)")
    g.add_argument(
        "--reservation-timeout-minutes",
        type=float,
        default=60.0,
        help="cancel PendingPayment/Authorized/StartRequested reservations older than this (default 60)",
    )
    g.add_argument(
        "--status-release-minutes",
        type=float,
        default=240.0,
        help="flip persisted non-Available statuses older than this to Available (default 240)",
    )
    g.add_argument(
        "--session-idle-hours",
        type=float,
        default=0.0,
        help="force-end sessions silent for this long (default 0 = off)",
    )
    g.add_argument(
        "--orphan-grace-seconds",
        type=float,
        default=120.0,
        help="close an open transaction whose connector reports Available this long (default 120)",
    )
    g.add_argument(
        "--start-timeout-seconds",
        type=float,
        default=180.0,
        help="end a session whose remote start was accepted but whose StartTransaction has not come in "
        "this long (StartExpired; at least --call-timeout-seconds); a second start on its connector "
        "is refused meanwhile, and a StartTransaction up to this long after still revives it "
        "(default 180)",
    )
    if live_rules:
        g.add_argument(
            "--quiet-transaction-seconds",
            type=float,
            default=600.0,
            help="TriggerMessage StatusNotification for the connector of an open transaction that sent "
            "no MeterValues, status or transaction message this long (default 600)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csms",
        description="unstuck: an OCPP 1.6J and 2.0.1 central system that keeps connectors honest.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the CSMS (OCPP WebSocket server + REST API)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_db(serve)
    serve.add_argument("--ocpp-host", default=_env("CSMS_OCPP_HOST", "127.0.0.1"))
    serve.add_argument("--ocpp-port", type=int, default=int(_env("CSMS_OCPP_PORT", "9000")), help="0 picks a free port")
    serve.add_argument("--http-host", default=_env("CSMS_HTTP_HOST", "127.0.0.1"))
    serve.add_argument("--http-port", type=int, default=int(_env("CSMS_HTTP_PORT", "8000")), help="0 picks a free port")
    serve.add_argument(
        "--allow-unknown-chargers",
        action="store_true",
        default=env_flag("CSMS_ALLOW_UNKNOWN"),
        help="LAB MODE, test benches only: any charge point id connects without a password and its "
        "first boot registers it and a station (env CSMS_ALLOW_UNKNOWN=1). Charge points that "
        "have a password still need it",
    )
    serve.add_argument(
        "--max-auto-registered",
        type=int,
        default=int(_env("CSMS_MAX_AUTO_REGISTERED", "100")),
        metavar="N",
        help="lab mode registers at most N charge points, ever; unknown ids beyond are refused (default %(default)s)",
    )
    serve.add_argument(
        "--accept-unknown-id-tags",
        action="store_true",
        default=env_flag("CSMS_ACCEPT_UNKNOWN_ID_TAGS"),
        help="test benches: id tags not in the list are Accepted instead of Invalid "
        "(env CSMS_ACCEPT_UNKNOWN_ID_TAGS=1)",
    )
    serve.add_argument(
        "--api-token",
        action="append",
        default=[],
        metavar="ROLE[:NAME]:TOKEN",
        help="REST bearer token, role admin or user, NAME the actor in audit events (default: the "
        "role); repeatable (env CSMS_API_TOKENS='admin:alice:...,user:...'). Visible to local "
        "users in the process list: prefer --api-tokens-file",
    )
    serve.add_argument(
        "--api-tokens-file",
        default=_env("CSMS_API_TOKENS_FILE", "") or None,
        metavar="FILE",
        help="one ROLE:NAME:TOKEN per line, '#' comments (env CSMS_API_TOKENS_FILE)",
    )
    serve.add_argument(
        "--tls-cert",
        default=_env("CSMS_TLS_CERT", "") or None,
        metavar="PEM",
        help="certificate chain: OCPP on wss:// and REST on https:// (security profile 2)",
    )
    serve.add_argument(
        "--tls-key", default=_env("CSMS_TLS_KEY", "") or None, metavar="PEM", help="the certificate's private key"
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (e.g. https://app.example.com) to call the REST API; "
        "repeatable (env CSMS_CORS_ORIGINS, comma-separated). Default: CORS off",
    )
    serve.add_argument(
        "--trusted-proxies",
        default=_env("CSMS_TRUSTED_PROXIES", ""),
        metavar="ADDRS",
        help="addresses or networks of reverse proxies in front of the HTTP port (e.g. 127.0.0.1,10.0.0.0/8): "
        "from these only, X-Forwarded-Proto says the browser used https (the console's cookies get Secure, "
        "answers carry Strict-Transport-Security) and X-Forwarded-For names the client (throttles and logs "
        "use it). On the OCPP port, where every charger behind a balancer has its address, these are "
        "exempt from the per-address limits (--max-handshakes-per-address, --handshake-failures-per-address). "
        "Default none: the headers are ignored, since any client can send them (env CSMS_TRUSTED_PROXIES)",
    )
    serve.add_argument(
        "--request-budget-seconds",
        type=float,
        default=float(_env("CSMS_REQUEST_BUDGET_SECONDS", "5")),
        metavar="S",
        help="a command (POST, PUT, PATCH, DELETE) that reaches this node more than S seconds after a trusted "
        "proxy received it (its X-Request-Start header; HAProxy: http-request set-header X-Request-Start "
        "t=%%[date(0,us)]) is answered 503 and not executed: a node that was frozen (SIGSTOP, a stalled VM) "
        "must not run on waking a start its caller gave up on and may have sent to another node. "
        "0: off. Default %(default)s (env CSMS_REQUEST_BUDGET_SECONDS)",
    )
    serve.add_argument(
        "--call-timeout-seconds",
        type=float,
        default=30.0,
        help="how long a CSMS -> charge point call waits for its answer (default 30)",
    )
    serve.add_argument(
        "--heartbeat-interval", type=int, default=300, help="seconds, sent in BootNotification (default 300)"
    )
    serve.add_argument(
        "--freshness-minutes",
        type=float,
        default=30.0,
        help="a persisted status counts for occupancy only this long without a live one (default 30)",
    )
    serve.add_argument(
        "--reconnect-settle-seconds",
        type=float,
        default=10.0,
        help="after a charge point reconnects, a connector it reported before is not 'free' until it "
        "reports it again or this many seconds pass: it may be replaying a session started "
        "while it was offline (default 10; 0 turns this off)",
    )
    serve.add_argument("--max-frame-bytes", type=int, default=65536, help="larger frames close the connection (1009)")
    lim = serve.add_argument_group("abuse limits (each counted in /metrics)")
    lim.add_argument(
        "--ocpp-max-queued-calls",
        type=int,
        default=16,
        help="a connection's Calls waiting to be answered (served in order); more close it with 1008 (default 16)",
    )
    lim.add_argument(
        "--ocpp-messages-per-second",
        type=float,
        default=50.0,
        help="messages a connection may send per second, sustained; beyond the burst it is closed with "
        "1008; 0 turns it off, for benchmarks (default 50)",
    )
    lim.add_argument("--ocpp-message-burst", type=int, default=500, help="default 500")
    lim.add_argument(
        "--max-connectors-per-charger",
        type=int,
        default=int(_env("CSMS_MAX_CONNECTORS_PER_CHARGER", "10")),
        metavar="N",
        help="connector ids (1.6) and EVSE and connector ids (2.0.1) a charge point may name: 1..N, and 0 for "
        "the charger itself or its main meter. Every connector named is kept and drawn on the board, so a "
        "larger id is answered with CallError PropertyConstraintViolation and nothing is stored. Raise it for "
        "chargers with more outlets (env CSMS_MAX_CONNECTORS_PER_CHARGER, default %(default)s)",
    )
    lim.add_argument(
        "--handshake-timeout-seconds",
        type=float,
        default=10.0,
        help="from TCP connect until the handshake is accepted or refused: reading the WebSocket request and "
        "checking the charger's password both count; then the socket is closed unanswered (default 10)",
    )
    lim.add_argument(
        "--max-connections",
        type=int,
        default=5000,
        help="open OCPP TCP connections; more are closed at once (default 5000)",
    )
    lim.add_argument(
        "--max-handshakes",
        type=int,
        default=200,
        help="OCPP connections in their handshake at once. When all are taken, a newcomer closes the oldest "
        "one that has not sent its request yet (an idle socket; a charger sends it within milliseconds); "
        "with none such it is closed at once (default 200)",
    )
    lim.add_argument(
        "--max-handshakes-per-address",
        type=int,
        default=int(_env("CSMS_MAX_HANDSHAKES_PER_ADDRESS", "20")),
        metavar="N",
        help="of those, how many one IP address may hold: past it, a newcomer from that address closes that "
        "address's oldest one still without its request, so sockets left idle from one address can never "
        "keep other chargers out. Raise it for many chargers behind one NAT address that all reconnect at "
        "once (env CSMS_MAX_HANDSHAKES_PER_ADDRESS, default %(default)s)",
    )
    lim.add_argument(
        "--handshake-failures-per-address",
        type=int,
        default=int(_env("CSMS_HANDSHAKE_FAILURES_PER_ADDRESS", "30")),
        metavar="N",
        help="wrong charger passwords one IP address (an IPv6 /64) may send a minute; past it the next is "
        "answered 401 unchecked until the oldest ages out. The addresses of --trusted-proxies are exempt, "
        "as from --max-handshakes-per-address: behind a balancer every charger has its address "
        "(env CSMS_HANDSHAKE_FAILURES_PER_ADDRESS, default %(default)s)",
    )
    lim.add_argument(
        "--handshake-failures-per-id-and-address",
        type=int,
        default=int(_env("CSMS_HANDSHAKE_FAILURES_PER_ID_AND_ADDRESS", "5")),
        metavar="N",
        help="wrong passwords for one charge point id from one IP address a minute, as above "
        "(env CSMS_HANDSHAKE_FAILURES_PER_ID_AND_ADDRESS, default %(default)s)",
    )
    lim.add_argument(
        "--max-body-bytes",
        type=int,
        default=1024 * 1024,
        help="largest REST request body; larger ones get 413 before they are read (default 1 MiB)",
    )
    lim.add_argument(
        "--body-timeout-seconds",
        type=float,
        default=15.0,
        help="a REST request body must arrive within this; else 408 (default 15)",
    )
    lim.add_argument(
        "--db-read-timeout-seconds",
        type=float,
        default=35.0,
        help="a database read unanswered this long (a hung server) fails; REST answers 503 "
        "(default 35: PostgreSQL's connect timeout 5 + statement timeout 30)",
    )
    serve.add_argument("--maintenance-interval-seconds", type=float, default=60.0, help="default 60")
    serve.add_argument(
        "--heartbeat-timeout-factor",
        type=float,
        default=2.5,
        help="offline after this many heartbeat intervals of silence (default 2.5)",
    )
    serve.add_argument(
        "--status-grace-seconds",
        type=float,
        default=30.0,
        help="TriggerMessage StatusNotification for connectors silent this long after boot, for "
        "Charging/SuspendedEV/SuspendedEVSE this long with no open transaction, and for any other "
        "non-Available status with no open transaction of a connector that reports none of its "
        "own (the wait doubling after each answer that keeps it, up to 16 x) (default 30)",
    )
    _add_maintenance(serve, live_rules=True)
    serve.add_argument(
        "--payment-provider",
        default=_env("CSMS_PAYMENT_PROVIDER", "simulated"),
        help="'simulated' (default) or package.module:ClassName of a PaymentProvider",
    )
    serve.add_argument(
        "--payment-retry-seconds",
        type=float,
        default=10.0,
        help="a provider cancel or capture that failed is retried after this, doubling each time up to an hour "
        "(default 10)",
    )
    serve.add_argument(
        "--force-end-fee",
        choices=("charge", "waive"),
        default=_env("CSMS_FORCE_END_FEE", "charge"),
        help="what a session an admin force-ends (unlock) is billed: 'charge' its metered energy "
        "(default) or 'waive' the fee (0.00, the session records why); env CSMS_FORCE_END_FEE",
    )
    serve.add_argument(
        "--tariff",
        default=_env("CSMS_TARIFF", "") or None,
        metavar="PRICE",
        help="the site's price per kWh (e.g. 0.30) where an admin set none for the station or connector "
        "(PUT /api/tariffs). A start from a user token or a console operator must ask this price or is "
        "refused; only admins may price a session otherwise. Default none: such starts need a station "
        "or connector tariff (env CSMS_TARIFF)",
    )
    serve.add_argument(
        "--estimate-settle-seconds",
        type=float,
        default=600.0,
        help="a paid session ended without its StopTransaction (orphan sweep, unlock, superseded by "
        "the next car) has its fee captured with the provider this much later, so a late "
        "StopTransaction can still correct it (default 600)",
    )
    serve.add_argument(
        "--meter-sample-seconds",
        type=float,
        default=60.0,
        help="keep at most one energy sample per transaction this often for the console's meter chart "
        "(its first, and the latest on the transaction itself; 0: keep none; default 60)",
    )
    serve.add_argument(
        "--meter-sample-days",
        type=float,
        default=90.0,
        help="delete the kept energy samples of transactions closed longer ago than this (0: keep them; "
        "default 90); the transactions themselves stay",
    )
    serve.add_argument(
        "--live-evidence-seconds",
        type=float,
        default=120.0,
        help="an unlock leaves open a transaction with a meter sample (or a Charging/SuspendedEV "
        "status) newer than this: a car is still charging; forceActive overrides (default 120, "
        "twice a common 60 s MeterValueSampleInterval; 0: every open session is stuck)",
    )
    serve.add_argument(
        "--time-zone",
        type=_time_zone,
        default=_env("CSMS_TIME_ZONE", "UTC"),
        metavar="ZONE",
        help="the site's time zone for the console (an IANA name such as Europe/Berlin; every time is shown "
        "in it, with UTC on hover; default UTC or $CSMS_TIME_ZONE)",
    )
    hooks = serve.add_argument_group(
        "webhooks (session.ended, session.force_ended, transaction.orphaned, connector.freed, "
        "charge_point.offline, charge_point.online)"
    )
    hooks.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL[,SECRET]",
        help="POST every event as JSON to URL, signed with HMAC-SHA256 of SECRET (header "
        "X-Unstuck-Signature) when given; repeatable (env CSMS_WEBHOOKS, items separated by "
        "spaces: keeps secrets out of the process list)",
    )
    hooks.add_argument(
        "--webhook-retry-seconds",
        type=float,
        default=1.0,
        help="first retry after a failed delivery, doubling each time up to 5 min (default 1)",
    )
    hooks.add_argument("--webhook-max-attempts", type=int, default=6, help="attempts per event (default 6)")
    hooks.add_argument(
        "--webhook-queue-size",
        type=int,
        default=1000,
        help="events waiting per receiver; a slow or dead receiver loses its oldest beyond this (default 1000)",
    )
    serve.add_argument(
        "--schema-upgrade",
        choices=("auto", "refuse"),
        default=_env("CSMS_SCHEMA_UPGRADE", "auto"),
        help="a database older than this csms at start: 'auto' upgrades it and logs from/to "
        "(default), 'refuse' stops and says to run `csms db upgrade` (env CSMS_SCHEMA_UPGRADE). "
        "An empty database is always created, a newer one always refused",
    )
    serve.add_argument(
        "--node-id",
        default=_env("CSMS_NODE_ID", "") or None,
        help="run as one node of a cluster behind a load balancer (PostgreSQL only): presence, "
        "commands and maintenance are shared with the other nodes on the same database; "
        "1 to 40 of A-Z a-z 0-9 _ - (env CSMS_NODE_ID). Without it: a single node, as before",
    )
    serve.add_argument("--ports-file", help="write the bound addresses as JSON here once listening")
    _add_logging(serve)

    maint = sub.add_parser(
        "maintenance",
        help="apply the database maintenance rules once (stale reservations, old statuses, idle sessions)",
        description="Runs the rules that need only the database against --db and prints a table of actions. "
        "Live rules (offline detection, silent connectors, orphaned transactions) run inside `csms serve`.",
    )
    _add_db(maint)
    maint.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    _add_maintenance(maint)
    _add_logging(maint)

    chargers = sub.add_parser("chargers", help="provision charge points: ids and passwords")
    csub = chargers.add_subparsers(dest="chargers_command", required=True, metavar="ACTION")
    add = csub.add_parser(
        "add",
        help="register a charge point (and a station of the same id) and/or set its password",
        description="Registers ID if new, with a station of the same id, and with --password-stdin "
        "sets or replaces its HTTP Basic password (the first line of standard input; "
        "16 to 40 printable characters; stored as a salted scrypt hash only). Takes "
        "effect at once, also for a running csms serve on the same database.",
    )
    add.add_argument("id", help="the charge point id (printable ASCII, at most 48, no ':' or '/')")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _add_db(add)
    _add_logging(add)
    lst = csub.add_parser("list", help="every charge point, whether it has a password, when it last booted")
    _add_db(lst)
    _add_logging(lst)

    tags = sub.add_parser("id-tags", help="the id tag list: who may charge")
    tsub = tags.add_subparsers(dest="tags_command", required=True, metavar="ACTION")
    imp = tsub.add_parser(
        "import",
        help="add or replace tags from a CSV file",
        description="CSV with a header line: idTag,status,expiryDate,parentIdTag (status Accepted, "
        "Blocked, Expired or Invalid, default Accepted; expiryDate ISO 8601, optional). "
        "Tags in the file are added or replaced; tags not in it are left alone. "
        "Nothing is imported if any line is wrong.",
    )
    imp.add_argument("file", help="the CSV file ('-' reads standard input)")
    _add_db(imp)
    _add_logging(imp)
    tlist = tsub.add_parser("list", help="every tag in the list")
    _add_db(tlist)
    _add_logging(tlist)

    users = sub.add_parser("users", help="people who sign in to the dashboard (/ui/): names, roles, passwords")
    usub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    uadd = usub.add_parser(
        "add",
        help="add a dashboard user, or with --update change an existing one's role and password",
        description="Adds NAME with ROLE (viewer: sees every page; operator: also unlocks, starts, stops, "
        "resets; admin: also manages users, id tags and charger passwords). The password is the first "
        "line of standard input with --password-stdin (at least 10 characters; stored as an argon2 hash "
        "only), else asked for on the terminal. Example: "
        "echo 'a long passphrase' | csms users add alice --role admin --password-stdin",
    )
    uadd.add_argument("name", help="1-64 letters, digits and . _ @ -")
    uadd.add_argument("--role", choices=ROLES, default="operator", help="(default operator)")
    uadd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    uadd.add_argument("--update", action="store_true", help="the user exists: set this role and password")
    _add_db(uadd)
    _add_logging(uadd)
    ulist = usub.add_parser("list", help="every dashboard user with role and state")
    _add_db(ulist)
    _add_logging(ulist)

    db = sub.add_parser(
        "db",
        help="the database schema: upgrade after installing a new csms, see its revision",
        description=DB_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dsub.add_parser(
        "upgrade",
        help="create or upgrade the schema to this csms's revision (keeps all rows)",
        description="Creates the tables of an empty database; upgrades an older one through each "
        "migration in turn, keeping its rows; adopts a database made before schema "
        "versions (stamps the revision its tables match, then upgrades). Refuses a "
        "database newer than this csms. Safe to run twice, and while other csms "
        "processes start on the same PostgreSQL database (they wait for it).",
    )
    _add_db(up)
    up.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL that would upgrade a database at --from-revision instead of running it",
    )
    up.add_argument(
        "--from-revision",
        default=None,
        metavar="REV",
        help="with --sql: the revision the database is at (default: the first, 0001)",
    )
    _add_logging(up)
    cur = dsub.add_parser("current", help="the database's revision, this csms's, and what to do")
    _add_db(cur)
    _add_logging(cur)
    hist = dsub.add_parser("history", help="every schema revision this csms knows, oldest first")
    _add_db(hist)
    _add_logging(hist)
    return parser


DB_HELP = """The schema has numbered revisions (Alembic migrations shipped inside csms, see `csms db history`);
the database records its own in the table alembic_version.

At start, `csms serve` checks it:
  empty database          -> creates today's tables
  at this csms's revision -> serves
  older (a new csms)      -> upgrades it and logs from/to (--schema-upgrade auto, the default),
                             or stops and asks for `csms db upgrade` (--schema-upgrade refuse)
  newer (an older csms)   -> refuses to start, naming both revisions
  tables, no revision     -> (made before schema versions) matched to a revision, stamped, upgraded

examples:
  csms db current --db sqlite:///unstuck.db
  cp unstuck.db unstuck.db.bak && csms db upgrade --db sqlite:///unstuck.db
  pg_dump ... && csms db upgrade --db postgresql+psycopg://csms@db.example:5432/csms
  csms db upgrade --sql --from-revision 0003   # the DDL, for a DBA to review or run
"""


def settings_from_args(args: argparse.Namespace) -> Settings:
    tokens = parse_tokens(list(args.api_token) or [os.environ.get("CSMS_API_TOKENS", "")])
    if args.api_tokens_file:
        try:
            tokens += parse_tokens_file(args.api_tokens_file)
        except OSError as exc:
            raise ValueError(f"cannot read --api-tokens-file: {exc}") from None
    check_tokens(tokens)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.max_auto_registered < 0:
        raise ValueError("--max-auto-registered must be 0 or more")
    if args.max_connectors_per_charger < 1:
        raise ValueError("--max-connectors-per-charger must be 1 or more")
    if not args.request_budget_seconds >= 0:  # also refuses nan
        raise ValueError("--request-budget-seconds must be 0 (off) or more")
    cors = list(args.cors_origin) or [o.strip() for o in os.environ.get("CSMS_CORS_ORIGINS", "").split(",")]
    from csms.api.proxies import parse_trusted_proxies
    from csms.core.billing import InvalidTariffError, parse_tariff

    proxies = tuple(str(n) for n in parse_trusted_proxies([args.trusted_proxies]))
    try:
        default_tariff = parse_tariff(args.tariff) if args.tariff else None
    except InvalidTariffError as exc:
        raise ValueError(f"--tariff: {exc}") from None
    webhooks = tuple(parse_webhook(w) for w in (list(args.webhook) or os.environ.get("CSMS_WEBHOOKS", "").split()))
    if args.webhook_max_attempts < 1 or args.webhook_queue_size < 1 or args.webhook_retry_seconds < 0:
        raise ValueError(
            "--webhook-max-attempts and --webhook-queue-size must be 1 or more, --webhook-retry-seconds 0 or more"
        )
    if args.node_id is not None:
        from csms.cluster import check_cluster_settings

        check_cluster_settings(args.node_id, args.db)  # a ValueError: said, and exit 2
    return Settings(
        db_url=args.db,
        schema_upgrade=args.schema_upgrade,
        ocpp_host=args.ocpp_host,
        ocpp_port=args.ocpp_port,
        http_host=args.http_host,
        http_port=args.http_port,
        allow_unknown_chargers=args.allow_unknown_chargers,
        max_auto_registered=args.max_auto_registered,
        accept_unknown_id_tags=args.accept_unknown_id_tags,
        api_tokens=tuple(tokens),
        cors_origins=tuple(o for o in cors if o),
        trusted_proxies=proxies,
        request_budget_seconds=args.request_budget_seconds,
        default_tariff=default_tariff,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        call_timeout_seconds=args.call_timeout_seconds,
        heartbeat_interval=args.heartbeat_interval,
        max_frame_bytes=args.max_frame_bytes,
        ocpp_max_queued_calls=args.ocpp_max_queued_calls,
        ocpp_messages_per_second=args.ocpp_messages_per_second,
        ocpp_message_burst=args.ocpp_message_burst,
        max_connectors_per_charger=args.max_connectors_per_charger,
        handshake_timeout_seconds=args.handshake_timeout_seconds,
        max_connections=args.max_connections,
        max_handshakes=args.max_handshakes,
        max_handshakes_per_address=args.max_handshakes_per_address,
        handshake_failures_per_address=args.handshake_failures_per_address,
        handshake_failures_per_id_and_address=args.handshake_failures_per_id_and_address,
        max_body_bytes=args.max_body_bytes,
        body_timeout_seconds=args.body_timeout_seconds,
        db_read_timeout_seconds=args.db_read_timeout_seconds,
        freshness=timedelta(minutes=args.freshness_minutes),
        reconnect_settle_seconds=args.reconnect_settle_seconds,
        ports_file=args.ports_file,
        node_id=args.node_id,
        payment_provider=args.payment_provider,
        maintenance_interval_seconds=args.maintenance_interval_seconds,
        reservation_timeout_minutes=args.reservation_timeout_minutes,
        status_release_minutes=args.status_release_minutes,
        heartbeat_timeout_factor=args.heartbeat_timeout_factor,
        status_grace_seconds=args.status_grace_seconds,
        orphan_grace_seconds=args.orphan_grace_seconds,
        session_idle_hours=args.session_idle_hours,
        quiet_transaction_seconds=args.quiet_transaction_seconds,
        start_timeout_seconds=args.start_timeout_seconds,
        payment_retry_seconds=args.payment_retry_seconds,
        force_end_fee=args.force_end_fee,
        live_evidence_seconds=args.live_evidence_seconds,
        time_zone=args.time_zone,
        estimate_settle_seconds=args.estimate_settle_seconds,
        meter_sample_seconds=args.meter_sample_seconds,
        meter_sample_days=args.meter_sample_days,
        webhooks=webhooks,
        webhook_retry_seconds=args.webhook_retry_seconds,
        webhook_max_attempts=args.webhook_max_attempts,
        webhook_queue_size=args.webhook_queue_size,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from csms.server import run_until_signal

    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"csms: {exc}", file=sys.stderr)
        return 2
    if args.api_tokens_file and os.stat(args.api_tokens_file).st_mode & 0o077:
        log.warning("api.tokens_file_readable_by_others file=%s (chmod 600 it)", args.api_tokens_file)
    if not settings.api_tokens:
        token = secrets.token_urlsafe(18)
        settings = Settings(**{**settings.__dict__, "api_tokens": (ApiToken("admin", token, "generated-admin"),)})
        path = _write_generated_token(token)
        log.warning(
            "api.no_tokens_configured generated an admin token for this run, named generated-admin; it is in "
            "%s (readable by this user only; tokens are never logged). Choose your own with "
            "--api-tokens-file FILE (ROLE:NAME:TOKEN lines)",
            path,
        )
    try:
        trio.run(run_until_signal, settings)
    except OSError as exc:
        log.error("csms.failed_to_start %s", exc)
        return 1
    except BaseExceptionGroup as group:
        refused = _schema_refusal(group)
        if refused is None:
            raise
        log.error("csms.schema_refused %s", refused.message)
        return 1
    return 0


def _schema_refusal(exc: BaseException):
    """The SchemaError that stopped serve, inside the nurseries' exception groups (or None)."""
    from csms.db.schema import SchemaError

    if isinstance(exc, SchemaError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _schema_refusal(inner)
            if found is not None:
                return found
    return None


def _write_generated_token(token: str) -> str:
    """A generated token goes to a file only its owner can read, never to the log."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="csms-admin-token-", text=True)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return path


def _open_db(url: str):
    from csms.db.database import Database
    from csms.db.engine import make_engine
    from csms.db.schema import prepare

    engine = make_engine(url)
    prepare(engine)
    return engine, Database(engine)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _cmd_chargers(args: argparse.Namespace) -> int:
    from csms.clock import SystemClock
    from csms.core.chargepoint_auth import charge_point_id_problem, hash_password, password_problem
    from csms.core.times import iso
    from csms.db import credential_store
    from csms.db.cleanup_store import audit

    engine, db = _open_db(args.db)
    try:
        if args.chargers_command == "list":
            rows = db.run_sync(credential_store.list_chargers)
            _print_table(
                ("id", "password", "registered", "last boot", "last seen"),
                [
                    (
                        r.id,
                        "set" if r.password_set else "-",
                        iso(r.registered_at) or "-",
                        iso(r.last_boot_at) or "-",
                        iso(r.last_seen_at) or "-",
                    )
                    for r in rows
                ],
            )
            print(f"\n{len(rows)} charge point(s), {sum(r.password_set for r in rows)} with a password.")
            return 0
        problem = charge_point_id_problem(args.id)
        if problem:
            print(f"csms: {problem}", file=sys.stderr)
            return 2
        pw_hash = None
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            problem = password_problem(password)
            if problem:
                print(f"csms: {problem}", file=sys.stderr)
                return 2
            pw_hash = hash_password(password)
        now, actor = SystemClock().now(), _actor()

        def work(s):
            result = credential_store.provision(s, args.id, pw_hash, now)
            audit(
                s,
                actor=actor,
                action="charge_point.provisioned",
                at=now,
                charge_point_id=args.id,
                created=result.created,
                passwordChanged=pw_hash is not None,
            )
            return result

        result = db.run_sync(work)
    finally:
        engine.dispose()
    what = "added" if result.created else "already registered"
    station = f", station {args.id} created" if result.station_created else ""
    pw = "password set" if pw_hash else ("password unchanged" if result.password_set else "NO password")
    print(f"charge point {args.id} {what}{station}; {pw}")
    if not result.password_set:
        print(
            f"  it cannot connect until it has one (outside lab mode): csms chargers add {args.id} --password-stdin",
            file=sys.stderr,
        )
    return 0


def _cmd_id_tags(args: argparse.Namespace) -> int:
    from csms.clock import SystemClock
    from csms.core.id_tags import CsvError, parse_csv
    from csms.core.times import iso
    from csms.db import id_tag_store
    from csms.db.cleanup_store import audit

    if args.tags_command == "import":
        try:
            text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8-sig").read()
            records = parse_csv(text)
        except (OSError, CsvError) as exc:
            print(f"csms: {args.file}: {exc}", file=sys.stderr)
            return 2
    engine, db = _open_db(args.db)
    try:
        if args.tags_command == "list":
            rows = db.run_sync(id_tag_store.list_tags)
            _print_table(
                ("idTag", "status", "expiryDate", "parentIdTag"),
                [(r.id_tag, r.status.value, iso(r.expiry_date) or "-", r.parent_id_tag or "-") for r in rows],
            )
            print(f"\n{len(rows)} tag(s).")
            return 0
        now, actor = SystemClock().now(), _actor()

        def work(s) -> tuple[int, int]:
            created = updated = 0
            for record in records:
                existed = id_tag_store.lookup(s, record.id_tag) is not None
                id_tag_store.upsert(s, record, now)
                created, updated = created + (not existed), updated + existed
            audit(
                s,
                actor=actor,
                action="id_tag.imported",
                at=now,
                subject=os.path.basename(args.file),
                created=created,
                updated=updated,
            )
            return created, updated

        created, updated = db.run_sync(work)
    finally:
        engine.dispose()
    print(f"{args.file}: {len(records)} tag(s) imported: {created} new, {updated} replaced.")
    return 0


def _cmd_users(args: argparse.Namespace) -> int:
    from csms.clock import SystemClock
    from csms.core.times import iso
    from csms.core.web_access import user_name_problem, user_password_problem
    from csms.db import web_user_store
    from csms.db.cleanup_store import audit
    from csms.ui.auth import hash_password

    if args.users_command == "add":
        problem = user_name_problem(args.name)
        if problem:
            print(f"csms: {problem}", file=sys.stderr)
            return 2
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            import getpass

            password = getpass.getpass(f"password for {args.name}: ")
        problem = user_password_problem(password)
        if problem:
            print(f"csms: {problem}", file=sys.stderr)
            return 2
        encoded = hash_password(password)
    engine, db = _open_db(args.db)
    try:
        if args.users_command == "list":
            rows = db.run_sync(web_user_store.list_users)
            _print_table(
                ("name", "role", "state", "changed"),
                [(u.name, u.role, "disabled" if u.disabled else "active", iso(u.updated_at) or "-") for u in rows],
            )
            print(f"\n{len(rows)} user(s).")
            return 0
        now, actor = SystemClock().now(), _actor()

        def work(s) -> str:
            if web_user_store.add_user(s, args.name, args.role, encoded, now):
                outcome = "added"
            elif args.update:
                web_user_store.update_user(s, args.name, now, role=args.role, password_hash=encoded, disabled=False)
                outcome = "updated"
            else:
                return "exists"
            audit(s, actor=actor, action=f"ui.user_{outcome}", at=now, subject=args.name, role=args.role)
            return outcome

        outcome = db.run_sync(work)
    finally:
        engine.dispose()
    if outcome == "exists":
        print(
            f"csms: there is a user {args.name!r} already (add --update to set its role and password)", file=sys.stderr
        )
        return 1
    print(f"user {args.name} {outcome} ({args.role}); sign in at /ui/ with this name and password")
    return 0


def _cmd_maintenance(args: argparse.Namespace) -> int:
    from csms.clock import SystemClock
    from csms.core.maintenance import Thresholds
    from csms.db.database import Database
    from csms.db.engine import make_engine
    from csms.db.schema import prepare
    from csms.services.maintenance import run_offline

    th = Thresholds.from_settings(
        Settings(
            db_url=args.db,
            reservation_timeout_minutes=args.reservation_timeout_minutes,
            status_release_minutes=args.status_release_minutes,
            orphan_grace_seconds=args.orphan_grace_seconds,
            session_idle_hours=args.session_idle_hours,
            start_timeout_seconds=args.start_timeout_seconds,
        )
    )
    engine = make_engine(args.db)
    try:
        prepare(engine)
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


def _cmd_db(args: argparse.Namespace) -> int:
    from csms.db import schema
    from csms.db.engine import make_engine, normalise_url, redact

    if args.db_command == "history":
        return _print_history(args.db)
    if args.db_command == "upgrade" and args.sql:
        return _print_upgrade_sql(normalise_url(args.db), args.from_revision)
    engine = make_engine(args.db)
    try:
        if args.db_command == "current":
            return _print_current(engine)
        try:
            outcome = schema.prepare(engine, upgrade_older=True)
        except schema.SchemaError as exc:
            print(f"csms: {exc.message}", file=sys.stderr)
            return 1
    finally:
        engine.dispose()
    plan = outcome.plan
    where = redact(normalise_url(args.db))
    if plan.action is schema.Action.CREATE:
        print(f"{where}: was empty; created the tables of revision {plan.head} ({outcome.seconds:.2f} s).")
    elif plan.action is schema.Action.NOTHING:
        adopted = " (tables made before schema versions: stamped)" if plan.adopt else ""
        print(f"{where}: already at revision {plan.head}{adopted}; nothing to do.")
    else:
        adopted = " (tables made before schema versions, matched to it and stamped)" if plan.adopt else ""
        print(f"{where}: upgraded from revision {plan.current}{adopted} to {plan.head} ({outcome.seconds:.2f} s).")
    return 0


def _print_current(engine) -> int:
    from csms.db import schema

    head = schema.head_revision()
    with engine.connect() as conn:
        current = schema.current_revision(conn)
        known = [s.revision for s in schema.history()]
        from sqlalchemy import inspect

        has_tables = bool(set(inspect(conn).get_table_names()) - {schema.VERSION_TABLE})
    print(f"database: {current or '(no revision)'}\nthis csms: {head}")
    if current == head:
        print("up to date.")
    elif current is None:
        print(
            "empty or made before schema versions: `csms db upgrade` creates or adopts it."
            if has_tables
            else "empty: `csms db upgrade` (or csms serve) creates the tables."
        )
    elif current in known:
        print(
            "older than this csms: back it up, then run `csms db upgrade` (csms serve does it at start "
            "unless --schema-upgrade refuse)."
        )
    else:
        print("NEWER than this csms (an unknown revision): run the newer csms; this one refuses to start on it.")
        return 1
    return 0


def _print_history(url: str) -> int:
    from csms.db import schema
    from csms.db.engine import make_engine

    current = None
    try:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                current = schema.current_revision(conn)
        finally:
            engine.dispose()
    except Exception:  # history is useful without a reachable database too
        pass
    head = schema.head_revision()
    for script in schema.history():
        marks = [m for m, on in (("head", script.revision == head), ("database", script.revision == current)) if on]
        title = (script.doc or "").strip().splitlines()[0]
        print(f"{script.revision}  {title}{'  <- ' + ', '.join(marks) if marks else ''}")
    return 0


def _print_upgrade_sql(url: str, from_revision: str | None) -> int:
    from alembic import command

    from csms.db import schema

    start = from_revision or schema.history()[0].revision
    command.upgrade(schema.alembic_config(url=url), f"{start}:head", sql=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    from csms.logs import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    handlers = {
        "serve": _cmd_serve,
        "maintenance": _cmd_maintenance,
        "chargers": _cmd_chargers,
        "id-tags": _cmd_id_tags,
        "users": _cmd_users,
        "db": _cmd_db,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
