"""Energy and fee maths for a session, in Decimal so money never goes through floats.

OCPP 1.6 meter readings are Wh; tariffs are per kWh. Every fee is rounded half up
to the cent in exactly one place (`fee`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from enum import StrEnum

__all__ = [
    "BillingError",
    "InvalidTariffError",
    "MeterSource",
    "Settlement",
    "choose_end_meter",
    "energy_wh",
    "fee",
    "parse_tariff",
    "settle",
    "settle_stop",
]

_CENT = Decimal("0.01")
_KWH_STEP = Decimal("0.001")
_WH_PER_KWH = Decimal(1000)


class BillingError(ValueError):
    """Root of every error this module raises."""


class InvalidTariffError(BillingError):
    """A tariff that is not a finite, non-negative number per kWh."""


class MeterSource(StrEnum):
    """Which reading closed the session, so an invoice can say where its energy came from."""

    METER_VALUES = "meter_values"
    METER_STOP = "meter_stop"
    METER_START = "meter_start"


@dataclass(frozen=True)
class Settlement:
    """The closing reading, where it came from, the energy it implies and what it costs."""

    end_meter_wh: int
    source: MeterSource
    energy_wh: int
    energy_kwh: Decimal
    fee: Decimal
    # Why a person should look at this bill (the readings contradict each other), or None.
    review: str | None = None


def _bad_tariff(value: object, why: str) -> InvalidTariffError:
    return InvalidTariffError(f"invalid tariff {value!r}: {why}")


# Bounds that keep every fee computable and storable (a 1e26 tariff once made a
# transaction impossible to close).
MAX_TARIFF = Decimal(10_000)
MAX_TARIFF_DECIMALS = 6


def parse_tariff(value: object) -> Decimal:
    """A per-kWh tariff from config, JSON or the database, refused loudly if it is nonsense."""
    if value is None or isinstance(value, bool):
        raise _bad_tariff(value, "expected a number per kWh")
    if isinstance(value, Decimal):
        tariff = value
    elif isinstance(value, int):
        tariff = Decimal(value)
    elif isinstance(value, float):
        tariff = Decimal(str(value))  # str() keeps 0.1 as 0.1, not 0.1000000000000000055...
    elif isinstance(value, str):
        if not value.strip():
            raise _bad_tariff(value, "empty")
        try:
            tariff = Decimal(value.strip())
        except InvalidOperation:
            raise _bad_tariff(value, "not a number") from None
    else:
        raise _bad_tariff(value, f"expected a number per kWh, got {type(value).__name__}")
    if not tariff.is_finite():
        raise _bad_tariff(value, "must be finite")
    if tariff < 0:
        raise _bad_tariff(value, "must not be negative")
    if tariff > MAX_TARIFF:
        raise _bad_tariff(value, f"more than {MAX_TARIFF} per kWh")
    exact = Context(prec=len(tariff.as_tuple().digits) + 1)  # normalise without rounding
    plain = Decimal(format(tariff.normalize(exact), "f"))  # "0.2500" -> 0.25, "1E+2" -> 100
    exponent = plain.as_tuple().exponent
    assert isinstance(exponent, int), exponent  # finite: not 'n', 'N' or 'F'
    if exponent < -MAX_TARIFF_DECIMALS:
        raise _bad_tariff(value, f"more than {MAX_TARIFF_DECIMALS} decimal places")
    return plain


def _exact(reading: int | float, name: str) -> Decimal:
    """A meter reading as an exact Decimal (floats via str(), as for tariffs)."""
    if isinstance(reading, bool) or not isinstance(reading, int | float | Decimal):
        raise BillingError(f"{name} must be a number of Wh, got {reading!r}")
    exact = Decimal(str(reading)) if isinstance(reading, float) else Decimal(reading)
    if not exact.is_finite():
        raise BillingError(f"{name} must be finite, got {reading!r}")
    return exact


def energy_wh(meter_start: int | float, meter_stop: int | float) -> int:
    """Whole Wh delivered; a meter that went backwards (reset, swap) delivered nothing."""
    delta = _exact(meter_stop, "meter_stop") - _exact(meter_start, "meter_start")
    if delta <= 0:
        return 0
    return int(delta.to_integral_value(rounding=ROUND_FLOOR))


def fee(energy_wh: int, tariff_per_kwh: Decimal) -> Decimal:
    """Wh / 1000 * tariff per kWh, half up to the cent (never Wh * per-kWh tariff)."""
    if isinstance(energy_wh, bool) or not isinstance(energy_wh, int):
        raise BillingError(f"energy_wh must be an integer number of Wh, got {energy_wh!r}")
    if energy_wh < 0:
        raise BillingError(f"energy_wh must not be negative, got {energy_wh}")
    tariff = parse_tariff(tariff_per_kwh)
    with localcontext() as ctx:
        ctx.prec = 60  # exact for any bounded tariff and any realistic energy
        return (Decimal(energy_wh) * tariff / _WH_PER_KWH).quantize(_CENT, rounding=ROUND_HALF_UP)


def choose_end_meter(
    meter_start: int, *, latest_sample_wh: int | None, meter_stop: int | None
) -> tuple[int, MeterSource]:
    """The best closing reading: last sample, else meterStop, else meterStart (bill nothing)."""
    if latest_sample_wh is not None:
        return latest_sample_wh, MeterSource.METER_VALUES
    if meter_stop is not None:
        return meter_stop, MeterSource.METER_STOP
    return meter_start, MeterSource.METER_START


def settle(
    meter_start: int,
    tariff_per_kwh: Decimal,
    *,
    latest_sample_wh: int | None = None,
    meter_stop: int | None = None,
) -> Settlement:
    """Close a session's money in one step, including force-ending a stuck one."""
    end, source = choose_end_meter(meter_start, latest_sample_wh=latest_sample_wh, meter_stop=meter_stop)
    energy = energy_wh(meter_start, end)
    return Settlement(
        end_meter_wh=end,
        source=source,
        energy_wh=energy,
        energy_kwh=(Decimal(energy) / _WH_PER_KWH).quantize(_KWH_STEP, rounding=ROUND_HALF_UP),
        fee=fee(energy, tariff_per_kwh),
    )


def settle_stop(
    meter_start: int,
    tariff_per_kwh: Decimal,
    *,
    meter_stop: int,
    latest_sample_wh: int | None = None,
) -> Settlement:
    """Close a session from its StopTransaction (on time or late), without throwing evidence away.

    A register never runs backwards within a transaction. A meterStop below the register
    the charge point itself sampled during the transaction (its meter was replaced or
    reset) cannot be the end: the sampled energy is what is evidenced, so that is billed,
    and the settlement says why it needs a person's review. A meterStop below meterStart
    with no sample above it bills nothing, and is flagged too.
    """
    if latest_sample_wh is not None and meter_stop < latest_sample_wh:
        st = settle(meter_start, tariff_per_kwh, latest_sample_wh=latest_sample_wh)
        return replace(
            st,
            review=(
                f"meterStop {meter_stop} Wh is below the register {latest_sample_wh} Wh sampled during the "
                f"transaction (meter replaced or reset?): billed the sampled {st.energy_wh} Wh"
            ),
        )
    st = settle(meter_start, tariff_per_kwh, meter_stop=meter_stop)
    if meter_stop < meter_start:
        return replace(
            st,
            review=(
                f"meterStop {meter_stop} Wh is below meterStart {meter_start} Wh and no sample shows the "
                "energy delivered (meter replaced or reset?): billed nothing"
            ),
        )
    return st
