"""The locustfile's own command-line options, and the plain settings they become.

Locust parses them (each but `--fault` has an `UNSTUCK_*` environment fallback; the
web UI shows them, `--help` does not, since locust prints it before loading a
locustfile) and, in a distributed run, sends the master's values to every worker.
`LoadOptions.from_parsed` turns them into frozen data the
rest of the package reads; fault options use the simulator's own syntax and parser
(`unstuck-sim --fault NAME=RATE[,key=value]`), so the two never drift apart.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios.profile import PROFILES_DIR
from simulator.errors import ConfigError
from simulator.faults import FaultSpec, parse_fault_option
from simulator.fleetspec import DriverSpec, GroupSpec

__all__ = ["LoadOptions", "add_arguments", "parse_range", "DEFAULT_CSMS_PROFILE"]

Range = tuple[float, float]

# A CSMS locust is pointed at from outside is most likely `csms serve` with its defaults (`make serve`).
# Its window is long (a quarter of an hour), but the oracle ends early once the CSMS has healed; the
# quick profile's would report a CSMS with these timings as failing for healing at its own pace.
DEFAULT_CSMS_PROFILE = PROFILES_DIR / "unstuck-serve.toml"


def parse_range(text: str, what: str) -> Range:
    """`LO:HI` (or one number) in seconds; ConfigError names the option."""
    parts = str(text).split(":")
    try:
        lo, hi = (float(parts[0]), float(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None or not 0 <= lo <= hi:
        raise ConfigError(f"{what}: {text!r} is not LO:HI seconds with 0 <= LO <= HI")
    return lo, hi


def add_arguments(parser: Any) -> None:
    """Register the options on locust's parser (`@events.init_command_line_parser`)."""
    group = parser  # locust's own add_argument (web UI flags) is on the parser, not on argument groups
    group.add_argument(
        "--ocpp-url",
        default="ws://127.0.0.1:9000/ocpp",
        env_var="UNSTUCK_OCPP_URL",
        help="where charge points connect: {url}/{chargePointId} (default %(default)s)",
    )
    group.add_argument(
        "--api-url",
        default="http://127.0.0.1:8000",
        env_var="UNSTUCK_API_URL",
        help="the CSMS's REST API; ApiUser's host unless --host is given (default %(default)s)",
    )
    group.add_argument(
        "--api-token",
        default="",
        env_var="UNSTUCK_API_TOKEN",
        is_secret=True,
        help="admin bearer token (sessions, occupancy, unlock, and the oracle's questions)",
    )
    group.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=RATE[,key=value]",
        include_in_web_ui=False,
        help="a simulator fault mode, as for unstuck-sim (repeatable), e.g. "
        "drop_stop_transaction=0.05,available=false; `unstuck-sim faults` lists them",
    )
    group.add_argument(
        "--connectors",
        type=int,
        default=2,
        env_var="UNSTUCK_CONNECTORS",
        help="connectors per charge point (default %(default)s)",
    )
    group.add_argument(
        "--csms-profile",
        default=str(DEFAULT_CSMS_PROFILE),
        metavar="FILE",
        env_var="UNSTUCK_CSMS_PROFILE",
        help="what the CSMS promises (timings, claims; scenarios/profile.py): the oracle's recovery window "
        "is its recovery_window, and findings it does not claim are reported as not claimed, not failed "
        "(default: `csms serve` with its default timings, as `make serve` starts it; "
        "`python -m loadtests.run` passes its own CSMS's)",
    )
    group.add_argument(
        "--recovery-window",
        type=float,
        default=None,
        env_var="UNSTUCK_RECOVERY_WINDOW",
        help="s the CSMS gets to heal after the traffic stops, instead of the profile's recovery_window",
    )
    group.add_argument(
        "--oracle-poll",
        type=float,
        default=5.0,
        env_var="UNSTUCK_ORACLE_POLL",
        help="s between the oracle's looks at the CSMS while it waits out the recovery window: once the "
        "answers already pass with the window elapsed so far, it judges then (0: always wait the whole "
        "window; default %(default)s)",
    )
    group.add_argument(
        "--oracle-grace",
        type=float,
        default=1.5,
        env_var="UNSTUCK_ORACLE_GRACE",
        help="s a truth must hold before a verdict is judged against it (default %(default)s, as in the scenarios)",
    )
    group.add_argument(
        "--report-dir",
        default="reports",
        env_var="UNSTUCK_REPORT_DIR",
        help="traces (load_traces/) and oracle_summary.json/.txt go here (default %(default)s)",
    )
    group.add_argument(
        "--cp-prefix",
        default="LT",
        env_var="UNSTUCK_CP_PREFIX",
        help="charge point ids are PREFIX<run>-<process><n> (default %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        env_var="UNSTUCK_SEED",
        help="seed of the cars, tags and fault draws (default %(default)s)",
    )
    group.add_argument(
        "--session-seconds",
        default="10:60",
        env_var="UNSTUCK_SESSION_SECONDS",
        help="a car's stay, plug-in to leaving, LO:HI s (default %(default)s)",
    )
    group.add_argument(
        "--arrival-seconds",
        default="5:30",
        env_var="UNSTUCK_ARRIVAL_SECONDS",
        help="ChargePointUser wait between car arrivals, LO:HI s (default %(default)s)",
    )
    group.add_argument(
        "--ocpp",
        choices=("1.6", "2.0.1"),
        default="1.6",
        env_var="UNSTUCK_OCPP",
        help="the OCPP version of the simulated charge points (default %(default)s)",
    )
    group.add_argument(
        "--meter-interval",
        type=int,
        default=5,
        env_var="UNSTUCK_METER_INTERVAL",
        help="MeterValueSampleInterval s the charge points start with (default %(default)s)",
    )
    group.add_argument(
        "--call-timeout",
        type=float,
        default=30.0,
        env_var="UNSTUCK_CALL_TIMEOUT",
        help="s a charge point waits for a CallResult before the call counts as failed (default %(default)s)",
    )


def _seconds_or_none(value: Any, what: str) -> float | None:
    """An optional number of seconds; empty (the web UI's blank field) is not given."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a number of seconds") from None
    if seconds < 0:
        raise ConfigError(f"{what} must be 0 or more seconds, not {seconds:g}")
    return seconds


@dataclass(frozen=True)
class LoadOptions:
    """Everything the users, the fleet and the oracle shell read, parsed once."""

    ocpp_url: str = "ws://127.0.0.1:9000/ocpp"
    api_url: str = "http://127.0.0.1:8000"
    api_token: str = ""
    faults: tuple[FaultSpec, ...] = ()
    connectors: int = 2
    csms_profile: Path = DEFAULT_CSMS_PROFILE
    recovery_window: float | None = None  # None: the profile's
    oracle_poll: float = 5.0
    grace: float = 1.5
    report_dir: Path = Path("reports")
    cp_prefix: str = "LT"
    seed: int = 0
    session: Range = (10.0, 60.0)
    arrival: Range = (5.0, 30.0)
    meter_interval: int = 5
    call_timeout: float = 30.0
    ocpp: str = "1.6"  # the version the charge points speak
    run: str = "run"  # this run's tag, chosen by the master (or the local runner) at test start
    epoch: float = 0.0  # wall-clock start of the run: every trace's and sample's t counts from here

    @classmethod
    def from_parsed(cls, ns: argparse.Namespace | Any) -> LoadOptions:
        get = vars(ns).get
        faults = get("fault") or []
        if isinstance(faults, str):  # one value from a config file
            faults = [faults]
        opts = cls(
            ocpp_url=str(get("ocpp_url") or cls.ocpp_url).rstrip("/"),
            api_url=str(get("api_url") or cls.api_url).rstrip("/"),
            api_token=str(get("api_token") or ""),
            faults=tuple(parse_fault_option(f) for f in faults if f),
            connectors=int(get("connectors") or cls.connectors),
            csms_profile=Path(get("csms_profile") or cls.csms_profile),
            recovery_window=_seconds_or_none(get("recovery_window"), "--recovery-window"),
            oracle_poll=float(get("oracle_poll") if get("oracle_poll") not in (None, "") else cls.oracle_poll),
            grace=float(get("oracle_grace") if get("oracle_grace") is not None else cls.grace),
            report_dir=Path(get("report_dir") or cls.report_dir),
            cp_prefix=str(get("cp_prefix") or cls.cp_prefix),
            seed=int(get("seed") or 0),
            session=parse_range(get("session_seconds") or "10:60", "--session-seconds"),
            arrival=parse_range(get("arrival_seconds") or "5:30", "--arrival-seconds"),
            meter_interval=int(get("meter_interval") or cls.meter_interval),
            call_timeout=float(get("call_timeout") or cls.call_timeout),
            ocpp=str(get("ocpp") or cls.ocpp),
            run=str(get("unstuck_run") or cls.run),
            epoch=float(get("unstuck_epoch") or 0.0),
        )
        if opts.connectors < 1:
            raise ConfigError(f"--connectors must be at least 1, not {opts.connectors}")
        if opts.oracle_poll < 0:
            raise ConfigError(f"--oracle-poll must be 0 or more seconds, not {opts.oracle_poll:g}")
        return opts

    @property
    def run_prefix(self) -> str:
        """Every charge point id of this run starts with this (the oracle asks the CSMS by it)."""
        return f"{self.cp_prefix}{self.run}-"

    def driver(self) -> DriverSpec:
        """The simulator's session driver, with this run's stay lengths."""
        return DriverSpec(session=self.session, remote_session=self.session)

    def group(self) -> GroupSpec:
        return GroupSpec(prefix=self.run_prefix, connectors=self.connectors, ocpp=self.ocpp)

    def to_mapping(self) -> dict[str, Any]:
        """For the trace header and the summary: what this run was."""
        return {
            "ocppUrl": self.ocpp_url,
            "apiUrl": self.api_url,
            "connectors": self.connectors,
            "faults": [f.to_mapping() for f in self.faults],
            "csmsProfile": str(self.csms_profile),
            "recoveryWindowOption": self.recovery_window,
            "oraclePoll": self.oracle_poll,
            "grace": self.grace,
            "seed": self.seed,
            "session": list(self.session),
            "arrival": list(self.arrival),
            "meterInterval": self.meter_interval,
            "callTimeout": self.call_timeout,
            "ocpp": self.ocpp,
            "run": self.run,
            "epoch": self.epoch,
        }
