"""What a fleet is made of and what its cars do: specs, TOML fleet files, session plans.

Pure. A `FleetSpec` round-trips through a plain mapping (`to_mapping` /
`from_mapping`), which is both the TOML fleet-file shape and what a trace
header stores, so `unstuck-sim replay` rebuilds exactly the fleet that ran.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .configstore import KEYS
from .errors import ConfigError
from .faults import FaultSpec, fault_from_mapping
from .model import Car
from .rng import Rng
from .wire import WIRES as OCPP_VERSIONS

__all__ = [
    "DriverSpec",
    "GroupSpec",
    "FleetSpec",
    "SessionPlan",
    "session_plan",
    "session_plans",
    "draw_car",
    "load_fleet_file",
]

Range = tuple[float, float]


@dataclass(frozen=True)
class DriverSpec:
    """The seeded random session driver: when cars come, how long they stay, how they leave."""

    first_within: float = 30.0  # every connector's first session starts within this many s
    session: Range = (10.0, 60.0)  # plug-in to leaving, s
    idle: Range = (5.0, 60.0)  # gap between sessions, s
    leave_share: float = 0.3  # share of sessions where the car just leaves (EVDisconnected)
    linger: Range = (1.0, 5.0)  # after a local stop, until the cable is out, s
    remote_session: Range = (10.0, 60.0)  # how long a car started by RemoteStart stays, s
    tags: int = 100  # size of the idTag pool TAG0001..
    tag_prefix: str = "TAG"


@dataclass(frozen=True)
class GroupSpec:
    """Charge points that share a shape: count, connectors, cars, faults, configuration."""

    prefix: str = "CP"
    count: int = 1
    connectors: int = 2
    power_kw: Range = (3.7, 22.0)
    target_kwh: Range = (2.0, 40.0)
    faults: tuple[FaultSpec, ...] = ()
    config: Mapping[str, str] = field(default_factory=dict)
    driven: bool = True  # False: the seeded driver sends no cars here; the scenario plays them itself
    ocpp: str = "1.6"  # the OCPP version its charge points speak: "1.6" or "2.0.1" (simulator.wire)


@dataclass(frozen=True)
class FleetSpec:
    seed: int = 0
    groups: tuple[GroupSpec, ...] = (GroupSpec(),)
    faults: tuple[FaultSpec, ...] = ()  # fleet-wide, on top of each group's
    driver: DriverSpec | None = DriverSpec()  # None: scripted only, no random sessions
    ramp: float = 100.0  # charge points started per second
    call_timeout: float = 30.0
    boot_on_reconnect: bool = False  # OCPP 1.6 boots only after a (re)start; some CSMSs want it anyway

    def charge_points(self) -> list[tuple[str, GroupSpec]]:
        """(id, group) for every charge point, numbered per prefix from 1: CP0001..."""
        numbers: dict[str, int] = {}
        out = []
        for group in self.groups:
            for _ in range(group.count):
                n = numbers[group.prefix] = numbers.get(group.prefix, 0) + 1
                out.append((f"{group.prefix}{n:04d}", group))
        return out

    def with_overrides(self, **changes: Any) -> FleetSpec:
        return replace(self, **changes)

    def to_mapping(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ramp": self.ramp,
            "call_timeout": self.call_timeout,
            "boot_on_reconnect": self.boot_on_reconnect,
            "driver": _driver_mapping(self.driver),
            "fault": [f.to_mapping() for f in self.faults],
            "group": [_group_mapping(g) for g in self.groups],
        }

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> FleetSpec:
        data = dict(raw)
        allowed = {"seed", "ramp", "call_timeout", "boot_on_reconnect", "driver", "fault", "group", "csms", "duration"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(f"fleet file: unknown top-level keys {sorted(unknown)}; known: {sorted(allowed)}")
        try:
            groups = tuple(_group_from(g) for g in data.get("group", [{}]))
            driver_raw = data.get("driver", {})
            driver = None if driver_raw is False else _driver_from(driver_raw)
            spec = cls(
                seed=int(data.get("seed", 0)),
                groups=groups,
                faults=tuple(fault_from_mapping(f) for f in data.get("fault", [])),
                driver=driver,
                ramp=float(data.get("ramp", 100.0)),
                call_timeout=float(data.get("call_timeout", 30.0)),
                boot_on_reconnect=bool(data.get("boot_on_reconnect", False)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"fleet file: {exc}") from None
        if spec.ramp <= 0:
            raise ConfigError("ramp (charge points started per second) must be > 0")
        return spec


def _range(value: Any, what: str) -> Range:
    lo, hi = (float(v) for v in value)
    if not 0 <= lo <= hi:
        raise ConfigError(f"{what} = [{lo}, {hi}] must be two numbers, 0 <= low <= high")
    return (lo, hi)


def _driver_mapping(driver: DriverSpec | None) -> dict[str, Any] | bool:
    if driver is None:
        return False
    return {k: list(v) if isinstance(v, tuple) else v for k, v in driver.__dict__.items()}


def _driver_from(raw: Mapping[str, Any]) -> DriverSpec:
    data = dict(raw)
    fields = DriverSpec.__dataclass_fields__
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"[driver]: unknown keys {sorted(unknown)}; known: {sorted(fields)}")
    for key in ("session", "idle", "linger", "remote_session"):
        if key in data:
            data[key] = _range(data[key], f"driver.{key}")
    return DriverSpec(**data)


def _group_mapping(group: GroupSpec) -> dict[str, Any]:
    return {
        "prefix": group.prefix,
        "count": group.count,
        "connectors": group.connectors,
        "power_kw": list(group.power_kw),
        "target_kwh": list(group.target_kwh),
        "config": dict(group.config),
        "fault": [f.to_mapping() for f in group.faults],
        "ocpp": group.ocpp,
    }


def _group_from(raw: Mapping[str, Any]) -> GroupSpec:
    data = dict(raw)
    known = {"prefix", "count", "connectors", "power_kw", "target_kwh", "config", "fault", "ocpp"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"[[group]]: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    config = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.get("config", {}).items()}
    bad = [k for k in config if k not in KEYS]
    if bad:
        raise ConfigError(f"[[group]].config: unknown OCPP keys {bad}; known: {sorted(KEYS)}")
    group = GroupSpec(
        prefix=str(data.get("prefix", "CP")),
        count=int(data.get("count", 1)),
        connectors=int(data.get("connectors", 2)),
        power_kw=_range(data.get("power_kw", (3.7, 22.0)), "power_kw"),
        target_kwh=_range(data.get("target_kwh", (2.0, 40.0)), "target_kwh"),
        faults=tuple(fault_from_mapping(f) for f in data.get("fault", [])),
        config=config,
        ocpp=str(data.get("ocpp", "1.6")),
    )
    if group.ocpp not in OCPP_VERSIONS:
        raise ConfigError(f"[[group]]: ocpp = {group.ocpp!r}; the simulator speaks {' and '.join(OCPP_VERSIONS)}")
    if group.count < 0 or not 1 <= group.connectors <= 99:
        raise ConfigError("[[group]]: count must be >= 0 and connectors between 1 and 99")
    return group


def load_fleet_file(path: str | Path) -> tuple[FleetSpec, dict[str, Any]]:
    """Parse a TOML fleet file; also return its raw `csms` / `duration` run options."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read fleet file {path}: {exc}") from None
    run = {k: raw[k] for k in ("csms", "duration") if k in raw}
    return FleetSpec.from_mapping(raw), run


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One car visit, decided before it happens (and written to the trace)."""

    connector: int
    n: int
    gap: float  # idle time before the car arrives, s
    duration: float  # plug-in to leaving, s
    power_w: float
    target_wh: float
    tag: str
    ending: str  # "leave": unplugged while charging (EVDisconnected); "local": stop, then unplug
    linger: float  # "local": seconds between the stop and the unplug

    @property
    def car(self) -> Car:
        return Car(self.power_w, self.target_wh)

    def to_mapping(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def draw_car(rng: Rng, group: GroupSpec, *key: object) -> Car:
    power_w = round(rng.uniform(*group.power_kw, *key, "power") * 10) * 100.0
    target_wh = round(rng.uniform(*group.target_kwh, *key, "target") * 1000.0)
    return Car(power_w, float(target_wh))


def session_plan(rng: Rng, driver: DriverSpec, group: GroupSpec, connector: int, n: int) -> SessionPlan:
    """Session `n` of one connector; a pure function of (rng, n), not of what came before."""
    key = ("session", connector, n)
    gap = rng.uniform(0.0, driver.first_within, *key, "gap") if n == 0 else rng.uniform(*driver.idle, *key, "gap")
    car = draw_car(rng, group, *key)
    return SessionPlan(
        connector=connector,
        n=n,
        gap=round(gap, 3),
        duration=round(rng.uniform(*driver.session, *key, "duration"), 3),
        power_w=car.power_w,
        target_wh=car.target_wh,
        tag=f"{driver.tag_prefix}{rng.randint(1, max(1, driver.tags), *key, 'tag'):04d}",
        ending="leave" if rng.chance(driver.leave_share, *key, "ending") else "local",
        linger=round(rng.uniform(*driver.linger, *key, "linger"), 3),
    )


def session_plans(rng: Rng, driver: DriverSpec, group: GroupSpec, connector: int) -> Iterator[SessionPlan]:
    n = 0
    while True:
        yield session_plan(rng, driver, group, connector, n)
        n += 1
