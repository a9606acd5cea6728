import trio

from simulator import DriverSpec, Fleet, FleetSpec, GroupSpec, TraceWriter
from tests.simulator.review.harness import start_central


async def test_small_cars_under_autojump(autojump_clock, nursery):
    c = await start_central(nursery)
    spec = FleetSpec(
        seed=3,
        groups=(GroupSpec(count=20, connectors=2, target_kwh=(0.05, 0.3)),),
        driver=DriverSpec(session=(60, 120)),
    )
    fleet = Fleet(spec, c.url, trace=TraceWriter())
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await trio.sleep(300)
        run.cancel_scope.cancel()
    print("faults", fleet.stats.sessions)


async def test_meter_loop_spins(autojump_clock, nursery, monkeypatch):
    from simulator import model

    calls = {"n": 0}
    orig = model.Connector.advance

    def counting(self, now):
        calls["n"] += 1
        if calls["n"] > 2_000_000:
            raise RuntimeError(
                f"spinning: now={now} state={self.state} received={self.car_received_wh!r} "
                f"target={self.car.target_wh if self.car else None} full_in={self.seconds_until_full()!r}"
            )
        return orig(self, now)

    monkeypatch.setattr(model.Connector, "advance", counting)
    await test_small_cars_under_autojump(autojump_clock, nursery)
