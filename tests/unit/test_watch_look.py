"""The watcher's once-a-second look at the registry records each status change once, and only changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.ocpp.registry import LiveConnector
from csms.services.watch import Watcher

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class _Live:
    def __init__(self, cp_id: str) -> None:
        self.id = cp_id
        self.connectors: dict[int, LiveConnector] = {}


class _Ctx:
    def __init__(self, lives: list[_Live]) -> None:
        self.registry = lives


class _Hooks:
    enabled = False


def _watcher(lives: list[_Live]) -> Watcher:
    w = Watcher.__new__(Watcher)
    w.ctx, w.webhooks, w.statuses, w._present, w._looked = _Ctx(lives), _Hooks(), {}, {}, {}
    return w


def test_changes_are_recorded_once_and_unchanged_chargers_skipped():
    a, b = _Live("A"), _Live("B")
    a.connectors[1] = LiveConnector("Available", "NoError", T0)
    b.connectors[1] = LiveConnector("Charging", "NoError", T0)
    w = _watcher([a, b])
    w._look_at_registry()
    w._look_at_registry()  # nothing new
    assert [c.status for c in w.history("A", 1)] == ["Available"]
    a.connectors[1] = LiveConnector("Preparing", "NoError", T0 + timedelta(seconds=1))
    a.connectors[2] = LiveConnector("Faulted", "GroundFailure", T0 + timedelta(seconds=1))
    w._look_at_registry()
    w._look_at_registry()
    assert [c.status for c in w.history("A", 1)] == ["Available", "Preparing"]
    assert [(c.status, c.error_code) for c in w.history("A", 2)] == [("Faulted", "GroundFailure")]
    assert [c.status for c in w.history("B", 1)] == ["Charging"]
    assert set(w._looked) == {"A", "B"}


def test_a_full_timeline_costs_at_most_160_bytes_an_entry():
    """Every connector ever seen keeps up to 50 changes for the life of the process (2 million entries at
    20,000 two-connector chargers), so the bytes per entry decide the plateau RSS reaches: measured with
    tracemalloc over statuses decoded from JSON, as each frame brings its own copy of "Charging"."""
    import gc
    import json
    import tracemalloc

    lives = [_Live(f"CP{i:04d}") for i in range(100)]
    w = _watcher(lives)
    cycle = ["Preparing", "Charging", "SuspendedEV", "Finishing", "Available"]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(60):  # more than the 50 kept
            for live in lives:
                for c in (1, 2):
                    frame = json.loads(json.dumps({"status": cycle[n % 5], "errorCode": "NoError"}))
                    live.connectors[c] = LiveConnector(frame["status"], frame["errorCode"], T0 + timedelta(seconds=n))
            w._look_at_registry()
        for live in lives:
            live.connectors = {}  # what remains is the watcher's own
        w._looked = {}
        gc.collect()
        kept = sum(len(h) for h in w.statuses.values())
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / kept
    finally:
        tracemalloc.stop()
    assert kept == 100 * 2 * 50
    assert per_entry <= 160, f"{per_entry:.0f} bytes per timeline entry"
