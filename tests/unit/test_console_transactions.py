"""The console's transactions pages, pure parts: sample thinning, power, filters, CSV (formula injection), chart."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from csms.core.meter_samples import keep_sample, power_w, remember, window
from csms.db.transaction_store import LinkedSession, TransactionRecord
from csms.ui.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, energy_chart, nice_ceiling, series
from csms.ui.transaction_rows import CSV_HEADER, csv_filename, csv_row, csv_text, energy_wh, parse_filter, safe_cell

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(seconds=60)
MIDNIGHT = datetime(2026, 3, 1, tzinfo=UTC)


# ------------------------------------------------------------------ thinning
def test_the_first_sample_is_kept_then_one_a_minute():
    kept: list[datetime] = []
    for second in range(0, 300, 7):
        at = T0 + timedelta(seconds=second)
        if keep_sample(kept[-1] if kept else None, at, MINUTE):
            kept.append(at)
    assert [(k - T0).seconds for k in kept] == [0, 63, 126, 189, 252]


def test_zero_keeps_none_and_an_older_buffered_sample_is_not_kept():
    assert not keep_sample(None, T0, timedelta(0))
    assert not keep_sample(T0, T0 - timedelta(minutes=5), MINUTE)
    assert keep_sample(T0, T0 + MINUTE, MINUTE)


def test_the_sql_window_is_open_on_both_sides():
    assert window(T0, MINUTE) == (T0 - MINUTE, T0 + MINUTE)


def test_remember_forgets_the_oldest_beyond_its_cap():
    kept: dict[int, datetime] = {}
    for tx in range(5):
        remember(kept, tx, T0, cap=3)
    remember(kept, 2, T0 + MINUTE, cap=3)
    assert list(kept) == [3, 4, 2] and kept[2] == T0 + MINUTE


def test_power_is_read_from_the_registers_entry_in_w_or_kw():
    entries = [
        {
            "timestamp": "2026-03-01T12:00:00Z",
            "sampledValue": [
                {"value": "1000", "measurand": "Energy.Active.Import.Register"},
                {"value": "3.5", "measurand": "Power.Active.Import", "unit": "kW"},
                {"value": "1200", "measurand": "Power.Active.Import", "unit": "W", "phase": "L1"},
            ],
        },
        {"timestamp": "2026-03-01T11:59:00Z", "sampledValue": [{"value": "99", "measurand": "Power.Active.Import"}]},
    ]
    assert power_w(entries, T0) == 3500
    assert power_w(entries, T0 - MINUTE) == 99
    assert power_w(entries, T0 + MINUTE) is None
    # A stamp before the first representable instant is unreadable, not a crash of the charger's message.
    odd = [
        {"timestamp": "0001-01-01T00:00:00+01:00", "sampledValue": [{"value": "5", "measurand": "Power.Active.Import"}]}
    ]
    assert power_w(odd + entries, T0) == 3500
    uom = [
        {
            "timestamp": None,
            "sampledValue": [
                {"value": 7, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W", "multiplier": 3}}
            ],
        }
    ]
    assert power_w(uom, None) == 7000
    assert (
        power_w([{"timestamp": None, "sampledValue": [{"value": "x", "measurand": "Power.Active.Import"}]}], None)
        is None
    )


# ------------------------------------------------------------------ filters and CSV
def _record(**kw) -> TransactionRecord:
    base = dict(
        transaction_id=7,
        charge_point_id="CP-1",
        connector_id=1,
        id_tag="TAG",
        meter_start=1000,
        meter_stop=4500,
        start_time=T0,
        stop_time=T0 + timedelta(hours=1),
        stop_reason="Local",
        latest_meter_wh=4400,
        latest_meter_at=T0 + timedelta(minutes=59),
        session=LinkedSession("s-1", "Completed", Decimal("0.30"), 3500, Decimal("1.05"), "stop", False, "Stopped"),
    )
    return TransactionRecord(**{**base, **kw})


def test_filters_are_read_leniently_and_carried_in_links():
    f = parse_filter(
        {"cp": " CP-", "tag": "abc", "from": "2026-03-01", "to": "nonsense", "state": "OPEN", "before": "9"}
    )
    assert (f.cp, f.tag, f.since, f.until, f.state, f.before) == ("CP-", "abc", date(2026, 3, 1), None, "open", 9)
    assert f.start_from == MIDNIGHT and f.start_below is None and f.active
    assert f.query(format="csv") == "cp=CP-&tag=abc&from=2026-03-01&state=open&format=csv"
    assert parse_filter({"to": "2026-03-01"}).start_below == MIDNIGHT + timedelta(days=1)
    assert parse_filter({"state": "weird"}).state == "" and not parse_filter({}).active


def test_energy_is_stop_minus_start_or_the_latest_sample_while_open():
    assert energy_wh(_record()) == 3500
    assert energy_wh(_record(stop_time=None, meter_stop=None)) == 3400
    assert energy_wh(_record(stop_time=None, meter_stop=None, latest_meter_wh=None)) is None
    assert energy_wh(_record(meter_stop=10)) == 0  # a replaced meter: never negative


@pytest.mark.parametrize("text", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_cells_a_spreadsheet_would_run_are_quoted(text):
    assert safe_cell(text) == "'" + text


def test_plain_cells_stay_as_they_are():
    assert safe_cell("CP-1") == "CP-1" and safe_cell(None) == "" and safe_cell(12) == "12"


def test_a_csv_row_has_both_units_the_fee_and_iso_utc_times():
    row = dict(zip(CSV_HEADER, csv_row(_record(id_tag="=cmd|'/c calc'!A1", station_tx_id="st-9")), strict=True))
    assert row["id_tag"] == "'=cmd|'/c calc'!A1"
    assert row["energy_wh"] == "3500" and row["energy_kwh"] == "3.500" and row["fee"] == "1.05"
    assert row["start_time_utc"] == "2026-03-01T12:00:00Z" and row["stop_time_utc"] == "2026-03-01T13:00:00Z"
    assert row["station_transaction_id"] == "st-9" and row["session_id"] == "s-1" and row["tariff"] == "0.30"


def test_the_csv_parses_back_with_a_header_and_an_open_transaction_has_empty_cells():
    text = csv_text([_record(), _record(transaction_id=8, stop_time=None, meter_stop=None, session=None)])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_HEADER) and len(rows) == 3
    open_row = dict(zip(CSV_HEADER, rows[2], strict=True))
    assert open_row["stop_time_utc"] == "" and open_row["fee"] == "" and open_row["energy_wh"] == "3400"
    assert csv_filename(date(2026, 3, 1)) == "transactions-20260301.csv"


# ------------------------------------------------------------------ chart
def test_series_starts_at_meter_start_and_ends_with_latest_then_stop():
    samples = [(T0 + MINUTE, 1500, 7000), (T0 + 2 * MINUTE, 2000, None)]
    points = series(T0, 1000, samples, (T0 + 3 * MINUTE, 2600), (T0 + 4 * MINUTE, 3000))
    assert [p.source for p in points] == ["start", "sample", "sample", "latest", "stop"]
    assert [p.kwh for p in points] == [0.0, 0.5, 1.0, 1.6, 2.0] and points[1].w == 7000


def test_series_leaves_out_a_latest_or_stop_not_after_the_last_sample():
    points = series(T0, 1000, [(T0 + MINUTE, 1500, None)], (T0 + MINUTE, 1500), (T0 + MINUTE, 1500))
    assert [p.source for p in points] == ["start", "sample"]


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (0.3, 0.5), (1, 1), (1.2, 2), (2.1, 2.5), (3, 5), (7, 10), (42, 50)]
)
def test_the_energy_axis_ends_on_a_round_number(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_the_chart_scales_time_and_energy_into_the_plot_area():
    points = series(T0, 0, [(T0 + MINUTE, 1000, None)], None, (T0 + 2 * MINUTE, 2000))
    chart = energy_chart(points)
    (x0, y0), (x1, y1), (x2, y2) = chart.points
    assert (x0, y0) == (LEFT, HEIGHT - BOTTOM)  # 0 kWh at the start: bottom left
    assert (x2, y2) == (WIDTH - RIGHT, TOP)  # 2 kWh, the axis top, at the end: top right
    assert x1 == pytest.approx((LEFT + WIDTH - RIGHT) / 2, abs=0.1) and y1 == pytest.approx(
        (TOP + HEIGHT - BOTTOM) / 2, abs=0.1
    )
    assert [t.label for t in chart.y_ticks] == ["0", "0.5", "1", "1.5", "2"]
    assert chart.x_ticks[0].label == "12:00:00" and chart.x_ticks[-1].label == "12:02:00" and len(chart.x_ticks) == 5
    assert chart.polyline.count(",") == 3 and "3 readings" in chart.description


def test_an_empty_chart_and_a_one_point_chart_draw_safely():
    assert energy_chart([]).empty and energy_chart([]).polyline == ""
    one = energy_chart(series(T0, 500, [], None, None))
    assert one.points == (((LEFT + WIDTH - RIGHT) / 2, HEIGHT - BOTTOM),) and len(one.x_ticks) == 1
    assert one.y_ticks[-1].label == "1"  # nothing delivered: the axis still goes up to 1 kWh


def test_a_chart_over_midnight_labels_dates():
    points = series(T0 - timedelta(hours=13), 0, [], None, (T0, 5000))
    assert energy_chart(points).x_ticks[0].label == "2026-02-28 23:00:00"


def test_a_chart_of_a_few_seconds_has_no_repeated_time_labels_and_small_energies_read_apart():
    points = series(T0, 0, [(T0 + timedelta(seconds=1), 4, None), (T0 + timedelta(seconds=2), 8, None)], None, None)
    chart = energy_chart(points)
    labels = [t.label for t in chart.x_ticks]
    assert labels == ["12:00:00", "12:00:01", "12:00:02"]
    assert [t.label for t in chart.y_ticks] == ["0", "0.0025", "0.005", "0.0075", "0.01"]


def test_date_filters_start_at_the_sites_midnight():
    from zoneinfo import ZoneInfo

    berlin = parse_filter({"from": "2026-03-01", "to": "2026-03-01"}, ZoneInfo("Europe/Berlin"))
    assert berlin.start_from == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)  # 00:00 CET
    assert berlin.start_below == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    assert parse_filter({"from": "2026-03-01"}).start_from == datetime(2026, 3, 1, tzinfo=UTC)
