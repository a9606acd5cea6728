"""One csms node against two behind HAProxy, measured with the shared driver.

    .venv/bin/python -m loadtests.cluster_bench [--point mixed:500 ...] [--duration 15] [--rounds 2]

Layouts: `direct` (1 node, the driver straight at it: HAProxy's own cost), `one` (1 node behind
HAProxy), `two` (2 nodes behind HAProxy, round robin, no stickiness). All nodes run `csms serve
--node-id` (cluster mode) on PostgreSQL at 127.0.0.1:5432, lab mode (unknown chargers and id tags
accepted, no per-connection rate limit, WARNING logs), on the database `bench_cluster` dropped
and created before every run. The order alternates (direct one two | two one direct | ...) so the
comparison survives a machine whose neighbours come and go.

The load is /work/shared/bench/driver.py (called, never copied; `BENCH_DIR` to move it). For every
run it records, over the driver's whole run (ramp + window + cleanup), the CPU of each node, of
HAProxy, of the PostgreSQL backends serving `bench_cluster` (from /proc/PID/stat), of the driver,
and of the whole machine (/proc/stat), the rest being the neighbours; and the load average before
and after. Raw rows go to OUT/results.jsonl; a Markdown summary (medians per layout) is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from loadtests.balancer import Balancer, backend_of, start_haproxy
from scenarios.embedded import LaunchedCsms, launch_csms

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "bench_cluster"
BENCH_DIR = Path(os.environ.get("BENCH_DIR", "/work/shared/bench"))
# The same lab flags as loadtests/bench_target.sh: measure the call path, not the abuse limits.
LAB_ARGS = [
    "--allow-unknown-chargers",
    "--max-auto-registered",
    "1000000",
    "--ocpp-messages-per-second",
    "0",
    "--max-connections",
    "100000",
    "--max-handshakes",
    "1000",
    "--max-handshakes-per-address",  # the whole driver connects from 127.0.0.1
    "1000",
    "--max-connectors-per-charger",
    "100",
    "--log-level",
    "WARNING",
]
TICK = os.sysconf("SC_CLK_TCK")
CLASSES = ("Authorize", "StartTransaction", "StopTransaction", "MeterValues", "StatusNotification", "Heartbeat")


@dataclass(frozen=True)
class BenchDatabase:
    """Where the runs' database lives: an admin DSN (psycopg) and the database recreated per run."""

    admin_dsn: str = ADMIN_DSN
    name: str = DB_NAME

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the nodes get."""
        base = self.admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}/{self.name}"


@dataclass(frozen=True)
class Layout:
    label: str
    nodes: int
    balanced: bool


LAYOUTS = {
    "direct": Layout("1 node, direct", 1, False),
    "one": Layout("1 node, HAProxy", 1, True),
    "two": Layout("2 nodes, HAProxy", 2, True),
}


# ------------------------------------------------------------------------- pure core


def run_order(layouts: list[str], rounds: int) -> list[str]:
    """A B C | C B A | A B C ...: every layout sees the early and the late part of the run alike."""
    return [key for r in range(rounds) for key in (layouts if r % 2 == 0 else layouts[::-1])]


def parse_point(text: str) -> tuple[str, int]:
    """`mixed:500` -> ("mixed", 500)."""
    mode, _, cps = text.partition(":")
    if mode not in ("mixed", "heartbeat") or not cps.isdigit():
        raise argparse.ArgumentTypeError(f"want MODE:CONNECTIONS with MODE mixed|heartbeat, got {text!r}")
    return mode, int(cps)


def cpu_split(before: dict[str, float], after: dict[str, float], machine_s: float, wall_s: float) -> dict[str, float]:
    """CPU seconds per process group over the run as % of one core; `others` = machine minus ours."""
    used = {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}
    pct = {k: round(100 * v / wall_s, 1) for k, v in used.items()}
    pct["machine"] = round(100 * machine_s / wall_s, 1)
    pct["others"] = round(max(0.0, pct["machine"] - sum(v for k, v in pct.items() if k != "machine")), 1)
    return pct


def _med(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return round(statistics.median(xs), 3) if xs else None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def summarise(rows: list[dict]) -> str:
    """Markdown tables of medians per (point, layout): throughput/latency, per-class p99, CPU split."""
    out = []
    points = list(dict.fromkeys((r["mode"], r["cps"]) for r in rows))
    for mode, cps in points:
        here = [r for r in rows if (r["mode"], r["cps"]) == (mode, cps) and "calls_per_s" in r]
        keys = list(dict.fromkeys(r["layout"] for r in here))
        classes = [c for c in CLASSES if any(c in r["p99_by_class"] for r in here)]
        out.append(f"\n{mode}, {cps} connections (medians of {len(here) // max(1, len(keys))} runs each)\n")
        out.append(
            "| layout | calls/s | p50 ms | p99 ms | "
            + " | ".join(f"{c} p99" for c in classes)
            + " | errors | load avg (start-end) |"
        )
        out.append("|---" * (6 + len(classes)) + "|")
        for k in keys:
            rs = [r for r in here if r["layout"] == k]
            loads = ", ".join(f"{r['load'][0]:.1f}-{r['load'][1]:.1f}" for r in rs)
            out.append(
                f"| {LAYOUTS[k].label} | {_fmt(_med([r['calls_per_s'] for r in rs]))} | "
                f"{_fmt(_med([r['p50'] for r in rs]))} | {_fmt(_med([r['p99'] for r in rs]))} | "
                + " | ".join(_fmt(_med([r["p99_by_class"].get(c) for r in rs])) for c in classes)
                + f" | {sum(r['errors'] for r in rs)} | {loads} |"
            )
        groups = ["node n1", "node n2", "haproxy", "postgres", "driver", "others", "machine"]
        out.append("\nCPU over the driver's run, % of one core (200 = the whole machine; others = the neighbours)\n")
        out.append("| layout | " + " | ".join(groups) + " | connections n1/n2 |")
        out.append("|---" * (len(groups) + 2) + "|")
        for k in keys:
            rs = [r for r in here if r["layout"] == k]
            split = " | ".join(
                _fmt(_med([r["cpu_pct"].get(g) for r in rs])) if any(g in r["cpu_pct"] for r in rs) else "-"
                for g in groups
            )
            conns = ", ".join("/".join(str(v) for v in r["connections_per_node"].values()) or "-" for r in rs)
            out.append(f"| {LAYOUTS[k].label} | {split} | {conns} |")
        out.append("\nRan and waited for a CPU (run queue, /proc/PID/schedstat), % of wall; CPU ms per call\n")
        out.append(
            "| layout | n1 trio thread ran / waited | n2 trio thread ran / waited | nodes waited (all threads)"
            " | HAProxy waited | PostgreSQL waited | nodes ms/call | all ours ms/call | DB commits/call |"
        )
        out.append("|---" * 9 + "|")
        for k in keys:
            rs = [r for r in here if r["layout"] == k]

            def rw(node: str, rs: list[dict] = rs) -> str:
                ran = _med([r["trio_ran_pct"].get(f"node {node} trio") for r in rs])
                waited = _med([r["waited_pct"].get(f"node {node} trio") for r in rs])
                return "-" if ran is None else f"{_fmt(ran)} / {_fmt(waited)}"

            nodes_w = _med([sum(v for g, v in r["waited_pct"].items() if g in ("node n1", "node n2")) for r in rs])
            out.append(
                f"| {LAYOUTS[k].label} | {rw('n1')} | {rw('n2')} | {_fmt(nodes_w)} | "
                f"{_fmt(_med([r['waited_pct'].get('haproxy') for r in rs]))} | "
                f"{_fmt(_med([r['waited_pct'].get('postgres') for r in rs]))} | "
                f"{_fmt(_med([r['node_ms_per_call'] for r in rs]))} | "
                f"{_fmt(_med([r['ours_ms_per_call'] for r in rs]))} | "
                f"{_fmt(_med([r.get('db_commits_per_call') for r in rs]))} |"
            )
    return "\n".join(out)


# ------------------------------------------------------------------------- shell


def _proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def _sched_s(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(ran, waited on a run queue) in seconds, for one thread or summed over the process's threads.

    Waiting while runnable is what CPU contention looks like: a process that waits as long as it
    runs would have gone twice as fast on a free core.
    """
    tasks = [Path(f"/proc/{pid}/task/{tid}")] if tid else list(Path(f"/proc/{pid}/task").glob("*"))
    ran = waited = 0
    for t in tasks:
        try:
            r, w, _ = (t / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        ran, waited = ran + int(r), waited + int(w)
    return ran / 1e9, waited / 1e9


def _machine_busy_s() -> float:
    """Busy CPU seconds of all cores since boot (user+nice+system+irq+softirq+steal)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(f) - f[3] - f[4]) / TICK


class PostgresBackends:
    """CPU of the backends serving one database, sampled twice a second (pools open and close them)."""

    def __init__(self, db: BenchDatabase) -> None:
        self.db = db
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.first_wait: dict[int, float] = {}
        self.last_wait: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self, conn: psycopg.Connection) -> None:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.db.name,))]
        for pid in pids:
            cpu = _proc_cpu_s(pid)
            if cpu is not None:
                waited = _sched_s(pid, pid)[1]
                self.first.setdefault(pid, cpu if not self._started else 0.0)
                self.first_wait.setdefault(pid, waited if not self._started else 0.0)
                self.last[pid] = cpu
                self.last_wait[pid] = waited

    def _loop(self) -> None:
        with psycopg.connect(self.db.admin_dsn, autocommit=True) as conn:
            while not self._stop.wait(0.5):
                self._sample(conn)
            self._sample(conn)

    def __enter__(self) -> PostgresBackends:
        self._started = False
        with psycopg.connect(self.db.admin_dsn, autocommit=True) as conn:
            self._sample(conn)
        self._started = True  # backends first seen from now on were born during the run
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def cpu_s(self) -> float:
        return sum(self.last[p] - self.first.get(p, 0.0) for p in self.last)

    def waited_s(self) -> float:
        return sum(self.last_wait[p] - self.first_wait.get(p, 0.0) for p in self.last_wait)


def drop_database(db: BenchDatabase) -> None:
    with psycopg.connect(db.admin_dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


def _fresh_database(db: BenchDatabase) -> None:
    drop_database(db)
    with psycopg.connect(db.admin_dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db.name}"')


def _transactions(db: BenchDatabase) -> int:
    """Transactions committed in the benchmark database so far: how well each node batches its writes."""
    with psycopg.connect(db.admin_dsn, autocommit=True) as c:
        row = c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db.name,)).fetchone()
    return int(row[0]) if row else 0


def _driver_cmd(url: str, mode: str, cps: int, duration: float) -> list[str]:
    return [
        sys.executable,
        str(BENCH_DIR / "driver.py"),
        "--url",
        url + "/{id}",
        "--cps",
        str(cps),
        "--duration",
        str(duration),
        "--mode",
        mode,
        "--json",
    ]


def run_once(key: str, mode: str, cps: int, duration: float, work: Path, db: BenchDatabase = BenchDatabase()) -> dict:
    """Fresh database, the layout's processes, one driver run through it; everything stopped after."""
    layout = LAYOUTS[key]
    load0 = os.getloadavg()[0]
    _fresh_database(db)
    nodes: list[LaunchedCsms] = []
    balancer: Balancer | None = None
    try:
        for i in range(layout.nodes):
            folder = work / f"{key}-{time.monotonic_ns()}-n{i + 1}"
            folder.mkdir()
            args = [
                "--db",
                db.url,
                "--ocpp-port",
                "0",
                "--http-port",
                "0",
                "--accept-unknown-id-tags",
                *LAB_ARGS,
                "--node-id",
                f"n{i + 1}",
            ]
            nodes.append(launch_csms(args, folder, log_path=folder / "csms.log", timeout=120))
        url = nodes[0].ocpp
        if layout.balanced:
            balancer = start_haproxy(work, [backend_of(f"n{i + 1}", n.ocpp, n.http) for i, n in enumerate(nodes)])
            balancer.wait_up()
            url = balancer.ocpp
        pids = {f"node n{i + 1}": n.proc.pid for i, n in enumerate(nodes)}
        if balancer:
            pids["haproxy"] = balancer.proc.pid
        cmd = _driver_cmd(url, mode, cps, duration)
        xacts0 = _transactions(db)
        with PostgresBackends(db) as pg:
            before = {k: _proc_cpu_s(p) or 0.0 for k, p in pids.items()}
            sched0 = {
                **{k: _sched_s(p) for k, p in pids.items()},
                **{f"{k} trio": _sched_s(p, p) for k, p in pids.items() if k.startswith("node")},
            }
            ru0, m0, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), _machine_busy_s(), time.monotonic()
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + cps / 50 + 240)
            ru1, m1, w1 = resource.getrusage(resource.RUSAGE_CHILDREN), _machine_busy_s(), time.monotonic()
            after = {k: _proc_cpu_s(p) or 0.0 for k, p in pids.items()}
            sched1 = {
                **{k: _sched_s(p) for k, p in pids.items()},
                **{f"{k} trio": _sched_s(p, p) for k, p in pids.items() if k.startswith("node")},
            }
        # the driver (reaped by now) is measured by getrusage; its wait for a CPU is not recorded
        before["postgres"], after["postgres"] = 0.0, pg.cpu_s()
        before["driver"], after["driver"] = 0.0, (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        wall = w1 - w0
        waited = {k: round(100 * (sched1[k][1] - sched0[k][1]) / wall, 1) for k in sched1}
        waited["postgres"] = round(100 * pg.waited_s() / wall, 1)
        ran_trio = {k: round(100 * (sched1[k][0] - sched0[k][0]) / wall, 1) for k in sched1 if k.endswith("trio")}
        per_node = {k: int(v["stot"]) for k, v in balancer.servers().items()} if balancer else {"n1": cps}
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"driver failed (rc {out.returncode}): {out.stderr[-2000:]}")
        res = json.loads(lines[-1])
        calls = res.get("calls_completed", 0) + res.get("ramp", {}).get("setup_calls", 0) + res.get("cleanup_calls", 0)
        node_s = sum(after[k] - before[k] for k in pids if k.startswith("node"))
        row = {
            "layout": key,
            "mode": mode,
            "cps": cps,
            "duration": duration,
            "driver_cmd": cmd,
            "calls_per_s": res["calls_per_s"],
            "p50": res["lat_ms"]["p50"],
            "p99": res["lat_ms"]["p99"],
            "p99_by_class": {a: v["p99"] for a, v in res.get("lat_by_action_ms", {}).items()},
            "errors": res.get("errors_total", 0),
            "errors_by_kind": res.get("errors", {}),
            "connections": res.get("connections"),
            "connections_per_node": per_node,
            "cpu_pct": cpu_split(before, after, m1 - m0, wall),
            "run_wall_s": round(wall, 1),
            "waited_pct": waited,
            "trio_ran_pct": ran_trio,
            "calls_total": calls,
            "node_ms_per_call": round(1000 * node_s / calls, 3) if calls else None,
            "ours_ms_per_call": round(1000 * sum(after[k] - before[k] for k in after) / calls, 3) if calls else None,
            "load": [load0, os.getloadavg()[0]],
            "utc": time.strftime("%H:%M:%S", time.gmtime()),
        }
    finally:
        if balancer:
            balancer.stop()
        for n in reversed(nodes):
            n.stop()
    time.sleep(1.0)  # backends report their counts to pg_stat_database within a second
    row["db_commits_per_call"] = round((_transactions(db) - xacts0) / calls, 3) if calls else None
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--point", type=parse_point, action="append", help="MODE:CONNECTIONS, repeatable (default mixed:500)"
    )
    ap.add_argument("--duration", type=float, default=15.0, help="measured window per run, s")
    ap.add_argument("--rounds", type=int, default=2, help="alternations (2 = direct one two two one direct)")
    ap.add_argument("--layouts", default="direct,one,two", help="comma-separated subset of direct,one,two")
    ap.add_argument("--out", type=Path, help="folder for results.jsonl and the node/HAProxy logs")
    args = ap.parse_args()
    points = args.point or [("mixed", 500)]
    layouts = args.layouts.split(",")
    if shutil.which("haproxy") is None:
        sys.exit("cluster_bench needs haproxy (apt-get install haproxy)")
    if not (BENCH_DIR / "driver.py").exists():
        sys.exit(f"the shared driver is not at {BENCH_DIR / 'driver.py'} (set BENCH_DIR)")
    if unknown := set(layouts) - set(LAYOUTS):
        sys.exit(f"unknown layouts {unknown}: choose from {', '.join(LAYOUTS)}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # nodes and HAProxy inherit it
    out = args.out or Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"# cluster_bench points={points} duration={args.duration}s rounds={args.rounds} out={out}", flush=True)
    for mode, cps in points:
        for key in run_order(layouts, args.rounds):
            row = run_once(key, mode, cps, args.duration, out)
            rows.append(row)
            with open(out / "results.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            c = row["cpu_pct"]
            print(
                f"{row['utc']} {mode}:{cps} {LAYOUTS[key].label:17s} {row['calls_per_s']:>8.1f} calls/s "
                f"p50 {row['p50']} p99 {row['p99']} ms errors {row['errors']} load {row['load'][0]:.1f}-"
                f"{row['load'][1]:.1f} cpu% "
                + " ".join(f"{k}={v}" for k, v in c.items())
                + f" conns {row['connections_per_node']}",
                flush=True,
            )
    drop_database(BenchDatabase())  # recreated by the next run anyway
    print(summarise(rows))


if __name__ == "__main__":
    main()
