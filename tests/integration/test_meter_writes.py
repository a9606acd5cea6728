"""Issue 15, findings 4 and 5, without timing luck: both MeterValues are queued before the writer runs.

The handlers are called directly, back to back with no checkpoint between them, so both samples
sit in the writer's latest-wins queue together, which is where the review lost them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from csms.clock import FakeClock
from csms.config import Settings
from csms.context import Context
from csms.db import ocpp_store
from csms.db.models import Transaction
from csms.ocpp.handlers import ChargePointHandlers
from csms.ocpp.registry import Registry

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def ctx(db_url, nursery):
    from csms.db.database import Database
    from csms.db.engine import make_engine
    from csms.db.schema import prepare

    engine = make_engine(db_url)
    prepare(engine)
    db = Database(engine, bulk_statements=ocpp_store.BULK_STATEMENTS)
    await nursery.start(db.run_writer)
    context = Context(settings=Settings(db_url=db_url), clock=FakeClock(NOW), db=db, registry=Registry())
    for cp_id in ("A", "B"):  # booted, wherever the CSMS keeps that
        getattr(context, "accepted_charge_points", set()).add(cp_id)
    yield context
    engine.dispose()


def _sample(wh: int, stamp: str) -> list[dict]:
    return [
        {
            "timestamp": stamp,
            "sampled_value": [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
        }
    ]


async def _open_tx(ctx: Context, cp_id: str) -> int:
    result = await ctx.db.write(lambda s: ocpp_store.start_transaction(s, cp_id, 1, "TAG", 0, NOW, NOW))
    return result.transaction_id


async def _latest(ctx: Context, tx: int) -> tuple[int | None, datetime | None]:
    await ctx.db.write(lambda s: None)  # everything queued before this is committed
    row = await ctx.db.read(lambda s: s.get(Transaction, tx))
    return row.latest_meter_wh, row.meter_seen_at


async def test_a_foreign_sample_queued_with_the_owners_cannot_displace_it(ctx):
    tx = await _open_tx(ctx, "A")
    a, b = ChargePointHandlers(ctx, "A"), ChargePointHandlers(ctx, "B")
    a.on_meter_values(connector_id=1, meter_value=_sample(9_000, "2026-01-01T12:00:00Z"), transaction_id=tx)
    b.on_meter_values(connector_id=1, meter_value=_sample(5_000, "2026-01-01T12:00:01Z"), transaction_id=tx)
    assert (await _latest(ctx, tx))[0] == 9_000


async def test_a_foreign_sample_of_a_known_transaction_never_enters_the_queue(ctx):
    tx = await _open_tx(ctx, "A")
    ctx.transaction_owners[tx] = "A"
    queued = ctx.db.queued
    ChargePointHandlers(ctx, "B").on_meter_values(
        connector_id=1, meter_value=_sample(5_000, "2026-01-01T12:00:01Z"), transaction_id=tx
    )
    assert ctx.db.queued == queued


async def test_a_buffered_older_sample_queued_after_a_newer_one_is_dropped(ctx):
    tx = await _open_tx(ctx, "A")
    a = ChargePointHandlers(ctx, "A")
    a.on_meter_values(connector_id=1, meter_value=_sample(9_000, "2026-01-01T12:10:00Z"), transaction_id=tx)
    a.on_meter_values(connector_id=1, meter_value=_sample(3_000, "2026-01-01T12:00:00Z"), transaction_id=tx)
    wh, seen = await _latest(ctx, tx)
    assert wh == 9_000 and seen is not None
    # ... and once stored, a later-arriving older one changes the value no more (but counts as activity).
    ctx.clock.advance(seconds=30)
    a.on_meter_values(connector_id=1, meter_value=_sample(4_000, "2026-01-01T12:05:00Z"), transaction_id=tx)
    wh, seen_again = await _latest(ctx, tx)
    assert wh == 9_000 and seen_again.replace(tzinfo=UTC) > seen.replace(tzinfo=UTC)
