"""`Fleet.stop_driving`: traffic ends, every car finishes and leaves, no new car comes."""

from __future__ import annotations

import trio

from .conftest import FAST_DRIVER, make_spec, start_fleet


async def test_stop_driving_ends_every_visit(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(count=3, connectors=2, driver=FAST_DRIVER))
    await trio.sleep(1.0)  # cars arrive within 0.3 s and stay 1.2-1.8 s: some are charging now
    assert any(c.transaction_running for cp in fleet.truth() for c in cp.connectors)
    await fleet.stop_driving()
    for cp in fleet.truth():
        assert all(c.state == "unplugged" and not c.transaction_running for c in cp.connectors), cp
    sessions = fleet.stats.sessions
    await trio.sleep(1.5)  # longer than the driver's idle gap: nobody comes back
    assert fleet.stats.sessions == sessions
    stops = [r for r in fleet.trace.records if r["kind"] == "tx" and r["event"] == "stop"]
    assert {r["reason"] for r in stops} <= {"Local", "EVDisconnected"}
