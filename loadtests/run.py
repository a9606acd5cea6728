"""`make loadtest`: a fresh CSMS, locust headless against it (one process or distributed), the oracle's verdict.

    python -m loadtests.run                                   # 500 users, 50/s, 60 s; reports/load*
    python -m loadtests.run --users 300 --time 60s --workers 2  # one master, two workers
    python -m loadtests.run --no-faults --csms-arg=--orphan-grace-seconds=0
    python -m loadtests.run -- --loglevel DEBUG               # anything after -- goes to locust

It starts `csms serve` the way the scenarios do (scenarios/embedded.py: a
subprocess on free ports, a fresh SQLite file in a temporary folder unless --db,
`--allow-unknown-chargers`, an admin token, maintenance timings shortened to
seconds; plus lab mode where the CSMS has it: any id tag, no cap on charge points
registered at boot), writes what those timings promise as REPORT/csms_profile.toml
(the oracle's recovery window and claims; `--csms-profile` to judge by another), runs
`locust -f loadtests/locustfile.py --headless` with `--csv REPORT/load --html
REPORT/load.html`, stops the CSMS and exits with locust's exit code: non-zero when a
request failed or the oracle found a violation (each is an "oracle" failure in
locust's reports; REPORT/oracle_summary.txt has the details).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scenarios.embedded import Timings, start_embedded
from scenarios.profile import CLAIMS, CsmsProfile

__all__ = ["main", "LOAD_TIMINGS", "DEFAULT_FAULTS", "profile_for", "profile_toml"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

# The CSMS's thresholds for a load run: short enough that every self-healing path runs
# within the recovery window, long enough not to fire on a busy but healthy charger
# (quiet transactions: twice the meter interval of 5 s; offline after 2.5 heartbeats of 10 s).
LOAD_TIMINGS = Timings(
    heartbeat_interval=10,
    maintenance_interval=2.0,
    status_grace=2.0,
    orphan_grace=2.0,
    quiet_transaction=10.0,
    call_timeout=10.0,
)
RECOVERY_MARGIN = 8.0  # s on top of the slowest healing path: the CSMS is busy, its sweeps run late


def profile_for(timings: Timings, *, margin: float = RECOVERY_MARGIN) -> CsmsProfile:
    """What `csms serve` started with these timings promises: the profile the oracle judges it by."""
    return CsmsProfile(
        name="unstuck (loadtests.run, load timings)",
        offline_after=timings.offline_after,
        orphan_grace=timings.orphan_grace,
        status_grace=timings.status_grace,
        sweep_interval=timings.maintenance_interval,
        recovery_window=timings.recovery_window + margin,
        call_timeout=timings.call_timeout,
        live_evidence=timings.live_evidence,
        reservation_timeout=timings.reservation_timeout_minutes * 60,
        status_freshness=timings.freshness_minutes * 60,
        claims=frozenset(CLAIMS),
    )


def profile_toml(profile: CsmsProfile) -> str:
    """The profile as a file `--csms-profile` reads (scenarios/profile.py's format)."""
    shown = profile.to_json()
    lines = [f"name = {json.dumps(profile.name)}", "", "[timings]  # seconds"]
    lines += [f"{key} = {float(value)!r}" for key, value in shown["timings"].items()]
    lines += ["", "[claims]"]
    lines += [f"{claim} = {'true' if claim in profile.claims else 'false'}" for claim in CLAIMS]
    return "\n".join(lines) + "\n"


# Faults a CSMS must heal by itself (or that change nothing it may report): the default mix.
# silent_connector is left out: with ignore_trigger=true it makes a reboot's lost transaction
# unknowable for any CSMS, which the oracle does not excuse (only drop_stop_transaction is);
# with ignore_trigger=false a triggered Finishing outlives the car (the CSMS never asks again).
DEFAULT_FAULTS = (
    "drop_stop_transaction=0.05,available=true",
    "drop_stop_transaction=0.05,available=false",
    "reject_remote_start=0.05",
    "accept_remote_start_never_start=0.05",
    "disconnect_mid_session=0.02,back_after=5",
    "reboot=0.02,boot_delay=3",
    "unlock_failed=0.1",
    "slow_responses=0.02,min=0.2,max=2",
)


# A load bench's lab mode, where this CSMS has the flags: every id tag accepted (the cars' tags are
# made up), no cap on charge points registered at their first boot (there are hundreds), and the whole
# fleet connecting from one address.
LAB_FLAGS = (
    ("--accept-unknown-id-tags",),
    ("--max-auto-registered", "1000000"),
    ("--max-handshakes-per-address", "200"),
)


def lab_mode_flags() -> list[str]:
    """The LAB_FLAGS that `csms serve --help` lists (a build without them still runs)."""
    done = subprocess.run(
        [sys.executable, "-m", "csms", "serve", "--help"], capture_output=True, text=True, timeout=120
    )
    return [part for flag, *value in LAB_FLAGS if flag in done.stdout for part in (flag, *value)]


def _cpu_and_peak_rss(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, all threads; peak RSS in MB) of a running process, from /proc (None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)
    return cpu, hwm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--users", "-u", type=int, default=int(os.environ.get("USERS", 500)))
    p.add_argument("--rate", "-r", type=float, default=float(os.environ.get("RATE", 50)))
    p.add_argument("--time", "-t", default=os.environ.get("TIME", "60s"), help="locust --run-time (default 60s)")
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKERS", 0)),
        help="0: one locust process; N: one --master and N --worker processes",
    )
    p.add_argument("--report", default=os.environ.get("REPORT", "reports"), help="report folder (default reports)")
    p.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file in a temporary folder)")
    p.add_argument(
        "--fault",
        action="append",
        default=None,
        help="fault mode for the charge points (repeatable; default: a mix the CSMS must heal)",
    )
    p.add_argument("--no-faults", action="store_true", help="no fault modes at all")
    p.add_argument("--csms-arg", action="append", default=[], help="extra `csms serve` argument (repeatable)")
    p.add_argument("--connectors", type=int, default=2)
    p.add_argument(
        "--ocpp", choices=("1.6", "2.0.1"), default="1.6", help="the charge points' OCPP version (default 1.6)"
    )
    p.add_argument(
        "--csms-profile",
        default=None,
        metavar="FILE",
        help="the CSMS profile the oracle judges by (default: REPORT/csms_profile.toml, written from the timings "
        f"this CSMS is started with; its recovery window is their slowest healing path + {RECOVERY_MARGIN:g} s)",
    )
    p.add_argument(
        "--recovery-window",
        type=float,
        default=None,
        help="s the CSMS gets to heal, instead of the profile's recovery window",
    )
    p.add_argument("locust_args", nargs="*", help="after --: more locust arguments")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = Path(args.report).resolve()
    report.mkdir(parents=True, exist_ok=True)
    for stale in [
        *report.glob("load_*.csv"),
        report / "load.html",
        report / "oracle_summary.json",
        report / "oracle_summary.txt",
        report / "csms_profile.toml",
    ]:
        stale.unlink(missing_ok=True)
    if args.csms_profile:
        profile_path = Path(args.csms_profile).resolve()
    else:
        profile_path = report / "csms_profile.toml"
        profile_path.write_text(profile_toml(profile_for(LOAD_TIMINGS)), encoding="utf-8")
    tmp = Path(tempfile.mkdtemp(prefix="unstuck-load-"))
    db_url = args.db or f"sqlite:///{tmp / 'csms.db'}"
    faults = [] if args.no_faults else (args.fault if args.fault is not None else list(DEFAULT_FAULTS))
    print(
        f"[loadtest] starting csms serve ({'fresh SQLite in ' + str(tmp) if not args.db else args.db}); "
        f"its log will be {report / 'csms.log'}",
        flush=True,
    )
    csms = start_embedded(db_url, tmp, timings=LOAD_TIMINGS, extra=[*lab_mode_flags(), *args.csms_arg])
    started = time.monotonic()
    ep = csms.endpoint
    common = [
        "-f",
        str(LOCUSTFILE),
        "--ocpp-url",
        ep.ocpp_url,
        "--api-url",
        ep.api_url,
        "--api-token",
        ep.token,
        "--connectors",
        str(args.connectors),
        "--ocpp",
        args.ocpp,
        "--csms-profile",
        str(profile_path),
        *(["--recovery-window", f"{args.recovery_window:g}"] if args.recovery_window is not None else []),
        "--report-dir",
        str(report),
        *[f"--fault={f}" for f in faults],
    ]
    head = [
        sys.executable,
        "-m",
        "locust",
        *common,
        "--headless",
        "-u",
        str(args.users),
        "-r",
        f"{args.rate:g}",
        "-t",
        args.time,
        "--csv",
        str(report / "load"),
        "--html",
        str(report / "load.html"),
        "--stop-timeout",
        "0",
        *args.locust_args,
    ]
    workers: list[subprocess.Popen] = []
    try:
        if args.workers > 0:
            port = _free_port()
            head += [
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--expect-workers",
                str(args.workers),
                "--expect-workers-max-wait",
                "60",
            ]
            master = subprocess.Popen(head)
            time.sleep(1.0)
            for _ in range(args.workers):
                workers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "locust",
                            *common,
                            "--worker",
                            "--master-host",
                            "127.0.0.1",
                            "--master-port",
                            str(port),
                        ]
                    )
                )
            print(
                f"[loadtest] locust: 1 master + {args.workers} workers, {args.users} users, {args.time}; "
                f"CSMS profile {profile_path}",
                flush=True,
            )
            rc = master.wait()
        else:
            print(
                f"[loadtest] locust: {args.users} users at {args.rate:g}/s for {args.time}; "
                f"CSMS profile {profile_path}",
                flush=True,
            )
            rc = subprocess.call(head)
    except KeyboardInterrupt:
        rc = 130
    finally:
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.send_signal(signal.SIGTERM)
                w.wait()
        usage = _cpu_and_peak_rss(csms.proc.pid)
        wall = time.monotonic() - started
        csms_rc = csms.stop()
        log = tmp / "csms.log"
        if log.exists():
            shutil.copyfile(log, report / "csms.log")
        if not args.db:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"[loadtest] csms serve stopped (exit {csms_rc}); locust exit {rc}", flush=True)
    if usage is not None:
        print(
            f"[loadtest] csms serve used {usage[0]:.1f} s of CPU in {wall:.0f} s ({100 * usage[0] / wall:.0f}% of "
            f"one core, recovery window included), peak RSS {usage[1]:.0f} MB",
            flush=True,
        )
    for name in ("load_stats.csv", "load_failures.csv", "load.html", "oracle_summary.json", "oracle_summary.txt"):
        path = report / name
        print(f"[loadtest]   {path}{'' if path.exists() else '  (missing)'}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
