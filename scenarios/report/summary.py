"""The run's results as plain JSON: one record per scenario, timelines included.

`summary.json` is this data; `html.py` draws the same data. Building the
timelines (truth bands, verdict bands, fault marks, falsely-busy counts over
time) is pure and lives here, so the HTML stays a drawing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..oracle import Judgement, Sample
from ..timeline import IDLE_STATE, Timeline

__all__ = [
    "RunOutcome",
    "scenario_record",
    "verdict_segments",
    "falsely_busy_series",
    "write_summary",
    "SUMMARY_VERSION",
]

SUMMARY_VERSION = 1


def verdict_segments(samples: Sequence[Sample], end: float) -> dict[tuple[str, int], list[list[Any]]]:
    """Per connector: [from, to, verdict] runs of equal verdicts, each lasting until the next sample."""
    out: dict[tuple[str, int], list[list[Any]]] = {}
    for s in samples:
        segs = out.setdefault((s.cp, s.connector), [])
        if segs and segs[-1][2] == s.verdict.verdict:
            continue
        if segs:
            segs[-1][1] = round(s.t, 2)
        segs.append([round(s.t, 2), None, s.verdict.verdict])
    for segs in out.values():
        segs[-1][1] = round(max(end, segs[-1][0]), 2)
    return out


def falsely_busy_series(samples: Sequence[Sample], timeline: Timeline) -> list[list[float]]:
    """[t, n]: connectors not reported free while really idle on a connected charger, per sampling round."""
    counts: dict[float, int] = {}
    for s in samples:
        n = counts.setdefault(round(s.t, 2), 0)
        if s.verdict.verdict == "free":
            continue
        state, _ = timeline.connector(s.cp, s.connector).state_at(s.t)
        connected, _ = timeline.charge_point(s.cp).connected_at(s.t)
        if state == IDLE_STATE and connected:
            counts[round(s.t, 2)] = n + 1
    return [[t, n] for t, n in sorted(counts.items())]


@dataclass(frozen=True)
class RunOutcome:
    """What one scenario run left for the reports, as plain data (the run builds it; nothing here runs)."""

    name: str
    purpose: str
    seed_passage: str
    profile: str
    seed: int
    notes: tuple[str, ...]
    judgement: Judgement | None
    trace_path: Path | None = None  # None: the fleet never started
    fleet: dict[str, Any] | None = None  # chargePoints, connectors, sessions, faults, errors
    timeline: Timeline | None = None
    samples: tuple[Sample, ...] = ()
    recovery_from: float = 0.0
    window: float = 0.0


def scenario_record(run: RunOutcome) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": run.name,
        "purpose": run.purpose,
        "seedPassage": run.seed_passage,
        "profile": run.profile,
        "seed": run.seed,
        "notes": list(run.notes),
        "violations": [],
        "checked": {},
        "fleet": None,
        "timeline": None,
        "trace": None,
    }
    if run.judgement is not None:
        record["violations"] = [v.to_json() for v in run.judgement.violations]
        record["checked"] = dict(run.judgement.checked)
    if run.fleet is None or run.timeline is None:
        return record
    record["trace"] = str(run.trace_path)
    record["fleet"] = dict(run.fleet)
    record["timeline"] = timeline_record(run.samples, run.timeline, run.recovery_from, run.window, record["violations"])
    return record


def timeline_record(
    samples: Sequence[Sample],
    timeline: Timeline,
    recovery_from: float,
    window: float,
    violations: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    end = timeline.end
    verdicts = verdict_segments(samples, end)
    flagged: dict[tuple[str, int], list[str]] = {}
    for v in violations:
        flagged.setdefault((v["cp"], v["connector"]), []).append(v["kind"])
    rows = []
    for key in sorted(timeline.connectors):
        ct = timeline.connectors[key]
        cpt = timeline.charge_point(key[0])
        faults = timeline.faults_of(*key)
        rows.append(
            {
                "cp": key[0],
                "connector": key[1],
                "truth": [[round(a, 2), round(b, 2), s] for a, b, s in ct.segments(end)],
                "verdict": verdicts.get(key, []),
                "offline": _offline_segments(cpt.links, end),
                "faults": [[round(f.t, 2), f.name] for f in faults],
                "violations": sorted(set(flagged.get(key, []))),
            }
        )
    return {
        "end": round(end, 2),
        "recoveryFrom": round(recovery_from, 2),
        "window": window,
        "connectors": rows,
        "falselyBusy": falsely_busy_series(samples, timeline),
        "faultCounts": dict(Counter(f[1] for r in rows for f in r["faults"])),
    }


def _offline_segments(links: list[tuple[float, bool]], end: float) -> list[list[float]]:
    out, down_since = [], 0.0
    for t, connected in links:
        if connected and down_since is not None:
            if t > down_since:
                out.append([round(down_since, 2), round(t, 2)])
            down_since = None
        elif not connected and down_since is None:
            down_since = t
    if down_since is not None and end > down_since:
        out.append([round(down_since, 2), round(end, 2)])
    return out


def by_ocpp(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Outcomes per OCPP version of the cases (a record without one is 1.6: older summaries)."""
    out: dict[str, Counter[str]] = {}
    for r in records:
        outcome = {"error": "failed", "not_claimed": "notClaimed"}.get(r["outcome"], r["outcome"])
        out.setdefault(r.get("ocpp") or "1.6", Counter())[outcome] += 1
    return {version: dict(counts) for version, counts in sorted(out.items())}


def write_summary(path: Path, run_info: dict[str, Any], records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "version": SUMMARY_VERSION,
        **run_info,
        "scenarios": records,
        "passed": sum(r["outcome"] == "passed" for r in records),
        "failed": sum(r["outcome"] in ("failed", "error") for r in records),
        "skipped": sum(r["outcome"] == "skipped" for r in records),
        "notClaimed": sum(r["outcome"] == "not_claimed" for r in records),
        "byOcpp": by_ocpp(records),
        "unclaimedFindings": dict(
            sum((Counter(r.get("unclaimed") or {}) for r in records), Counter())  # kind -> count, all scenarios
        ),
    }
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
