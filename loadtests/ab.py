"""`python -m loadtests.ab A_DIR B_DIR [--rounds N] -- BENCH_ARGS...`: before/after in one alternated run.

Runs `python -m loadtests.bench --json BENCH_ARGS` against a fresh `csms serve` of two source trees
(A_DIR and B_DIR, each a checkout or `git archive` of the repository; the server is imported from
there through PYTHONPATH), in the order A B B A A B ... so that drift on a shared machine falls on
both alike, and prints the medians: calls/s, p99, per-action p99, server CPU ms per call (main
thread and others) and the load average at each run. Compare the two columns, never figures of
different runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _run(tree: Path, bench_args: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--json", "--quiet", *bench_args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"fatal": (out.stderr or out.stdout)[-800:], "load": load}
    res = json.loads(lines[-1])
    res["load"] = load
    return res


def _med(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 4) if xs else None


def _row(rs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rs if "fatal" not in r]
    srv = [r.get("server") or {} for r in ok]
    row: dict[str, Any] = {
        "runs": len(ok),
        "failed": len(rs) - len(ok),
        "calls/s": _med([r["calls_per_s"] for r in ok]),
        "p50 ms": _med([r["lat_ms"]["p50"] for r in ok]),
        "p99 ms": _med([r["lat_ms"]["p99"] for r in ok]),
        "errors": sum(r["errors_total"] for r in ok),
        "srv ms/call": _med([s.get("ms_per_call") for s in srv]),
        "main ms/call": _med(
            [
                s["window_cpu_s"]
                and 1000 * s["window_cpu_s"] * s["main_thread_pct"] / s["cpu_pct"] / r["calls_ok_in_window"]
                if s.get("cpu_pct") and r["calls_ok_in_window"]
                else None
                for s, r in zip(srv, ok, strict=True)
            ]
        ),
        "srv CPU%": _med([s.get("cpu_pct") for s in srv]),
        "ramp ms/conn": _med([s.get("ramp_cpu_ms_per_connection") for s in srv]),
        "opened": _med([r["connections"]["opened"] for r in ok]),
        "VmHWM MB": _med([s.get("vmhwm_mb") for s in srv]),
        "load avg": _med([r["load"] for r in rs]),
    }
    if ok and "paced" in ok[0]:
        row["achieved"] = _med([r["paced"]["achieved_ratio"] for r in ok])
    if ok and "occupancy_probe_ms" in ok[0]:
        row["occupancy p99"] = _med([r["occupancy_probe_ms"]["p99"] for r in ok])
    actions = sorted({a for r in ok for a in r["lat_by_action_ms"]})
    for a in actions:
        row[f"{a} p99"] = _med([r["lat_by_action_ms"].get(a, {}).get("p99") for r in ok])
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m loadtests.ab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("a", type=Path, help="source tree A (before)")
    ap.add_argument("b", type=Path, help="source tree B (after)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each, alternated A B B A ...; default 2")
    ap.add_argument("--timeout", type=float, default=900.0, help="per run, s")
    ap.add_argument("--jsonl", type=Path, help="append every run's result here")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, bench_args = ap.parse_args(argv[:cut]), argv[cut + 1 :]
    results: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    order = []
    for i in range(args.rounds):
        order += ["A", "B"] if i % 2 == 0 else ["B", "A"]
    for n, which in enumerate(order, 1):
        tree = (args.a if which == "A" else args.b).resolve()
        res = _run(tree, bench_args, args.timeout)
        res["variant"], res["tree"] = which, str(tree)
        results[which].append(res)
        if args.jsonl:
            with args.jsonl.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(res) + "\n")
        brief = (
            "FAILED " + res["fatal"][-200:]
            if "fatal" in res
            else (
                f"{res['calls_per_s']} calls/s p99={res['lat_ms']['p99']} ms/call={(res.get('server') or {}).get('ms_per_call')}"  # noqa: E501
            )
        )
        print(f"[{n}/{len(order)}] {which} load={res['load']:.2f}: {brief}", file=sys.stderr, flush=True)
    rows = {k: _row(v) for k, v in results.items()}
    keys = list(dict.fromkeys([*rows["A"], *rows["B"]]))
    print(f"{'':24s} {'A ' + args.a.name:>16s} {'B ' + args.b.name:>16s} {'B/A':>7s}")
    for k in keys:
        a, b = rows["A"].get(k), rows["B"].get(k)
        ratio = f"{b / a:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and a else ""
        print(f"{k:24s} {str(a):>16s} {str(b):>16s} {ratio:>7s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
