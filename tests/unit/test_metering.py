"""Reading the energy register out of wire-format OCPP 1.6 meterValue lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.core.metering import ENERGY_REGISTER, latest_energy_register_wh

T1 = "2024-05-01T12:00:00Z"
T2 = "2024-05-01T12:01:00Z"
T3 = "2024-05-01T12:02:00Z"


def sv(value, **fields):
    """One sampledValue as a charger sends it (camelCase, value as a string)."""
    return {"value": value, **fields}


def entry(timestamp, *samples):
    return {"timestamp": timestamp, "sampledValue": list(samples)}


def test_typical_meter_values_message():
    meter_value = [
        entry(
            T1,
            sv(
                "7400",
                measurand=ENERGY_REGISTER,
                unit="Wh",
                context="Sample.Periodic",
                location="Outlet",
            ),
            sv("11000", measurand="Power.Active.Import", unit="W"),
            sv("16.0", measurand="Current.Import", unit="A", phase="L1"),
        )
    ]
    assert latest_energy_register_wh(meter_value) == 7400


def test_measurand_absent_means_energy_register():
    assert latest_energy_register_wh([entry(T1, sv("1234"))]) == 1234


def test_unit_absent_means_wh():
    assert latest_energy_register_wh([entry(T1, sv("1234", measurand=ENERGY_REGISTER))]) == 1234


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("7.4", "kWh", 7400),
        ("7.4005", "kWh", 7401),  # nearest Wh, half up
        ("7.4004", "kWh", 7400),
        ("0", "kWh", 0),
        ("7400", "Wh", 7400),
        ("7400.5", "Wh", 7401),
        ("7400.4", "Wh", 7400),
        ("7.4", "kwh", 7400),  # chargers are sloppy about case
        ("7400", "WH", 7400),
        ("1e3", "Wh", 1000),
        (" 7400 ", "Wh", 7400),
    ],
)
def test_units_and_rounding(value, unit, expected):
    assert latest_energy_register_wh([entry(T1, sv(value, unit=unit))]) == expected


@pytest.mark.parametrize("unit", ["W", "A", "varh", "Celsius", "Percent", 1000])
def test_non_energy_units_are_ignored(unit):
    assert latest_energy_register_wh([entry(T1, sv("7400", unit=unit))]) is None


def test_numeric_values_are_accepted_even_though_the_spec_says_string():
    assert latest_energy_register_wh([entry(T1, sv(7400))]) == 7400
    assert latest_energy_register_wh([entry(T1, sv(7.4, unit="kWh"))]) == 7400
    assert latest_energy_register_wh([entry(T1, sv(0.1, unit="kWh"))]) == 100


@pytest.mark.parametrize(
    "value",
    ["", "abc", "7,400", "NaN", "Infinity", "-inf", None, True, [7400], {"v": 1}, "1e30"],
    ids=repr,
)
def test_non_numbers_are_ignored(value):
    assert latest_energy_register_wh([entry(T1, sv(value))]) is None


def test_non_number_does_not_hide_a_good_sample_in_the_same_entry():
    assert latest_energy_register_wh([entry(T1, sv("1200"), sv("garbage"))]) == 1200


def test_signed_data_is_not_a_reading():
    samples = entry(T1, sv("1234", format="SignedData"))
    assert latest_energy_register_wh([samples]) is None
    assert latest_energy_register_wh([entry(T1, sv("1234", format="Raw"))]) == 1234


def test_total_wins_over_phases():
    meter_value = [
        entry(
            T1,
            sv("2000", phase="L1"),
            sv("6000"),
            sv("2000", phase="L2"),
            sv("2000", phase="L3"),
        )
    ]
    assert latest_energy_register_wh(meter_value) == 6000


def test_only_phased_samples_give_nothing():
    meter_value = [entry(T1, sv("2000", phase="L1"), sv("2100", phase="L2"), sv("1900", phase="L3-N"))]
    assert latest_energy_register_wh(meter_value) is None


def test_phased_only_latest_entry_falls_back_to_earlier_total():
    meter_value = [entry(T1, sv("5000")), entry(T2, sv("2000", phase="L1"))]
    assert latest_energy_register_wh(meter_value) == 5000


def test_other_measurands_are_ignored():
    meter_value = [
        entry(
            T1,
            sv("11000", measurand="Power.Active.Import", unit="W"),
            sv("500", measurand="Energy.Active.Export.Register", unit="Wh"),
            sv("800", measurand="Energy.Active.Import.Interval", unit="Wh"),
            sv("42", measurand="SoC", unit="Percent"),
        )
    ]
    assert latest_energy_register_wh(meter_value) is None


def test_latest_timestamp_wins_regardless_of_list_order():
    meter_value = [entry(T3, sv("9000")), entry(T1, sv("1000")), entry(T2, sv("5000"))]
    assert latest_energy_register_wh(meter_value) == 9000


def test_timestamps_compare_as_instants_across_offsets():
    meter_value = [
        entry("2024-05-01T14:30:00+02:00", sv("9000")),  # 12:30Z
        entry("2024-05-01T12:10:00Z", sv("5000")),
    ]
    assert latest_energy_register_wh(meter_value) == 9000


def test_naive_timestamps_are_utc():
    meter_value = [
        entry("2024-05-01T12:30:00", sv("9000")),
        entry("2024-05-01T14:00:00+02:00", sv("5000")),
    ]
    assert latest_energy_register_wh(meter_value) == 9000


def test_fractional_seconds_are_understood():
    meter_value = [
        entry("2024-05-01T12:00:00.900Z", sv("9000")),
        entry("2024-05-01T12:00:00.100Z", sv("5000")),
    ]
    assert latest_energy_register_wh(meter_value) == 9000


def test_equal_timestamps_last_in_list_wins():
    assert latest_energy_register_wh([entry(T1, sv("1000")), entry(T1, sv("2000"))]) == 2000


def test_unparseable_timestamps_last_in_list_wins():
    meter_value = [
        entry("yesterday", sv("1000")),
        entry(None, sv("3000")),
        {"sampledValue": [sv("2000")]},
    ]
    assert latest_energy_register_wh(meter_value) == 2000


def test_timestamped_entry_beats_unparseable_one():
    meter_value = [entry(T1, sv("1000")), entry("garbage", sv("3000"))]
    assert latest_energy_register_wh(meter_value) == 1000


def test_latest_entry_without_register_does_not_hide_earlier_reading():
    meter_value = [
        entry(T1, sv("5000")),
        entry(T2, sv("11000", measurand="Power.Active.Import", unit="W")),
    ]
    assert latest_energy_register_wh(meter_value) == 5000


def test_last_usable_sample_in_an_entry_wins():
    assert latest_energy_register_wh([entry(T1, sv("1000"), sv("1001"))]) == 1001


def test_stop_transaction_data_with_begin_and_end_contexts():
    transaction_data = [
        entry(T1, sv("1000", context="Transaction.Begin", measurand=ENERGY_REGISTER, unit="Wh")),
        entry(T3, sv("7.4", context="Transaction.End", measurand=ENERGY_REGISTER, unit="kWh")),
    ]
    assert latest_energy_register_wh(transaction_data) == 7400


def test_null_optional_fields_mean_their_defaults():
    sample = {"value": "1234", "measurand": None, "unit": None, "phase": None, "format": None}
    assert latest_energy_register_wh([entry(T1, sample)]) == 1234


def test_negative_register_is_passed_through_for_billing_to_clamp():
    assert latest_energy_register_wh([entry(T1, sv("-5"))]) == -5


@pytest.mark.parametrize(
    "meter_value",
    [
        [],
        None,
        [{}],
        [{"timestamp": T1}],
        [{"timestamp": T1, "sampledValue": []}],
        [{"timestamp": T1, "sampledValue": None}],
        [{"timestamp": T1, "sampledValue": "7400"}],
        [{"timestamp": T1, "sampledValue": [None, 7400, "7400"]}],
        [{"timestamp": T1, "sampledValue": [{"measurand": ENERGY_REGISTER}]}],
        ["not an entry", 42, None],
    ],
    ids=repr,
)
def test_no_usable_sample_gives_none(meter_value):
    assert latest_energy_register_wh(meter_value) is None


def test_broken_entries_do_not_hide_good_ones():
    meter_value = ["junk", entry(T1, sv("4000")), {"sampledValue": "x"}, None]
    assert latest_energy_register_wh(meter_value) == 4000


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**9)),  # (seconds offset, Wh)
        min_size=1,
        max_size=8,
    )
)
def test_property_picks_the_reading_of_the_latest_timestamp(readings):
    meter_value = [entry(_stamp(s), sv(str(wh))) for s, wh in readings]
    latest = max(s for s, _ in readings)
    expected = [wh for s, wh in readings if s == latest][-1]
    assert latest_energy_register_wh(meter_value) == expected


def _stamp(seconds: int) -> str:
    return (datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat()


@given(st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False))
def test_property_kwh_and_wh_agree(kwh):
    from_kwh = latest_energy_register_wh([entry(T1, sv(str(kwh), unit="kWh"))])
    from_wh = latest_energy_register_wh([entry(T1, sv(str(kwh * 1000), unit="Wh"))])
    assert from_kwh == from_wh == int(kwh * 1000)
    assert isinstance(from_kwh, int)


@given(st.integers(0, 10**12))
def test_property_integer_wh_round_trips(wh):
    assert latest_energy_register_wh([entry(T1, sv(str(wh)))]) == wh
    assert latest_energy_register_wh([entry(T1, sv(str(Decimal(wh) / 1000), unit="kWh"))]) == wh
