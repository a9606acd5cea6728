"""Time values as OCPP and the database hand them over: UTC, ISO 8601, and a StopTransaction's trusted time.

Pure: nothing here reads a clock (the injectable one is `csms.clock`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["utc", "as_utc", "iso", "parse_iso", "stop_time"]


def utc(value: datetime) -> datetime:
    """Databases (SQLite) hand back naive datetimes: they are UTC here."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: None) -> None: ...


@overload
def as_utc(value: datetime | None) -> datetime | None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """`utc`, passing None through (a column that may be empty)."""
    return None if value is None else utc(value)


@overload
def iso(value: datetime) -> str: ...


@overload
def iso(value: None) -> None: ...


@overload
def iso(value: datetime | None) -> str | None: ...


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, as OCPP and the REST API write timestamps."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    """Parse an OCPP timestamp; None when absent or unparseable."""
    if not text:
        return None
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        return None


def stop_time(stamped: datetime | None, *, started: datetime, received: datetime) -> tuple[datetime, bool]:
    """When a transaction ended, from its StopTransaction: (time, whether the charger's clock was overruled).

    The charger's stamp is kept when it is not before the transaction's start (also from the
    charger's clock, so the two agree with each other however far off that clock is). A stop
    stamped before its start, or not at all, says the charger's clock jumped: we use when we
    received it, never earlier than the start, so no transaction ends before it began.
    """
    started = as_utc(started)
    if stamped is not None and as_utc(stamped) >= started:
        return as_utc(stamped), False
    return max(as_utc(received), started), stamped is not None
