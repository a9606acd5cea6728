"""One csms node against two, behind HAProxy, measured by the shared driver (`loadtests.bench`).

    .venv/bin/python -m loadtests.cluster_bench [--cps 200] [--duration 15] [--mode mixed] [--rate 0]

For each layout (1 node direct, 1 node behind HAProxy, 2 nodes behind HAProxy) on a fresh
PostgreSQL database: start `csms serve --node-id` processes (lab mode, no rate limit, WARNING
logs), a generated HAProxy config (`balance leastconn`, `timeout tunnel`, /health checks), then
`python -m loadtests.bench --url` through it, and print calls/s and latency percentiles, with the
CPU seconds each csms process used during the run (from /proc). Needs haproxy and PostgreSQL
(127.0.0.1:5432, trust auth) on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

BASE = "postgresql://postgres@127.0.0.1:5432"
HAPROXY_CFG = """\
global
    maxconn 9000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    option redispatch
    retries 3
frontend ocpp
    bind 127.0.0.1:{port}
    default_backend csms_nodes
backend csms_nodes
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{servers}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_node(name: str, db: str, work: Path) -> tuple[subprocess.Popen, dict]:
    ports = work / f"{name}.json"
    ports.unlink(missing_ok=True)  # the previous layout's
    log = open(work / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([
        sys.executable, "-m", "csms", "serve", "--db", db, "--node-id", name, "--ocpp-port", "0", "--http-port", "0",
        "--ports-file", str(ports), "--allow-unknown-chargers", "--max-auto-registered", "1000000",
        "--accept-unknown-id-tags", "--ocpp-messages-per-second", "0", "--max-connections", "100000",
        "--max-handshakes", "1000", "--log-level", "WARNING", "--api-token", "admin:bench:bench-admin-token"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not ports.exists() or not ports.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"csms serve {name} did not start: see {work / (name + '.log')}")
        time.sleep(0.1)
    return proc, json.loads(ports.read_text())


def _haproxy(nodes: list[dict], work: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    servers = []
    for i, addr in enumerate(nodes):
        ocpp_port = int(addr["ocpp"].rsplit(":", 1)[1].split("/")[0])
        http_port = int(addr["http"].rsplit(":", 1)[1])
        servers.append(f"    server n{i + 1} 127.0.0.1:{ocpp_port} check port {http_port}")
    cfg = work / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, servers="\n".join(servers)), encoding="utf-8")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=open(work / "haproxy.log", "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)
    time.sleep(3)  # two health checks per server
    return proc, port


def _health(addr: dict) -> None:
    with urllib.request.urlopen(addr["http"] + "/health", timeout=5) as res:
        assert res.status == 200


def run_layout(label: str, n_nodes: int, balanced: bool, args: argparse.Namespace, work: Path) -> dict:
    name = "clbench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(f"{BASE}/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    procs: list[subprocess.Popen] = []
    try:
        nodes = []
        for i in range(n_nodes):
            proc, addr = _start_node(f"n{i + 1}", db, work)
            procs.append(proc)
            nodes.append(addr)
            _health(addr)
        url = nodes[0]["ocpp"]
        if balanced:
            hp, port = _haproxy(nodes, work)
            procs.append(hp)
            url = f"ws://127.0.0.1:{port}/ocpp"
        cpu_before = [_cpu_seconds(p.pid) for p in procs[:n_nodes]]
        cmd = [sys.executable, "-m", "loadtests.bench", "--url", url, "--cps", str(args.cps), "--duration",
               str(args.duration), "--mode", args.mode, "--json", "--quiet"]
        if args.rate:
            cmd += ["--rate", str(args.rate)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 300)
        cpu = [round(_cpu_seconds(p.pid) - b, 1) for p, b in zip(procs[:n_nodes], cpu_before, strict=True)]
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"bench failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        res = json.loads(lines[-1])
        if not res["calls_per_s"]:
            print(out.stdout[-1500:], out.stderr[-1500:], (work / "haproxy.log").read_text()[-1500:], file=sys.stderr)
        return {"layout": label, "calls_per_s": res["calls_per_s"], "lat_ms": res["lat_ms"],
                "errors": res.get("errors_total"), "node_cpu_s": cpu}
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        with psycopg.connect(f"{BASE}/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cps", type=int, default=200)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--mode", default="mixed")
    ap.add_argument("--rate", type=float, default=0.0, help="paced calls/s in total (0: closed loop)")
    args = ap.parse_args()
    if shutil.which("haproxy") is None:
        sys.exit("cluster_bench needs haproxy (apt-get install haproxy)")
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        for label, n, balanced in (("1 node, direct", 1, False), ("1 node, HAProxy", 1, True),
                                   ("2 nodes, HAProxy", 2, True)):
            r = run_layout(label, n, balanced, args, Path(tmp))
            lat = r["lat_ms"]
            print(f"{label:18s} {r['calls_per_s']:>8.1f} calls/s  p50 {lat['p50']} ms  p99 {lat['p99']} ms  "
                  f"errors {r['errors']}  csms CPU s per node {r['node_cpu_s']}", flush=True)


if __name__ == "__main__":
    main()
