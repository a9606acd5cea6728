"""Start and stop `csms serve` as a subprocess, the way a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ADMIN_TOKEN = "admin-token-for-tests"
USER_TOKEN = "user-token-for-tests"


@dataclass
class CsmsProcess:
    ocpp: str
    http: str
    db_url: str
    log_path: Path
    proc: subprocess.Popen
    admin: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    user: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {USER_TOKEN}"})

    def url(self, cp_id: str) -> str:
        return f"{self.ocpp}/{cp_id}"

    def client(self, role: str = "admin") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http, headers=self.admin if role == "admin" else self.user, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_csms(db_url: str, workdir: Path, extra: list[str], *, timeout: float = 30,
               accept_unknown_id_tags: bool = True, command: list[str] | None = None) -> CsmsProcess:
    """Most tests assume every id tag is accepted (--accept-unknown-id-tags); id tag tests say False.
    `command` starts something else than `python -m csms` (a mutant: tests.support.mutants.command)."""
    ports = workdir / f"ports-{time.monotonic_ns()}.json"
    log_path = workdir / "csms.log"
    cmd = [
        *(command or [sys.executable, "-m", "csms"]), "serve", "--db", db_url, "--ocpp-port", "0", "--http-port", "0",
        "--ports-file", str(ports), "--api-token", f"admin:tests:{ADMIN_TOKEN}",
        "--api-token", f"user:{USER_TOKEN}", *(["--accept-unknown-id-tags"] if accept_unknown_id_tags else []),
        *extra,
    ]
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout
    while not ports.exists() or not ports.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"csms serve did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    addr = json.loads(ports.read_text())
    return CsmsProcess(addr["ocpp"], addr["http"], db_url, log_path, proc)
