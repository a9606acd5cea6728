"""HAProxy in front of `csms serve --node-id` processes, for benchmarks and tests.

The config is a pure function of the ports, so a test can read it without starting anything;
`start_haproxy` writes it and runs Debian's `haproxy -db` (foreground) as a child process.
The cluster test (tests/e2e/test_cluster.py) and the benchmark both use it: round robin, no stickiness, a
WebSocket is a tunnel (`timeout tunnel`), /health checks on each node's HTTP port, and a
connect refused by a dead node is redispatched.
"""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["Backend", "Balancer", "BalancerError", "backend_of", "haproxy_config", "start_haproxy"]


class BalancerError(RuntimeError):
    """HAProxy did not start or its servers never came up; the message says where to look."""


@dataclass(frozen=True)
class Backend:
    """One csms node as HAProxy sees it: WebSocket port for traffic, HTTP port for /health."""

    name: str
    host: str
    ocpp_port: int
    http_port: int


def backend_of(name: str, ocpp_url: str, http_url: str) -> Backend:
    """A node's `--ports-file` addresses (ws://h:p/ocpp, http://h:p) as a Backend."""
    o, h = urlparse(ocpp_url), urlparse(http_url)
    if o.hostname is None or o.port is None or h.port is None:
        raise ValueError(f"not host:port addresses: {ocpp_url} {http_url}")
    return Backend(name, o.hostname, o.port, h.port)


def haproxy_config(
    port: int, stats_port: int, backends: list[Backend], *, balance: str = "roundrobin", maxconn: int = 4000
) -> str:
    """HAProxy's config text. maxconn bounds the file descriptors it asks for (2 per connection)."""
    servers = "\n".join(f"    server {b.name} {b.host}:{b.ocpp_port} check port {b.http_port}" for b in backends)
    return f"""\
global
    maxconn {maxconn}

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # An upgraded WebSocket is a tunnel: idle only between heartbeats.
    timeout tunnel 1h
    # A connect refused by a dead node is retried on another one.
    option redispatch
    retries 3

frontend ocpp
    bind 127.0.0.1:{port}
    default_backend csms_nodes

backend csms_nodes
    balance {balance}
    option httpchk GET /health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


@dataclass
class Balancer:
    ocpp: str  # ws://127.0.0.1:PORT/ocpp: append /<charge point id>
    stats: str
    proc: subprocess.Popen

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers from HAProxy's stats CSV (status, stot = connections sent, ...)."""
        with urllib.request.urlopen(f"{self.stats};csv", timeout=5) as res:
            text = res.read().decode().lstrip("# ")
        return {
            row["svname"]: row
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == "csms_nodes" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def wait_up(self, timeout: float = 15) -> None:
        """Until every server passed its health checks, so no connection is refused at the start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BalancerError(f"haproxy exited with {self.proc.returncode}")
            try:
                rows = self.servers()
                if rows and all(r["status"].startswith("UP") for r in rows.values()):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BalancerError("haproxy's servers did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_haproxy(workdir: Path, backends: list[Backend], *, balance: str = "roundrobin") -> Balancer:
    """Write haproxy.cfg in workdir and start HAProxy in the foreground; its log is workdir/haproxy.log."""
    port, stats = _free_port(), _free_port()
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(haproxy_config(port, stats, backends, balance=balance), encoding="utf-8")
    log = open(workdir / "haproxy.log", "w", encoding="utf-8")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    return Balancer(f"ws://127.0.0.1:{port}/ocpp", f"http://127.0.0.1:{stats}/stats", proc)
