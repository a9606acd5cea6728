"""Fixtures for the simulator's tests: the ocpp-library CSMS and a fleet started against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
import trio

from simulator import DriverSpec, Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option

from .libcsms import LibCentral


@pytest.fixture
def central() -> Iterator[LibCentral]:
    """The independent asyncio CSMS (heartbeat interval 1 s, 1.5 s call timeout), on port 0."""
    lib = LibCentral(heartbeat_interval=1, response_timeout=1.5)
    lib.start()
    try:
        yield lib
    finally:
        lib.stop()


FAST_DRIVER = DriverSpec(
    first_within=0.3, session=(1.2, 1.8), idle=(0.2, 0.4), linger=(0.1, 0.2), remote_session=(0.8, 1.0), tags=20
)


def make_spec(
    *,
    count: int = 1,
    connectors: int = 1,
    faults: Sequence[str] = (),
    driver: DriverSpec | None = None,
    seed: int = 1,
    config: dict[str, str] | None = None,
) -> FleetSpec:
    return FleetSpec(
        seed=seed,
        groups=(GroupSpec(count=count, connectors=connectors, config=config or {"MeterValueSampleInterval": "1"}),),
        faults=tuple(parse_fault_option(f) for f in faults),
        driver=driver,
        ramp=1000.0,
        call_timeout=3.0,
    )


async def start_fleet(nursery: trio.Nursery, url: str, spec: FleetSpec, *, online: bool = True) -> Fleet:
    fleet = Fleet(spec, url, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    if online:
        with trio.fail_after(5):
            await fleet.wait_online()
            for cp in fleet:
                await cp.flush()  # the statuses after boot have been answered
    return fleet


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll until `predicate()` holds (the CSMS runs in another thread)."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def ask(central: LibCentral, cp: str, request: object) -> object:
    """The CSMS sends `request` to `cp`; returns the library's call_result (blocks a worker thread)."""
    return await trio.to_thread.run_sync(central.send, cp, request)
