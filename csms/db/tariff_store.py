"""The site's tariffs (table site_tariffs): read for every start, written by admins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.core.times import as_utc
from csms.db.audit import audit
from csms.db.models import SiteTariff, Station

__all__ = ["TariffRow", "station_tariffs", "list_tariffs", "set_tariff"]


@dataclass(frozen=True)
class TariffRow:
    station_id: str
    connector_id: int  # 0: the whole station
    tariff: Decimal
    updated_at: datetime
    updated_by: str


def station_tariffs(s: Session, station_id: str) -> dict[int, Decimal]:
    """Connector id -> tariff of one station (0: the station's own)."""
    rows = s.execute(select(SiteTariff.connector_id, SiteTariff.tariff).where(SiteTariff.station_id == station_id))
    return {connector: tariff for connector, tariff in rows}


def list_tariffs(s: Session) -> list[TariffRow]:
    rows = s.scalars(select(SiteTariff).order_by(SiteTariff.station_id, SiteTariff.connector_id))
    return [TariffRow(r.station_id, r.connector_id, r.tariff, as_utc(r.updated_at), r.updated_by) for r in rows]


def set_tariff(
    s: Session, station_id: str, connector_id: int, tariff: Decimal | None, *, actor: str, now: datetime
) -> bool | None:
    """Set (or, with None, remove) a tariff, audited. None when the station does not exist; else whether a
    tariff was there before."""
    if s.get(Station, station_id) is None:
        return None
    row = s.get(SiteTariff, (station_id, connector_id))
    existed = row is not None
    old = None if row is None else str(row.tariff)
    if tariff is None:
        if row is not None:
            s.delete(row)
    elif row is None:
        s.add(
            SiteTariff(
                station_id=station_id, connector_id=connector_id, tariff=tariff, updated_at=now, updated_by=actor
            )
        )
    else:
        row.tariff, row.updated_at, row.updated_by = tariff, now, actor
    audit(
        s,
        actor=actor,
        action="tariff.set" if tariff is not None else "tariff.removed",
        at=now,
        connector_id=connector_id,
        subject=station_id,
        tariff=None if tariff is None else str(tariff),
        previous=old,
    )
    return existed
