"""Which energy samples of a transaction are kept for its chart: at most one per N seconds, plus the first. Pure.

MeterValues are the hottest OCPP message and a charger may sample every second; the chart needs a
shape, not every reading. The last reading needs no row of its own: every sample already lands in
the transaction's latest_meter_wh/latest_meter_at (and its meterStop at the end), which the chart
appends. For OCPP 1.6 MeterValues the rule is applied in memory per connection first (most samples never
reach the writer); for both versions it is applied in SQL against the stored rows
(`csms.db.meter_sample_store`), so a restart or a replay cannot crowd the table either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from csms.core.metering import parse_timestamp

__all__ = ["POWER", "keep_sample", "window", "remember", "power_w", "MAX_REMEMBERED"]

POWER = "Power.Active.Import"
_POWER_FACTORS = {"w": Decimal(1), "kw": Decimal(1000)}
# Transactions one connection remembers a kept sample for; beyond it the oldest entry goes (a
# connection holds a handful of transactions; ones closed without a stop we saw must not pile up).
MAX_REMEMBERED = 64


def keep_sample(last_kept: datetime | None, at: datetime, every: timedelta) -> bool:
    """Keep a sample stamped `at` when none was kept yet, or it is `every` or more after the last kept one.

    every <= 0 keeps none (the feature is off). A buffered, older sample (before the last kept one)
    is not kept: the rows around it already give the shape.
    """
    if every <= timedelta(0):
        return False
    return last_kept is None or at >= last_kept + every


def window(at: datetime, every: timedelta) -> tuple[datetime, datetime]:
    """The open interval around `at` in which an already stored sample makes this one redundant."""
    return at - every, at + every


def remember(kept: MutableMapping[int, datetime], tx_id: int, at: datetime, cap: int = MAX_REMEMBERED) -> None:
    """Note the kept sample of `tx_id`, forgetting the oldest-noted transactions beyond `cap`."""
    kept.pop(tx_id, None)
    kept[tx_id] = at
    while len(kept) > cap:
        kept.pop(next(iter(kept)))


def _power_of(sample: Any) -> int | None:
    """W of one sampledValue if it is the total active import power, else None."""
    if not isinstance(sample, Mapping) or sample.get("measurand") != POWER or sample.get("phase"):
        return None
    unit = sample.get("unit") or "W"
    scale = Decimal(1)
    uom = sample.get("unitOfMeasure")  # OCPP 2.0.1
    if isinstance(uom, Mapping):
        unit = uom.get("unit") or "W"
        multiplier = uom.get("multiplier", 0)
        if isinstance(multiplier, bool) or not isinstance(multiplier, int) or not -9 <= multiplier <= 9:
            return None
        scale = Decimal(10) ** multiplier
    factor = _POWER_FACTORS.get(unit.lower()) if isinstance(unit, str) else None
    raw = sample.get("value")
    if factor is None or isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    try:
        number = Decimal(str(raw).strip()) * factor * scale
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number) >= 10**12:
        return None
    return int(number.to_integral_value())


def power_w(meter_value: Iterable[Mapping[str, Any]], at: datetime | None) -> int | None:
    """The total active import power (W) sampled with the energy register stamped `at`, if the charger sent one.

    `at` None: the register's entry had no readable stamp; the power of the last entry without one is taken.
    """
    found = None
    for entry in meter_value or ():
        if not isinstance(entry, Mapping) or parse_timestamp(entry.get("timestamp")) != at:
            continue
        samples = entry.get("sampledValue")
        for sample in samples if isinstance(samples, list | tuple) else ():
            w = _power_of(sample)
            if w is not None:
                found = w
    return found
