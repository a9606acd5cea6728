"""The CSMS a run starts for itself: `csms serve` as a subprocess, on free ports, with quick timings.

Only the command line is shared with the product: the harness starts it the way
a user would and talks to it over OCPP and REST, never importing it. The
timings are shortened so that every recovery path (maintenance sweeps, status
triggers, offline detection) runs within seconds; `Timings.recovery_window` is
what scenarios give the CSMS to heal.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Timings", "EmbeddedCsms", "start_embedded", "CsmsEndpoint", "LaunchedCsms", "launch_csms", "lab_args"]


@dataclass(frozen=True)
class Timings:
    """The embedded CSMS's thresholds (s); a CSMS given from outside is assumed to use these too."""

    heartbeat_interval: int = 2
    heartbeat_timeout_factor: float = 2.5
    maintenance_interval: float = 1.0
    status_grace: float = 2.0
    orphan_grace: float = 2.0
    quiet_transaction: float = 4.0
    call_timeout: float = 3.0
    start_timeout: float = 10.0  # an accepted remote start with no StartTransaction ends after this
    reservation_timeout_minutes: float = 0.25
    freshness_minutes: float = 0.2
    live_evidence: float = 1.5  # an unlock leaves open a transaction sampled this recently (meter samples every 1 s)

    @property
    def offline_after(self) -> float:
        return self.heartbeat_interval * self.heartbeat_timeout_factor

    @property
    def recovery_window(self) -> float:
        """Time for the slowest self-healing path: a quiet transaction probed, then swept as orphaned."""
        return self.quiet_transaction + self.orphan_grace + 3 * self.maintenance_interval + 2.0

    def serve_args(self) -> list[str]:
        return [
            "--heartbeat-interval",
            str(self.heartbeat_interval),
            "--heartbeat-timeout-factor",
            str(self.heartbeat_timeout_factor),
            "--maintenance-interval-seconds",
            str(self.maintenance_interval),
            "--status-grace-seconds",
            str(self.status_grace),
            "--orphan-grace-seconds",
            str(self.orphan_grace),
            "--quiet-transaction-seconds",
            str(self.quiet_transaction),
            "--call-timeout-seconds",
            str(self.call_timeout),
            "--start-timeout-seconds",
            str(self.start_timeout),
            "--reservation-timeout-minutes",
            str(self.reservation_timeout_minutes),
            "--freshness-minutes",
            str(self.freshness_minutes),
            "--live-evidence-seconds",
            str(self.live_evidence),
        ]


@dataclass(frozen=True)
class CsmsEndpoint:
    """Where a CSMS is and how to ask it."""

    ocpp_url: str
    api_url: str
    token: str
    timings: Timings = field(default_factory=Timings)
    log_path: Path | None = None
    embedded: bool = False


@dataclass
class EmbeddedCsms:
    endpoint: CsmsEndpoint
    proc: subprocess.Popen
    args: list[str]

    def log_tail(self, lines: int = 40) -> str:
        path = self.endpoint.log_path
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# Parallel workers on one PostgreSQL database race to create the CSMS's tables at start-up; the
# loser exits with one of these, and a second start finds the tables there.
_SCHEMA_RACE = ("already exists", "UniqueViolation", "DuplicateTable")


def start_embedded(
    db_url: str,
    workdir: Path,
    *,
    timings: Timings = Timings(),
    extra: Sequence[str] = (),
    timeout: float = 60.0,
    name: str = "csms",
    attempts: int = 3,
    command: Sequence[str] | None = None,
) -> EmbeddedCsms:
    """Start `csms serve` on free ports; returns once it listens (or raises RuntimeError with its log).

    Its log goes to `workdir/{name}.log` (one per parallel worker). `command` starts the CSMS
    instead of `python -m csms` (given `serve ...` after it).
    """
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(
                db_url, workdir, timings=timings, extra=extra, timeout=timeout, name=name, command=command
            )
        except RuntimeError as exc:
            if attempt == attempts or not any(mark in str(exc) for mark in _SCHEMA_RACE):
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _start_once(
    db_url: str,
    workdir: Path,
    *,
    timings: Timings,
    extra: Sequence[str],
    timeout: float,
    name: str,
    command: Sequence[str] | None,
) -> EmbeddedCsms:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log_path.unlink(missing_ok=True)
    token = "scenarios-" + secrets.token_hex(12)
    # The token goes in a file (0600), not on the command line, where /proc/PID/cmdline shows it.
    tokens = workdir / f"csms-tokens-{os.getpid()}-{time.monotonic_ns()}"
    tokens.touch(mode=0o600)
    tokens.write_text(f"admin:scenarios:{token}\n", encoding="utf-8")
    args = [
        *lab_args(db_url),
        "--api-tokens-file",
        str(tokens),
        *timings.serve_args(),
        *extra,
    ]
    try:
        launched = launch_csms(args, workdir, log_path=log_path, command=command, timeout=timeout)
    finally:
        tokens.unlink(missing_ok=True)  # read at start-up; no secret left in the report folder
    endpoint = CsmsEndpoint(launched.ocpp, launched.http, token, timings, log_path, embedded=True)
    return EmbeddedCsms(endpoint, launched.proc, ["serve", *args])


def lab_args(db_url: str) -> list[str]:
    """`csms serve` as a test bench: free ports and lab mode (any charge point id, no passwords), every id
    tag accepted (fleets make up their ids and tags), no bound on lab registrations (fleets are big) and
    the whole fleet connecting from this host's one address."""
    return [
        "--db",
        db_url,
        "--ocpp-port",
        "0",
        "--http-port",
        "0",
        "--allow-unknown-chargers",
        "--max-auto-registered",
        "1000000",
        "--accept-unknown-id-tags",
        "--max-handshakes-per-address",
        "200",
    ]


@dataclass
class LaunchedCsms:
    """A `csms serve` process that is listening, and where."""

    proc: subprocess.Popen
    ocpp: str
    http: str
    log_path: Path

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM (the CSMS flushes and closes), SIGKILL after `timeout`; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def launch_csms(
    serve_args: Sequence[str],
    workdir: Path,
    *,
    log_path: Path,
    command: Sequence[str] | None = None,
    timeout: float = 60.0,
    new_session: bool = False,
    cwd: Path | None = None,
) -> LaunchedCsms:
    """The one way tests, scenarios and load tests start `csms serve`: `command` (default `python -m csms`)
    with `serve`, `serve_args` and a ports file; returns once it listens, else RuntimeError with its log."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = workdir / f"csms-ports-{os.getpid()}-{time.monotonic_ns()}.json"
    argv = [*(command or (sys.executable, "-m", "csms")), "serve", *serve_args, "--ports-file", str(ports)]
    with open(log_path, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=new_session,
            cwd=cwd,
        )
    deadline = time.monotonic() + timeout
    while (addr := _addresses(ports)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"csms serve did not start ({' '.join(argv)}):\n{tail}")
        time.sleep(0.05)
    ports.unlink(missing_ok=True)
    return LaunchedCsms(proc, addr["ocpp"], addr["http"], log_path)


def _addresses(ports: Path) -> dict[str, str] | None:
    """The bound addresses once the ports file is written whole."""
    try:
        return json.loads(ports.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None
