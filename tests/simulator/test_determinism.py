"""Same seed, same charge-point decisions; and `replay` brings a dropped StopTransaction back."""

from __future__ import annotations

import trio

from simulator import DriverSpec, Fleet, ReplayScript, TraceWriter, decisions, read_trace

from .conftest import make_spec
from .libcsms import LibCentral

# Visits long enough that a loaded machine (CI, parallel workers) answers every call well inside them:
# with 0.5 s visits a slow Authorize answer once changed what a car did.
DRIVER = DriverSpec(first_within=0.6, session=(1.2, 1.5), idle=(0.2, 0.4), linger=(0.1, 0.2), tags=20)
RUN = 5.2  # s: every connector finishes at least two visits
CUT = 4.2  # s: compare what happened before this, away from where the run was stopped


async def _run(spec, *, trace: TraceWriter, replay: ReplayScript | None = None) -> tuple[list[dict], LibCentral]:
    central = LibCentral(heartbeat_interval=1)
    central.start()
    try:
        fleet = Fleet(spec, central.url, trace=trace, replay=replay)
        async with trio.open_nursery() as nursery:
            await nursery.start(fleet.run)
            await trio.sleep(RUN)
            nursery.cancel_scope.cancel()
        trace.close()
        assert fleet.stats.errors == {}
        return [r for r in (trace.records or []) if r["t"] < CUT], central
    finally:
        central.stop()


def _fault_schedule(records):
    return sorted((r["cp"], r["fault"], r["connector"], r["index"]) for r in records if r["kind"] == "fault")


async def test_same_seed_same_decisions_and_fault_schedule():
    spec = make_spec(
        count=4,
        driver=DRIVER,
        seed=11,
        faults=["drop_stop_transaction=0.4", "stuck_status=0.2", "silent_connector=0.3"],
    )
    runs = {}

    async def one(name, spec):
        runs[name], _ = await _run(spec, trace=TraceWriter(keep=True))

    async with trio.open_nursery() as nursery:  # side by side, each against its own CSMS
        nursery.start_soon(one, "a", spec)
        nursery.start_soon(one, "b", spec)
        nursery.start_soon(one, "other seed", spec.with_overrides(seed=12))
    a, b = runs["a"], runs["b"]
    assert _fault_schedule(a) == _fault_schedule(b) and _fault_schedule(a)
    assert decisions(a) == decisions(b)
    assert len([r for r in a if r["kind"] == "session"]) >= 8
    assert decisions(runs["other seed"]) != decisions(a)


def _transactions(records, cp):
    """Per charge point, in order: (idTag, StopTransaction sent?) from the trace's own frames."""
    import json

    starts, stops = [], set()
    answers = {}
    for r in records:
        if r["cp"] != cp or r["kind"] not in ("out", "in"):
            continue
        frame = json.loads(r["frame"])
        if r["kind"] == "out" and frame[0] == 2 and frame[2] == "StartTransaction":
            starts.append((frame[1], frame[3]["idTag"]))
        elif r["kind"] == "in" and frame[0] == 3 and "transactionId" in frame[2]:
            answers[frame[1]] = frame[2]["transactionId"]
        elif r["kind"] == "out" and frame[0] == 2 and frame[2] == "StopTransaction":
            stops.add(frame[3]["transactionId"])
    return [(tag, answers.get(uid) in stops) for uid, tag in starts]


async def test_replay_reproduces_a_dropped_stop_transaction_run(tmp_path):
    path = tmp_path / "trace.jsonl"
    spec = make_spec(count=3, driver=DRIVER, seed=5, faults=["drop_stop_transaction=0.5"])
    original, central_a = await _run(spec, trace=TraceWriter(path, keep=True))
    dropped = _fault_schedule(original)
    assert dropped, "seed 5 drops at least one StopTransaction in the window"

    script = ReplayScript.from_trace(path)
    assert script.spec == spec and script.forced
    replayed, central_b = await _run(script.spec, trace=TraceWriter(keep=True), replay=script)
    assert _fault_schedule(replayed) == dropped
    assert decisions(replayed) == decisions(original)
    for cp in ("CP0001", "CP0002", "CP0003"):
        first = _transactions(original, cp)[:2]
        assert _transactions(replayed, cp)[:2] == first
    # ... and the CSMS sees the same: starts whose StopTransaction never arrives.
    for central in (central_a, central_b):
        starts = central.received(action="StartTransaction")
        stops = central.received(action="StopTransaction")
        assert len(stops) < len(starts)
    assert next(read_trace(path))["spec"]["seed"] == 5
