"""Fleet specs, TOML fleet files, session plans and the configuration store (all pure)."""

from __future__ import annotations

import pytest

from simulator.configstore import ConfigStore
from simulator.errors import ConfigError
from simulator.fleetspec import (
    DriverSpec,
    FleetSpec,
    GroupSpec,
    load_fleet_file,
    session_plan,
    session_plans,
)
from simulator.rng import Rng

FLEET_TOML = """
seed = 11
ramp = 50
csms = "ws://127.0.0.1:9000/ocpp"
duration = 120

[driver]
first_within = 10
session = [5, 20]
tags = 5

[[fault]]
name = "silent_connector"
probability = 0.05

[[group]]
prefix = "AC"
count = 3
connectors = 2
power_kw = [3.7, 11]
config = { MeterValueSampleInterval = 5, StopTransactionOnInvalidId = true }

  [[group.fault]]
  name = "drop_stop_transaction"
  probability = 0.2
  available = false

[[group]]
prefix = "DC"
count = 2
connectors = 1
power_kw = [22, 22]

  [[group.fault]]
  name = "reboot"
  at = [30, 90]
"""


def test_fleet_file(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET_TOML)
    spec, run = load_fleet_file(path)
    assert run == {"csms": "ws://127.0.0.1:9000/ocpp", "duration": 120}
    assert spec.seed == 11 and spec.ramp == 50
    assert [cp for cp, _ in spec.charge_points()] == ["AC0001", "AC0002", "AC0003", "DC0001", "DC0002"]
    ac, dc = spec.groups
    assert ac.power_kw == (3.7, 11.0) and ac.config == {
        "MeterValueSampleInterval": "5",
        "StopTransactionOnInvalidId": "true",
    }
    assert ac.faults[0].param("available") is False and dc.faults[0].at == (30.0, 90.0)
    assert spec.driver == DriverSpec(first_within=10.0, session=(5.0, 20.0), tags=5)
    assert FleetSpec.from_mapping(spec.to_mapping()) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = 1", "unknown top-level keys"),
        ("[[group]]\nsize = 3", "unknown keys \\['size'\\]"),
        ("[[group]]\nconfig = { Nope = 1 }", "unknown OCPP keys"),
        ("[[group]]\npower_kw = [22, 3]", "0 <= low <= high"),
        ("[driver]\nspeed = 1", "unknown keys"),
        ("[[fault]]\nname = 'reboot'\nprobability = 2", "not between 0 and 1"),
        ("ramp = 0", "must be > 0"),
    ],
)
def test_bad_fleet_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_fleet_file(path)


def test_unreadable_fleet_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read fleet file"):
        load_fleet_file(tmp_path / "missing.toml")


def test_driver_false_means_scripted():
    assert FleetSpec.from_mapping({"driver": False}).driver is None


def test_session_plans_are_seeded_and_within_the_configured_ranges():
    driver, group = DriverSpec(), GroupSpec(power_kw=(3.7, 22.0), target_kwh=(2.0, 40.0))
    rng = Rng(7).child("cp", "CP0001", "driver")
    plans = [p for p, _ in zip(session_plans(rng, driver, group, 1), range(200), strict=False)]
    assert plans == [session_plan(Rng(7).child("cp", "CP0001", "driver"), driver, group, 1, n) for n in range(200)]
    assert 0 <= plans[0].gap <= 30  # every connector starts within its first 30 s
    assert all(5 <= p.gap <= 60 for p in plans[1:])
    assert all(10 <= p.duration <= 60 for p in plans)
    assert all(3700 <= p.power_w <= 22000 and 2000 <= p.target_wh <= 40000 for p in plans)
    assert {p.ending for p in plans} == {"leave", "local"}
    other = session_plan(Rng(7).child("cp", "CP0001", "driver"), driver, group, 2, 0)
    assert other != plans[0]  # connectors do not share visits


def test_config_store():
    store = ConfigStore({"MeterValueSampleInterval": "5"})
    assert store.int("MeterValueSampleInterval") == 5 and store.int("HeartbeatInterval") == 300
    assert store.change("HeartbeatInterval", "60") == "Accepted" and store.int("HeartbeatInterval") == 60
    assert store.change("HeartbeatInterval", "soon") == "Rejected"
    assert store.change("NumberOfConnectors", "3") == "Rejected"  # read-only
    assert store.change("NoSuchKey", "1") == "NotSupported"
    assert store.change("AuthorizeRemoteTxRequests", "TRUE") == "Accepted" and store.bool("AuthorizeRemoteTxRequests")
    known, unknown = store.report(["HeartbeatInterval", "Nope"])
    assert known == [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}] and unknown == ["Nope"]
    assert len(store.report(None)[0]) >= 15
    with pytest.raises(KeyError):
        ConfigStore({"Nope": "1"})


def test_an_undriven_group_gets_no_cars_from_the_driver():
    """A scenario that plays a group's cars itself (GroupSpec(driven=False)) gets no seeded visits there."""
    from simulator import DriverSpec, Fleet, FleetSpec, GroupSpec

    spec = FleetSpec(
        seed=3,
        groups=(GroupSpec(prefix="A", count=2), GroupSpec(prefix="B", count=2, driven=False)),
        driver=DriverSpec(),
    )
    schedule = Fleet(spec, "ws://127.0.0.1:1/ocpp").schedule(sessions=2)
    assert all(row["sessions"] for cp, row in schedule.items() if cp.startswith("A"))
    assert [row["sessions"] for cp, row in schedule.items() if cp.startswith("B")] == [{}, {}]
