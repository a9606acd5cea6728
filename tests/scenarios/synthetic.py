"""Synthetic summary.json data for the report tests: believable fleets, no CSMS needed.

`summary(...)` returns the shape `scenarios/report/summary.py` writes: a passed
scenario, a failed one whose CSMS keeps connectors busy after their cars left
(falsely busy, with violations and evidence), and, on request, a big chaos-like
run. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from typing import Any

FAULTS = ("drop_stop_transaction", "silent_connector", "power_loss", "stuck_status", "disconnect")
HOSTILE_CP = "<script>alert('cp')</script>&\"x"


def connector_row(
    rng: random.Random,
    cp: str,
    connector: int,
    end: float,
    *,
    stuck_from: float | None = None,
    offline: list[list[float]] | None = None,
    faults: list[list[Any]] | None = None,
    samples: int = 200,
) -> dict[str, Any]:
    """Truth cycles (unplugged -> plugged -> charging [-> suspended] -> finishing -> unplugged) and
    a CSMS verdict sampled `samples` times that follows the truth one sample late; from `stuck_from`
    on it stays busy (a stuck session), and while the charger is offline it says offline."""
    truth: list[list[Any]] = []
    t = 0.0
    while t < end:
        for state, share in (
            ("unplugged", (0.04, 0.18)),
            ("plugged", (0.002, 0.01)),
            ("charging", (0.08, 0.25)),
            ("suspended", (0.0, 0.08)),
            ("finishing", (0.005, 0.03)),
        ):
            d = rng.uniform(*share) * end
            if d <= 0 or t >= end:
                continue
            truth.append([round(t, 2), round(min(t + d, end), 2), state])
            t += d
    offline = offline or []

    def state_at(x: float) -> str:
        return next((s for a, b, s in truth if a <= x < b), "unplugged")

    step = end / samples
    verdict: list[list[Any]] = []
    for k in range(samples + 1):
        x = round(k * step, 2)
        if any(a <= x < b for a, b in offline):
            v = "offline"
        elif stuck_from is not None and x >= stuck_from:
            v = "busy"
        else:
            v = "free" if state_at(max(0.0, x - step)) == "unplugged" else "busy"
        if verdict and verdict[-1][2] == v:
            continue
        if verdict:
            verdict[-1][1] = x
        verdict.append([x, None, v])
    if verdict:
        verdict[-1][1] = round(end, 2)
    return {
        "cp": cp,
        "connector": connector,
        "truth": truth,
        "verdict": verdict,
        "offline": offline,
        "faults": faults or [],
        "violations": [],
    }


def falsely_busy(rows: list[dict[str, Any]], end: float, step: float) -> list[list[float]]:
    out = []
    k = 0.0
    while k <= end:
        n = 0
        for r in rows:
            idle = any(a <= k < b and s == "unplugged" for a, b, s in r["truth"])
            said = next((v for a, b, v in r["verdict"] if a <= k < b), "free")
            online = not any(a <= k < b for a, b in r["offline"])
            n += idle and online and said != "free"
        out.append([round(k, 2), n])
        k += step
    return out


def timeline(rows: list[dict[str, Any]], end: float, recovery_from: float, window: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in rows:
        for _, name in r["faults"]:
            counts[name] = counts.get(name, 0) + 1
    return {
        "end": end,
        "recoveryFrom": recovery_from,
        "window": window,
        "connectors": rows,
        "falselyBusy": falsely_busy(rows, end, end / 100),
        "faultCounts": counts,
    }


def violation(cp: str, connector: int, t: float, last_t: float, count: int, fault_t: float) -> dict[str, Any]:
    return {
        "kind": "falsely_busy",
        "cp": cp,
        "connector": connector,
        "t": t,
        "lastT": last_t,
        "count": count,
        "message": f"reported busy, but the connector has been idle since t={fault_t:.1f}s and its charger "
        f"online since t=0.0s (recovery window 20s)",
        "verdict": {
            "verdict": "busy",
            "reasons": ["open_transaction:17", "status:Charging <stale>"],
            "signals": {
                "persistedStatus": {"status": "Charging", "updatedAt": "2026-01-01T10:00:00Z"},
                "openTransactions": [{"id": 17, "idTag": "TAG<01>", "startedAt": "10:00:01"}],
                "live": None,
            },
        },
        "truth": {"state": "unplugged", "since": fault_t, "chargerConnected": True, "connectedSince": 0.0},
        "faults": [{"t": fault_t, "name": "drop_stop_transaction", "connector": connector, "params": {"p": 1.0}}],
    }


def scenario(
    name: str,
    outcome: str,
    rows: list[dict[str, Any]] | None,
    end: float,
    *,
    violations: list[dict[str, Any]] | None = None,
    error: str | None = None,
    recovery_from: float = 0.0,
    window: float = 20.0,
) -> dict[str, Any]:
    violations = violations or []
    for v in violations:
        for r in rows or ():
            if (r["cp"], r["connector"]) == (v["cp"], v["connector"]) and v["kind"] not in r["violations"]:
                r["violations"].append(v["kind"])
    fleet = None
    if rows is not None:
        faults: dict[str, int] = {}
        for r in rows:
            for _, f in r["faults"]:
                faults[f] = faults.get(f, 0) + 1
        fleet = {
            "chargePoints": len({r["cp"] for r in rows}),
            "connectors": len(rows),
            "sessions": sum(sum(s == "charging" for _, _, s in r["truth"]) for r in rows),
            "faults": faults,
            "errors": {},
        }
    return {
        "name": name,
        "nodeid": f"catalogue/{name}.py::test_{name}",
        "outcome": outcome,
        "duration": end + 1.3,
        "error": error,
        "purpose": f"{name.replace('_', ' ')}: stuck sessions must not keep connectors busy",
        "seedPassage": "000 Testing Scenarios, Test 1: Unlock with Stuck Session",
        "profile": "quick",
        "seed": 7,
        "rerun": f"unstuck-scenarios run {name} --seed 7 --profile quick",
        "notes": [
            "second start refused: 409 ConnectorBusy ['open_transaction:1']",
            "unlock: Connector unlocked successfully. 1 stuck session(s) automatically cleared.",
        ],
        "violations": violations,
        "checked": {"samples": 200 * len(rows or ()), "transactions": 12},
        "fleet": fleet,
        "trace": f"reports/traces/{name}.jsonl",
        "timeline": None if rows is None else timeline(rows, end, recovery_from, window),
    }


def summary(seed: int = 7, *, big: int = 0, hostile: bool = True) -> dict[str, Any]:
    """A run: one passed scenario, one failed (falsely busy), one error without a fleet, and with
    `big` > 0 a chaos-like scenario of `big` charge points x 4 connectors."""
    rng = random.Random(seed)
    end = 60.0
    ok_rows = [
        connector_row(
            rng, f"UNL-000{cp}", n, end, faults=[[round(rng.uniform(2, 20), 2), "silent_connector"]] if n == 1 else []
        )
        for cp in (1, 2)
        for n in (1, 2)
    ]
    passed = scenario("unlock_stuck_session", "passed", ok_rows, end, recovery_from=25.0, window=10.0)

    bad_cp = HOSTILE_CP if hostile else "MNT-0001"
    bad_rows = [
        connector_row(rng, bad_cp, 1, end, stuck_from=18.0, faults=[[17.5, "drop_stop_transaction"]]),
        connector_row(
            rng,
            "MNT-0002",
            1,
            end,
            offline=[[30.0, 41.5]],
            faults=[[30.0, "disconnect"], [31.2, "power_loss"], [52.0, "silent_connector"]],
        ),
        connector_row(rng, "MNT-0002", 2, end, offline=[[30.0, 41.5]]),
    ]
    # the stuck connector: idle from 18 s on, so the verdict band's busy stretch is falsely busy
    bad_rows[0]["truth"] = [r for r in bad_rows[0]["truth"] if r[0] < 18.0]
    bad_rows[0]["truth"][-1][1] = 18.0
    bad_rows[0]["truth"].append([18.0, end, "unplugged"])
    failed = scenario(
        "maintenance_frees_orphans",
        "failed",
        bad_rows,
        end,
        violations=[violation(bad_cp, 1, 40.2, 59.8, 37, 18.0)],
        error="AssertionError: 1 violation(s)\nfalsely_busy: <script>x</script> at t=40.2s\n"
        + "\n".join(f"  frame {k}" for k in range(40)),
        recovery_from=20.0,
        window=20.0,
    )
    broken = scenario("power_cut_recovery", "error", None, 0.0, error="RuntimeError: csms serve did not start")
    scenarios = [passed, failed, broken]
    if big:
        scenarios.append(chaos(rng, big))
    return {
        "version": 1,
        "profile": "quick",
        "seed": seed,
        "scale": big or None,
        "startedAt": 1767261600.0,
        "duration": 142.7,
        "csms": "embedded",
        "db": "sqlite (temporary)",
        "scenarios": scenarios,
        "passed": sum(s["outcome"] == "passed" for s in scenarios),
        "failed": sum(s["outcome"] in ("failed", "error") for s in scenarios),
        "skipped": sum(s["outcome"] == "skipped" for s in scenarios),
    }


def chaos(rng: random.Random, charge_points: int, end: float = 120.0) -> dict[str, Any]:
    rows, violations = [], []
    for k in range(1, charge_points + 1):
        cp = f"CHA-{k:04d}"
        offline = [[40.0, 40.0 + rng.uniform(5, 30)]] if rng.random() < 0.15 else []
        for n in range(1, 5):
            faults = [[round(rng.uniform(5, 60), 2), rng.choice(FAULTS)]] if rng.random() < 0.3 else []
            stuck = None
            if faults and faults[0][1] == "drop_stop_transaction" and rng.random() < 0.3:
                stuck = faults[0][0]
            row = connector_row(rng, cp, n, end, stuck_from=stuck, offline=offline, faults=faults)
            if stuck is not None:
                row["truth"] = [r for r in row["truth"] if r[0] < stuck]
                row["truth"][-1][1] = stuck
                row["truth"].append([stuck, end, "unplugged"])
                violations.append(violation(cp, n, 90.0, 119.4, 60, stuck))
            rows.append(row)
    return scenario(
        "chaos_under_load",
        "failed" if violations else "passed",
        rows,
        end,
        violations=violations,
        recovery_from=70.0,
        window=20.0,
    )
