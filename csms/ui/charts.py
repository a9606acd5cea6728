"""A transaction's energy over time as SVG geometry: pure numbers the template draws, no clocks, no database.

Server-rendered (the console's CSP allows no chart script): the template gets the polyline's points,
the axes' ticks with their labels and words for screen readers; the same points feed the sample table
beside the chart. Energy is what was delivered since the transaction's meterStart, in kWh.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from csms.core.times import as_utc

__all__ = ["Point", "Tick", "Chart", "series", "nice_ceiling", "energy_chart", "WIDTH", "HEIGHT"]

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 18, 14, 46  # room for the y labels, the x labels and the axis titles


@dataclass(frozen=True)
class Point:
    at: datetime
    wh: int  # the energy register
    kwh: float  # delivered since meterStart
    w: int | None = None  # the power sampled with it, if any
    source: str = "sample"  # start, sample, latest, stop


@dataclass(frozen=True)
class Tick:
    pos: float  # x for the time axis, y for the energy axis
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: tuple[tuple[float, float], ...]  # SVG coordinates, in time order
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    plot: tuple[float, float, float, float]  # left, top, right, bottom of the plotting area
    title: str
    description: str
    zone: str = "UTC"  # the time axis's zone, as its labels say it

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)

    @property
    def empty(self) -> bool:
        return not self.points


def series(
    start_at: datetime,
    meter_start: int,
    samples: Iterable[tuple[datetime, int, int | None]],
    latest: tuple[datetime, int] | None,
    stop: tuple[datetime, int] | None,
) -> list[Point]:
    """The points a chart draws: meterStart at the start, the kept samples, the latest sample, meterStop.

    The latest sample and meterStop are added only when later than what came before (a buffered or
    replaced-meter reading does not draw a line back in time). Energy below meterStart counts as 0.
    """
    raw: list[tuple[datetime, int, int | None, str]] = [(as_utc(start_at), meter_start, None, "start")]
    raw += [(as_utc(at), wh, w, "sample") for at, wh, w in samples]
    raw.sort(key=lambda p: p[0])
    for extra, source in ((latest, "latest"), (stop, "stop")):
        if extra is not None and as_utc(extra[0]) > raw[-1][0]:
            raw.append((as_utc(extra[0]), extra[1], None, source))
    return [Point(at, wh, max(0, wh - meter_start) / 1000, w, source) for at, wh, w, source in raw]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (a round top for the axis)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power  # pragma: no cover - the loop ends at 10


def _kwh_label(value: float) -> str:
    """Enough digits to tell the ticks apart (0.005, 0.01, 0.015 ... 12.5, 25 ... 250)."""
    return f"{value:.4g}" if value else "0"


def _time_label(at: datetime, with_date: bool, zone: tzinfo = UTC) -> str:
    return as_utc(at).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def energy_chart(
    points: list[Point], *, width: int = WIDTH, height: int = HEIGHT, x_ticks: int = 4, zone: tzinfo = UTC
) -> Chart:
    """Scale the points into a width x height SVG: time left to right (in `zone`), kWh bottom to top from 0.

    One point (or all at one moment) sits in the middle of the time axis; no points make an empty chart.
    """
    left, top, right, bottom = LEFT, TOP, width - RIGHT, height - BOTTOM
    title = "Energy delivered over time"
    name = as_utc(points[0].at).astimezone(zone).strftime("%Z") if points else str(zone)
    if not points:
        return Chart(width, height, (), (), (), (left, top, right, bottom), title, "No meter readings to draw.", name)
    t0, t1 = points[0].at, points[-1].at
    span = (t1 - t0).total_seconds()
    top_kwh = nice_ceiling(max(p.kwh for p in points))

    def x_of(at: datetime) -> float:
        if span <= 0:
            return (left + right) / 2
        return left + (at - t0).total_seconds() / span * (right - left)

    def y_of(kwh: float) -> float:
        return bottom - kwh / top_kwh * (bottom - top)

    with_date = as_utc(t0).astimezone(zone).date() != as_utc(t1).astimezone(zone).date()
    xs: tuple[Tick, ...]
    if span <= 0:
        xs = (Tick(x_of(t0), _time_label(t0, with_date, zone)),)
    else:
        steps = max(1, min(x_ticks, int(span)))  # a span of seconds gets no more ticks than seconds
        ticks = [
            Tick(left + i / steps * (right - left), _time_label(t0 + (t1 - t0) * i / steps, with_date, zone))
            for i in range(steps + 1)
        ]
        xs = tuple(t for i, t in enumerate(ticks) if i == 0 or t.label != ticks[i - 1].label)
    ys = tuple(Tick(y_of(top_kwh * i / 4), _kwh_label(top_kwh * i / 4)) for i in range(5))
    first, last = points[0], points[-1]
    description = (
        f"{len(points)} readings from {_time_label(t0, True, zone)} to {_time_label(t1, True, zone)} {name}; "
        f"energy delivered rose from {first.kwh:.3f} kWh to {last.kwh:.3f} kWh."
    )
    return Chart(
        width,
        height,
        tuple((round(x_of(p.at), 1), round(y_of(p.kwh), 1)) for p in points),
        xs,
        ys,
        (left, top, right, bottom),
        title,
        description,
        name,
    )
