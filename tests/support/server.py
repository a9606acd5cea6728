"""Start and stop `csms serve` as a subprocess, the way a user runs it."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scenarios.embedded import launch_csms

ADMIN_TOKEN = "admin-token-for-tests"
USER_TOKEN = "user-token-for-tests"
SITE_TARIFF = "0.25"


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
        """A REST client; a new connection per request: a pooled one the server closes after its keep-alive
        timeout (5 s) while a request is on its way is a reset, not a failure of the CSMS (seen on a loaded CI)."""
        return httpx.AsyncClient(
            base_url=self.http,
            headers=self.admin if role == "admin" else self.user,
            timeout=30,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

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


def start_csms(
    db_url: str,
    workdir: Path,
    extra: list[str],
    *,
    timeout: float = 30,
    accept_unknown_id_tags: bool = True,
    command: list[str] | None = None,
) -> CsmsProcess:
    """Most tests assume every id tag is accepted (--accept-unknown-id-tags); id tag tests say False.
    `command` starts something else than `python -m csms` (a mutant: tests.support.mutants.command)."""
    args = [
        "--db",
        db_url,
        "--ocpp-port",
        "0",
        "--http-port",
        "0",
        "--api-token",
        f"admin:tests:{ADMIN_TOKEN}",
        "--api-token",
        f"user:{USER_TOKEN}",
        # The test site's price per kWh, the one user-token starts ask (only admins may ask another).
        "--tariff",
        SITE_TARIFF,
        *(["--accept-unknown-id-tags"] if accept_unknown_id_tags else []),
        *extra,
    ]
    launched = launch_csms(args, workdir, log_path=workdir / "csms.log", command=command, timeout=timeout)
    return CsmsProcess(launched.ocpp, launched.http, db_url, launched.log_path, launched.proc)
