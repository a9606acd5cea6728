"""Direct database access for tests: plant stale rows, read what the CSMS stored."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

T = TypeVar("T")


def with_db(url: str, fn: Callable[[Session], T]) -> T:
    engine = create_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as s, s.begin():
            return fn(s)
    finally:
        engine.dispose()


def plant_stuck_session(
    url: str,
    cp_id: str,
    connector_id: int,
    *,
    meter_start: int = 1000,
    latest_wh: int | None = None,
    tariff: str = "0.25",
    id_tag: str = "STUCK",
) -> tuple[str, int]:
    """A session whose StopTransaction never came: an open transaction linked to an unended session."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from csms.db.models import ChargingSession, Transaction

    now = datetime.now(UTC)

    def work(s: Session) -> tuple[str, int]:
        tx = Transaction(
            charge_point_id=cp_id,
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start=meter_start,
            start_time=now,
            latest_meter_wh=latest_wh,
        )
        s.add(tx)
        s.flush()
        cs = ChargingSession(
            station_id=cp_id,
            charge_point_id=cp_id,
            connector_id=connector_id,
            id_tag=id_tag,
            tariff=Decimal(tariff),
            status="Charging",
            transaction_id=tx.id,
            created_at=now,
            start_time=now,
            meter_start=meter_start,
            updated_at=now,
        )
        s.add(cs)
        s.flush()
        return cs.id, tx.id

    return with_db(url, work)


@contextmanager
def writes_held(db_url: str) -> Iterator[None]:
    """Hold the database's write lock (readers go on): the server's commits wait meanwhile."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(db_url).database, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
        finally:
            conn.close()  # rolls back
        return
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            with conn.begin():
                conn.execute(text("LOCK TABLE transactions, connector_statuses IN EXCLUSIVE MODE"))
                yield
    finally:
        engine.dispose()
