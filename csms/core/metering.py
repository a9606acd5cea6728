"""Pick the energy register reading out of OCPP 1.6 and 2.0.1 MeterValues as they arrive on the wire.

Chargers send many measurands, per phase and in either Wh or kWh; billing needs one
number: the total Energy.Active.Import.Register, in Wh, from the latest sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "parse_timestamp",
    "ENERGY_REGISTER",
    "MAX_REGISTER_WH",
    "Reading",
    "ImplausibleReadingError",
    "check_register_wh",
    "latest_energy_register",
    "latest_energy_register_wh",
]

ENERGY_REGISTER = "Energy.Active.Import.Register"
# OCPP 1.6 UnitOfMeasure values for energy; matched case-insensitively because chargers vary.
_UNIT_FACTORS = {"wh": Decimal(1), "kwh": Decimal(1000)}
# No real register reaches 10^15 in any unit; larger "numbers" are garbage, not energy.
_IMPLAUSIBLE = Decimal(10) ** 15
MAX_REGISTER_WH = 10**15 - 1


class ImplausibleReadingError(ValueError):
    """A meterStart/meterStop no energy register can show (negative, or 10^15 Wh and more)."""


def check_register_wh(value: int, name: str) -> int:
    """A meterStart or meterStop as Wh, or ImplausibleReadingError naming the field and the range.

    The same bound as the samples of MeterValues (which are dropped when beyond it); a
    StopTransaction's meterStop of 2^63 once made every retry of that stop fail inside the
    database, and the session never ended.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImplausibleReadingError(f"{name} must be an integer number of Wh, got {value!r}")
    if not 0 <= value <= MAX_REGISTER_WH:
        raise ImplausibleReadingError(
            f"{name} {value} is outside 0..{MAX_REGISTER_WH} Wh: no energy register shows that"
        )
    return value


@dataclass(frozen=True)
class Reading:
    """One total-energy register sample: Wh and the time the charger stamped it (None if unreadable)."""

    wh: int
    at: datetime | None


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as aware UTC, or None if the charger sent something else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first representable instant
        return None


def _number(value: Any) -> Decimal | None:
    """The sampled value as a finite Decimal; 1.6 says it is a string, some send numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = str(value)
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    if not number.is_finite() or abs(number) >= _IMPLAUSIBLE:
        return None
    return number


def _register_wh(sample: Any, contexts: frozenset[str] | None = None) -> int | None:
    """Wh of one sampledValue if it is the total energy register (sampled in one of `contexts`), else None."""
    if not isinstance(sample, Mapping):
        return None
    if contexts is not None and (sample.get("context") or "Sample.Periodic") not in contexts:
        return None
    if (sample.get("measurand") or ENERGY_REGISTER) != ENERGY_REGISTER:
        return None
    if sample.get("phase"):  # per-phase registers are parts, not the total
        return None
    if (sample.get("format") or "Raw") != "Raw":  # SignedData is an opaque blob, not a number
        return None
    unit = sample.get("unit") or "Wh"
    scale = Decimal(1)
    uom = sample.get("unitOfMeasure")  # OCPP 2.0.1: {"unit": "kWh", "multiplier": 0}
    if isinstance(uom, Mapping):
        unit = uom.get("unit") or "Wh"
        multiplier = uom.get("multiplier", 0)
        if isinstance(multiplier, bool) or not isinstance(multiplier, int) or not -9 <= multiplier <= 9:
            return None
        scale = Decimal(10) ** multiplier
    factor = _UNIT_FACTORS.get(unit.lower()) if isinstance(unit, str) else None
    if factor is not None:
        factor *= scale
    number = _number(sample.get("value"))
    if factor is None or number is None:
        return None
    return int((number * factor).to_integral_value(rounding=ROUND_HALF_UP))


def _entry_wh(entry: Any, contexts: frozenset[str] | None = None) -> int | None:
    """The register in one MeterValue entry; the last usable sampledValue wins."""
    if not isinstance(entry, Mapping):
        return None
    samples = entry.get("sampledValue")
    if not isinstance(samples, list | tuple):
        return None
    found = None
    for sample in samples:
        wh = _register_wh(sample, contexts)
        if wh is not None:
            found = wh
    return found


def latest_energy_register(
    meter_value: Iterable[Mapping[str, Any]], contexts: frozenset[str] | None = None
) -> Reading | None:
    """Total import register from the latest-stamped entry (Wh and its stamp), or None if there is none.

    `contexts`: only samples taken in these ReadingContexts (e.g. "Transaction.Begin"); None: any.

    Timestamped entries beat entries whose timestamp is missing or unparseable; among
    equals (same timestamp, or none parseable) the last one in the list wins. The stamp is
    the charger's clock: compare it with the charger's other stamps only (a buffered,
    older sample must not replace a newer one), never with ours.
    """
    best_key: tuple[bool, datetime] | None = None
    best: Reading | None = None
    for entry in meter_value or ():
        wh = _entry_wh(entry, contexts)
        if wh is None:
            continue
        stamp = parse_timestamp(entry.get("timestamp"))
        key = (stamp is not None, stamp or datetime.min.replace(tzinfo=UTC))
        if best_key is None or key >= best_key:
            best_key, best = key, Reading(wh, stamp)
    return best


def latest_energy_register_wh(meter_value: Iterable[Mapping[str, Any]]) -> int | None:
    """Total import register in Wh from the latest-stamped entry, or None if there is none."""
    reading = latest_energy_register(meter_value)
    return None if reading is None else reading.wh
