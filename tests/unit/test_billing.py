"""Energy, fee and settlement maths: Wh in, cents out, rounded half up exactly once."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.core.billing import (
    BillingError,
    InvalidTariffError,
    MeterSource,
    Settlement,
    choose_end_meter,
    energy_wh,
    fee,
    parse_tariff,
    settle,
)

# --- parse_tariff ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.25", Decimal("0.25")),
        (" 0.25 ", Decimal("0.25")),
        ("0", Decimal("0")),
        ("1e-1", Decimal("0.1")),
        (0.25, Decimal("0.25")),
        (0.1, Decimal("0.1")),
        (1, Decimal("1")),
        (0, Decimal("0")),
        (Decimal("0.3333"), Decimal("0.3333")),
    ],
)
def test_parse_tariff_accepts_numbers(value, expected):
    tariff = parse_tariff(value)
    assert isinstance(tariff, Decimal)
    assert tariff == expected


def test_parse_tariff_keeps_float_digits_as_written():
    # Decimal(0.1) would be 0.1000000000000000055511151231257827...
    assert str(parse_tariff(0.1)) == "0.1"
    assert str(parse_tariff(0.35)) == "0.35"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "abc",
        "0.25 EUR",
        "0,25",
        True,
        False,
        float("nan"),
        float("inf"),
        float("-inf"),
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        Decimal("NaN"),
        Decimal("Infinity"),
        -1,
        -0.01,
        "-0.25",
        Decimal("-0.01"),
        [0.25],
        {"tariff": 0.25},
        object(),
    ],
    ids=lambda v: "object()" if type(v) is object else repr(v),  # stable ids: xdist workers must agree
)
def test_parse_tariff_rejects_nonsense(value):
    with pytest.raises(InvalidTariffError) as excinfo:
        parse_tariff(value)
    assert repr(value) in str(excinfo.value)


def test_tariff_errors_are_billing_errors_and_value_errors():
    assert issubclass(InvalidTariffError, BillingError)
    assert issubclass(BillingError, ValueError)


# --- energy_wh ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        (1000, 7400, 6400),
        (0, 0, 0),
        (500, 500, 0),
        (7400, 1000, 0),  # meter went backwards: nothing delivered, never a refund
        (1000.5, 7400.4, 6399),  # whole Wh, floored
        (0.1, 1000.1, 1000),  # exact despite binary floats
        (1000, 1000.9, 0),
    ],
)
def test_energy_wh(start, stop, expected):
    result = energy_wh(start, stop)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("start", "stop"),
    [(float("nan"), 10), (0, float("inf")), (True, 10), (0, "10"), (None, 10)],
    ids=repr,
)
def test_energy_wh_rejects_non_numbers(start, stop):
    with pytest.raises(BillingError):
        energy_wh(start, stop)


@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12))
def test_energy_wh_is_clamped_difference(start, stop):
    assert energy_wh(start, stop) == max(0, stop - start)


# --- fee ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wh", "tariff", "expected"),
    [
        (6400, "0.25", "1.60"),
        (1000, "0.25", "0.25"),
        (0, "0.25", "0.00"),
        (1005, "0.5", "0.50"),  # 0.5025 -> 0.50
        (1010, "0.5", "0.51"),  # 0.505 exactly half -> up
        (1, "5", "0.01"),  # 0.005 -> 0.01
        (1, "4.99", "0.00"),  # 0.00499 -> 0.00
        (123456, "0.3333", "41.15"),  # 41.1478848
        (10, "1", "0.01"),
        (100_000, "0", "0.00"),
    ],
)
def test_fee_rounds_half_up_to_cents(wh, tariff, expected):
    result = fee(wh, Decimal(tariff))
    assert result == Decimal(expected)
    assert str(result) == expected  # always two decimals


def test_fee_is_per_kwh_not_per_wh():
    # The seed multiplied Wh by the per-kWh tariff: 6400 * 0.25 = 1600.00, a 1000x overcharge.
    assert fee(6400, Decimal("0.25")) != Decimal("1600.00")
    assert fee(6400, Decimal("0.25")) == Decimal("1.60")


@pytest.mark.parametrize("wh", [-1, 1.5, True, "100", None], ids=repr)
def test_fee_rejects_bad_energy(wh):
    with pytest.raises(BillingError):
        fee(wh, Decimal("0.25"))


def test_fee_rejects_bad_tariff():
    with pytest.raises(InvalidTariffError):
        fee(1000, Decimal("-0.25"))
    with pytest.raises(InvalidTariffError):
        fee(1000, Decimal("NaN"))


tariffs = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
energies = st.integers(min_value=0, max_value=10**9)


def half_up_cents(wh: int, tariff: Decimal) -> Fraction:
    """Independent oracle: exact rational arithmetic, then round half up to a cent."""
    cents = Fraction(wh) * Fraction(tariff) / 1000 * 100
    return Fraction(int(cents + Fraction(1, 2)), 100)  # floor(x + 1/2) == half up for x >= 0


@given(energies, tariffs)
def test_fee_never_negative(wh, tariff):
    assert fee(wh, tariff) >= 0


@given(energies, tariffs)
def test_fee_is_energy_times_tariff_rounded_half_up(wh, tariff):
    result = fee(wh, tariff)
    assert Fraction(result) == half_up_cents(wh, tariff)
    assert result.as_tuple().exponent == -2
    assert abs(Fraction(result) - Fraction(wh) * Fraction(tariff) / 1000) <= Fraction(1, 200)


@given(energies, energies, tariffs)
def test_fee_is_monotonic_in_energy(a, b, tariff):
    low, high = sorted((a, b))
    assert fee(low, tariff) <= fee(high, tariff)


# --- choose_end_meter / settle -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "stop", "expected"),
    [
        (7400, 9000, (7400, MeterSource.METER_VALUES)),
        (7400, None, (7400, MeterSource.METER_VALUES)),
        (None, 9000, (9000, MeterSource.METER_STOP)),
        (None, None, (1000, MeterSource.METER_START)),
        (500, 9000, (500, MeterSource.METER_VALUES)),  # below meterStart: still the sample
        (0, None, (0, MeterSource.METER_VALUES)),  # 0 is a reading, not "missing"
        (None, 0, (0, MeterSource.METER_STOP)),
    ],
)
def test_choose_end_meter_prefers_sample_then_stop_then_start(sample, stop, expected):
    assert choose_end_meter(1000, latest_sample_wh=sample, meter_stop=stop) == expected


def test_settle_from_latest_sample():
    s = settle(1000, Decimal("0.25"), latest_sample_wh=7400)
    assert s == Settlement(
        end_meter_wh=7400,
        source=MeterSource.METER_VALUES,
        energy_wh=6400,
        energy_kwh=Decimal("6.400"),
        fee=Decimal("1.60"),
    )
    assert s.energy_kwh == Decimal("6.40")
    assert s.fee == Decimal("1.60")
    assert s.source is MeterSource.METER_VALUES


def test_settle_with_no_reading_bills_nothing():
    s = settle(1000, Decimal("0.25"))
    assert s.end_meter_wh == 1000
    assert s.source is MeterSource.METER_START
    assert s.energy_wh == 0
    assert s.energy_kwh == 0
    assert s.fee == Decimal("0.00")
    assert str(s.fee) == "0.00"


def test_settle_from_meter_stop():
    s = settle(1000, Decimal("0.30"), meter_stop=3500)
    assert (s.source, s.energy_wh, s.energy_kwh, s.fee) == (
        MeterSource.METER_STOP,
        2500,
        Decimal("2.5"),
        Decimal("0.75"),
    )


def test_settle_sample_below_start_clamps_energy():
    s = settle(1000, Decimal("0.25"), latest_sample_wh=400, meter_stop=5000)
    assert s.end_meter_wh == 400
    assert s.source is MeterSource.METER_VALUES
    assert s.energy_wh == 0
    assert s.fee == Decimal("0.00")


def test_settle_energy_kwh_keeps_watt_hours():
    s = settle(0, Decimal("1"), latest_sample_wh=1234)
    assert str(s.energy_kwh) == "1.234"
    assert s.fee == Decimal("1.23")


def test_settle_accepts_string_tariff_via_parse():
    assert settle(0, "0.25", meter_stop=6400).fee == Decimal("1.60")  # type: ignore[arg-type]


def test_settle_rejects_bad_tariff():
    with pytest.raises(InvalidTariffError):
        settle(0, Decimal("-1"), meter_stop=10)


def test_settlement_is_frozen():
    s = settle(0, Decimal("1"), meter_stop=10)
    with pytest.raises(AttributeError):
        s.fee = Decimal("0")  # type: ignore[misc]


@given(
    st.integers(0, 10**9),
    tariffs,
    st.none() | st.integers(0, 10**9),
    st.none() | st.integers(0, 10**9),
)
def test_settle_is_consistent(start, tariff, sample, stop):
    s = settle(start, tariff, latest_sample_wh=sample, meter_stop=stop)
    assert (s.end_meter_wh, s.source) == choose_end_meter(start, latest_sample_wh=sample, meter_stop=stop)
    assert s.energy_wh == max(0, s.end_meter_wh - start)
    assert s.energy_kwh == Decimal(s.energy_wh) / 1000
    assert s.fee == fee(s.energy_wh, tariff)
    assert s.fee >= 0
