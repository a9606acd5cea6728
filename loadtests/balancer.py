"""HAProxy in front of `csms serve --node-id` processes, for benchmarks and tests.

The config is a pure function of the ports, so a test can read it without starting anything;
`start_haproxy` writes it and runs Debian's `haproxy -db` (foreground) as a child process.
The cluster tests (tests/e2e/test_cluster*.py) and the benchmark use it: round robin, no stickiness, a
WebSocket is a tunnel (`timeout tunnel`), /health/live checks on each node's HTTP port, a node marked
down loses its sessions, a connect refused by a dead node is redispatched; REST on a port of its own,
each request stamped with the time HAProxy received it (X-Request-Start).
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
    """One csms node as HAProxy sees it: WebSocket port for traffic, HTTP port for /health/live."""

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
    port: int,
    stats_port: int,
    backends: list[Backend],
    *,
    rest_port: int | None = None,
    balance: str = "roundrobin",
    maxconn: int = 4000,
) -> str:
    """HAProxy's config text: OCPP on `port`, REST on `rest_port` (none without). maxconn bounds the file
    descriptors it asks for (2 per connection)."""
    # A node marked down (dead, or frozen past two checks) loses its sessions at once: chargers reconnect to
    # another node and a REST caller learns now, not when the node wakes. An X-CSMS-Node header pins a
    # request to one node while it is up (to ask a node what it sees).
    # A check waits a second (`timeout check`) and three must fail: a node whose loop stalls a moment under a
    # reconnect wave is not cut, one frozen for ~3 s is.
    checks = """    option httpchk GET /health/live
    http-check expect status 200
    timeout check 1s
    default-server inter 500ms fall 3 rise 2 on-marked-down shutdown-sessions"""
    pins = "\n".join(f"    use-server {b.name} if {{ req.hdr(x-csms-node) -m str {b.name} }}" for b in backends)
    servers = "\n".join(f"    server {b.name} {b.host}:{b.ocpp_port} check port {b.http_port}" for b in backends)
    rest = ""
    if rest_port is not None:
        rest_servers = "\n".join(f"    server {b.name} {b.host}:{b.http_port} check" for b in backends)
        rest = f"""
frontend rest
    bind 127.0.0.1:{rest_port}
    # When this balancer received the request: a node that was frozen meanwhile refuses a command older
    # than its --request-budget-seconds instead of running it on waking (csms.api.deadline).
    http-request set-header X-Request-Start t=%[date(0,us)]
    default_backend csms_rest

backend csms_rest
    balance roundrobin
    # A command waits at most the node's --call-timeout-seconds (30) and a forwarding trip.
    timeout server 35s
{checks}
{pins}
{rest_servers}
"""
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
    # Liveness, not readiness: a node whose database is down still takes chargers (csms /health/live).
{checks}
{pins}
{servers}
{rest}
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
    http: str = ""  # http://127.0.0.1:PORT: the nodes' REST API, each request stamped with X-Request-Start

    def servers(self, backend: str = "csms_nodes") -> dict[str, dict[str, str]]:
        """A backend's servers from HAProxy's stats CSV (status, stot = connections sent, ...); csms_rest for REST."""
        with urllib.request.urlopen(f"{self.stats};csv", timeout=5) as res:
            text = res.read().decode().lstrip("# ")
        return {
            row["svname"]: row
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == backend and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def wait_up(self, timeout: float = 15) -> None:
        """Until every server passed its health checks, so no connection is refused at the start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BalancerError(f"haproxy exited with {self.proc.returncode}")
            try:
                rows = [*self.servers().values(), *(self.servers("csms_rest").values() if self.http else ())]
                if rows and all(r["status"].startswith("UP") for r in rows):
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
    port, stats, rest = _free_port(), _free_port(), _free_port()
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(haproxy_config(port, stats, backends, rest_port=rest, balance=balance), encoding="utf-8")
    log = open(workdir / "haproxy.log", "w", encoding="utf-8")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    return Balancer(f"ws://127.0.0.1:{port}/ocpp", f"http://127.0.0.1:{stats}/stats", proc, f"http://127.0.0.1:{rest}")
