"""The oracle judging a CSMS we did not write: the `ocpp` library's central system, through `LibCsmsAdapter`.

A clean run passes; a dropped StopTransaction leaves it falsely busy with an
unclosed transaction, because a plain central system has no recovery path.
That is the oracle working on someone else's CSMS, with the same observer,
timeline and rules the scenarios use. Real sockets, real time (the central
system runs in its own thread): about ten seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import trio

from scenarios.adapters.base import BUSY, FREE, OFFLINE, NotSupportedError
from scenarios.observe import Observer
from scenarios.oracle import Judgement, Rules, judge
from scenarios.timeline import Timeline
from simulator import Fleet
from tests.simulator.conftest import FAST_DRIVER, make_spec, start_fleet
from tests.simulator.libcsms import LibCentral

from .libcsms_adapter import LibCsmsAdapter

WINDOW = 2.0  # s: the library CSMS's verdict follows the charger's messages at once; this is for the wire


@pytest.fixture
def central() -> Iterator[LibCentral]:
    lib = LibCentral(heartbeat_interval=1, response_timeout=1.5)
    lib.start()
    try:
        yield lib
    finally:
        lib.stop()


async def watch(nursery: trio.Nursery, central: LibCentral, fleet: Fleet) -> tuple[LibCsmsAdapter, Observer]:
    adapter = LibCsmsAdapter.in_process(central)
    observer = Observer(adapter, fleet, interval=0.25)
    await nursery.start(observer.run)
    return adapter, observer


async def judgement(adapter: LibCsmsAdapter, observer: Observer, fleet: Fleet, **rules) -> Judgement:
    """One more sample, what the library CSMS stored, the truth so far: the oracle's verdict."""
    await observer.sample_once()
    stored = await adapter.transactions("CP")
    assert fleet.trace.records is not None and fleet.clock is not None
    tl = Timeline.from_records(
        fleet.trace.records, end=fleet.clock.now(), connectors={cp.id: len(cp.connectors) for cp in fleet}
    )
    return judge(observer.samples, tl, stored, Rules(recovery_window=WINDOW, **rules))


async def until(predicate, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_a_clean_run_against_the_library_csms_passes(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(count=2, connectors=2, driver=FAST_DRIVER, seed=4))
    adapter, observer = await watch(nursery, central, fleet)
    await trio.sleep(4.0)  # random local sessions on every connector
    await fleet.stop_driving()  # cars finish and leave; no new ones

    started = await adapter.start("CP0001", 1, "APP01", Decimal("0.30"))  # an app session
    assert started.accepted, started
    await until(lambda: adapter.transaction_of(started.session_id) is not None, 5, "its StartTransaction")
    await trio.sleep(0.3)
    assert await adapter.stop(started.session_id)
    await until(lambda: fleet["CP0001"].connector_truth(1).state == "unplugged", 5, "the app's car to leave")
    await trio.sleep(WINDOW + 0.5)

    j = await judgement(adapter, observer, fleet)
    assert j.passed, "\n".join(v.describe() for v in j.violations)
    assert j.checked["transactions"] >= 4 and j.checked["stored"] == j.checked["transactions"]
    stored = await adapter.transactions("CP")
    assert all(t.closed and t.session is None for t in stored)
    assert any(t.stop_reason == "Remote" for t in stored)
    seen = {s.verdict.verdict for s in observer.samples}
    assert {FREE, BUSY} <= seen, seen  # it really said busy while cars charged, and free after
    latest = {key: observer.latest(*key) for key in observer.keys}
    assert all(v is not None and v.verdict == FREE for v in latest.values()), latest


async def test_a_dropped_stop_transaction_leaves_the_library_csms_falsely_busy(nursery, central):
    fleet = await start_fleet(
        nursery, central.url, make_spec(faults=["drop_stop_transaction=1,available=false"], seed=5)
    )
    adapter, observer = await watch(nursery, central, fleet)
    cp = fleet["CP0001"]
    tx = await cp.start_by_tag(1, "TAG0001")
    assert tx is not None and tx.transaction_id is not None
    await trio.sleep(1.5)
    await cp.unplug(1)  # the car leaves; no StopTransaction, no StatusNotification
    await trio.sleep(WINDOW + 1.0)

    j = await judgement(adapter, observer, fleet)
    assert [(v.kind, v.cp, v.connector) for v in j.violations] == [
        ("falsely_busy", "CP0001", 1),
        ("unclosed_transaction", "CP0001", 1),
    ]
    busy, unclosed = j.violations
    assert busy.verdict is not None and busy.verdict.verdict == BUSY
    assert f"transaction:{tx.transaction_id}:open" in busy.verdict.reasons and "status:Charging" in busy.verdict.reasons
    assert busy.truth["state"] == "unplugged" and [f.name for f in busy.faults] == ["drop_stop_transaction"]
    assert f"transaction {tx.transaction_id} still open" in unclosed.message
    assert "drop_stop_transaction@" in busy.describe()

    # The admin's unlock reaches the charger, but a plain central system cleans nothing up.
    unlocked = await adapter.unlock("CP0001", 1)
    assert unlocked.unlocked and unlocked.cleaned_sessions == ()
    await trio.sleep(WINDOW + 0.5)
    j = await judgement(adapter, observer, fleet, excuse_blinded=False)
    assert {v.kind for v in j.violations} == {"falsely_busy", "unclosed_transaction"}


async def test_what_the_library_csms_cannot_do(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec(count=1))
    adapter = LibCsmsAdapter.in_process(central)
    with pytest.raises(NotSupportedError):
        await adapter.reserve("CP0001", 1, "TAG0001", Decimal("0.30"))
    gone = await adapter.start("CP9999", 1, "APP01", Decimal("0.30"))
    assert not gone.accepted and gone.code == "ChargerOffline"
    assert not await adapter.stop("no-such-session")
    verdicts = await adapter.verdicts([("CP0001", 1), ("CP9999", 1)])
    assert verdicts[("CP0001", 1)].verdict == FREE  # Available after boot
    assert verdicts[("CP9999", 1)].verdict == OFFLINE
    assert fleet["CP0001"].online
