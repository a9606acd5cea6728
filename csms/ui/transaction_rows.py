"""The transactions list's filters, its rows' numbers and its CSV export. Pure: no request, no database, no clock.

Id tags and charge point ids come from chargers, so a CSV cell starting with = + - @ (or a tab or a
carriage return) is prefixed with ' : a spreadsheet would otherwise run it as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from urllib.parse import urlencode

from csms.core.times import iso
from csms.db.transaction_store import TransactionRecord

__all__ = [
    "TxFilter",
    "parse_filter",
    "energy_wh",
    "kwh",
    "safe_cell",
    "CSV_HEADER",
    "csv_row",
    "csv_text",
    "csv_filename",
]

STATES = ("open", "closed")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class TxFilter:
    """What the list shows: a charge point id prefix, an id tag, a start date range (days in the site's zone),
    state, reason."""

    cp: str = ""
    tag: str = ""
    since: date | None = None
    until: date | None = None  # inclusive
    state: str = ""  # "", "open" or "closed"
    reason: str = ""
    before: int | None = None  # paging: only transactions with a lower id
    zone: tzinfo = UTC  # the site's: a day starts at its midnight

    @property
    def start_from(self) -> datetime | None:
        return None if self.since is None else datetime.combine(self.since, time(), self.zone).astimezone(UTC)

    @property
    def start_below(self) -> datetime | None:
        return (
            None
            if self.until is None
            else datetime.combine(self.until + timedelta(days=1), time(), self.zone).astimezone(UTC)
        )

    @property
    def active(self) -> bool:
        return any((self.cp, self.tag, self.since, self.until, self.state, self.reason))

    def query(self, **extra: str | int | None) -> str:
        """The filters (and `extra`) as a query string, empty ones left out: links keep what is shown."""
        pairs = {
            "cp": self.cp,
            "tag": self.tag,
            "from": "" if self.since is None else self.since.isoformat(),
            "to": "" if self.until is None else self.until.isoformat(),
            "state": self.state,
            "reason": self.reason,
            **{k: "" if v is None else str(v) for k, v in extra.items()},
        }
        return urlencode({k: v for k, v in pairs.items() if v})

    def older(self, last_id: int) -> TxFilter:
        return replace(self, before=last_id)


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat((text or "").strip()) if text and text.strip() else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def parse_filter(params: Mapping[str, str], zone: tzinfo = UTC) -> TxFilter:
    """The filters from a query string; what cannot be read is left out (a bad date filters nothing)."""
    state = (params.get("state") or "").strip().lower()
    return TxFilter(
        cp=(params.get("cp") or "").strip()[:64],
        tag=(params.get("tag") or "").strip()[:32],
        since=_date(params.get("from")),
        until=_date(params.get("to")),
        state=state if state in STATES else "",
        reason=(params.get("reason") or "").strip()[:32],
        before=_int(params.get("before")),
        zone=zone,
    )


def energy_wh(t: TransactionRecord) -> int | None:
    """Delivered so far: meterStop (closed) or the latest sample (open) minus meterStart; None before a sample."""
    end = t.meter_stop if t.stop_time is not None and t.meter_stop is not None else t.latest_meter_wh
    return None if end is None else max(0, end - t.meter_start)


def kwh(wh: int | None) -> str:
    return "" if wh is None else f"{Decimal(wh) / 1000:.3f}"


def fee(t: TransactionRecord) -> str:
    return "" if t.session is None or t.session.fee is None else str(t.session.fee)


def safe_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting with a formula character gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_HEADER = (
    "transaction_id",
    "station_transaction_id",
    "charge_point_id",
    "connector_id",
    "id_tag",
    "start_time_utc",
    "stop_time_utc",
    "meter_start_wh",
    "meter_stop_wh",
    "energy_wh",
    "energy_kwh",
    "fee",
    "tariff",
    "session_id",
    "session_status",
    "stop_reason",
)


def csv_row(t: TransactionRecord) -> list[str]:
    wh = energy_wh(t)
    cs = t.session
    cells: list[object] = [
        t.transaction_id,
        t.station_tx_id,
        t.charge_point_id,
        t.connector_id,
        t.id_tag,
        iso(t.start_time),
        iso(t.stop_time),
        t.meter_start,
        t.meter_stop,
        wh,
        kwh(wh),
        fee(t),
        None if cs is None else cs.tariff,
        None if cs is None else cs.session_id,
        None if cs is None else cs.status,
        t.stop_reason,
    ]
    return [safe_cell(c) for c in cells]


def csv_text(records: Iterable[TransactionRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(csv_row(t) for t in records)
    return out.getvalue()


def csv_filename(today: date) -> str:
    return f"transactions-{today:%Y%m%d}.csv"
