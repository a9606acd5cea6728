"""Kept energy samples for the console's chart: stored behind 1.6 MeterValues and 2.0.1 TransactionEvents, thinned.

The handlers are called directly on a real database (SQLite, and PostgreSQL when CSMS_TEST_POSTGRES_URL is
set): what reaches `meter_samples` is what the writer stored, after the in-memory and the SQL thinning.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.clock import FakeClock
from csms.config import Settings
from csms.context import Context
from csms.db import event_store, meter_sample_store, ocpp_store
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
    settings = Settings(db_url=db_url, meter_sample_seconds=60)
    context = Context(settings=settings, clock=FakeClock(NOW), db=db, registry=Registry())
    context.accepted_charge_points.add("A")
    yield context
    engine.dispose()


def _values(wh: int, at: datetime, w: str | None = None) -> list[dict]:
    sampled = [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    if w is not None:
        sampled.append({"value": w, "measurand": "Power.Active.Import", "unit": "kW"})
    return [{"timestamp": at.isoformat(), "sampled_value": sampled}]


async def _samples(ctx: Context, tx: int) -> list[meter_sample_store.Sample]:
    await ctx.db.write(lambda s: None)  # everything queued before this is committed
    return await ctx.db.read(lambda s: meter_sample_store.samples_of(s, tx))


async def test_16_meter_values_keep_one_sample_a_minute_with_its_power(ctx):
    started = await ctx.db.write(lambda s: ocpp_store.start_transaction(s, "A", 1, "TAG", 0, NOW, NOW))
    tx = started.transaction_id
    a = ChargePointHandlers(ctx, "A")
    for second in range(0, 181, 10):  # a sample every 10 s for 3 minutes
        a.on_meter_values(
            connector_id=1, meter_value=_values(second * 10, NOW + timedelta(seconds=second), "7.2"), transaction_id=tx
        )
        await ctx.db.write(lambda s: None)
    kept = await _samples(ctx, tx)
    assert [k.at - NOW for k in kept] == [timedelta(seconds=s) for s in (0, 60, 120, 180)]
    assert [k.wh for k in kept] == [0, 600, 1200, 1800] and {k.w for k in kept} == {7200}
    # The latest sample stays on the transaction itself (what the chart ends with).
    row = await ctx.db.read(lambda s: s.get(Transaction, tx))
    assert row.latest_meter_wh == 1800


async def test_16_a_new_connection_cannot_crowd_the_table(ctx):
    """In-memory thinning is per connection; the SQL guard holds across reconnects and restarts."""
    tx = (await ctx.db.write(lambda s: ocpp_store.start_transaction(s, "A", 1, "TAG", 0, NOW, NOW))).transaction_id
    ChargePointHandlers(ctx, "A").on_meter_values(connector_id=1, meter_value=_values(10, NOW), transaction_id=tx)
    await ctx.db.write(lambda s: None)
    ChargePointHandlers(ctx, "A").on_meter_values(
        connector_id=1, meter_value=_values(20, NOW + timedelta(seconds=5)), transaction_id=tx
    )
    assert [k.wh for k in await _samples(ctx, tx)] == [10]


async def test_16_no_sample_for_another_chargers_transaction_and_none_when_off(ctx):
    tx = (await ctx.db.write(lambda s: ocpp_store.start_transaction(s, "A", 1, "TAG", 0, NOW, NOW))).transaction_id
    ctx.accepted_charge_points.add("B")
    ChargePointHandlers(ctx, "B").on_meter_values(connector_id=1, meter_value=_values(10, NOW), transaction_id=tx)
    assert await _samples(ctx, tx) == []
    off = Context(
        settings=Settings(db_url="x", meter_sample_seconds=0), clock=ctx.clock, db=ctx.db, registry=ctx.registry
    )
    off.accepted_charge_points.add("A")
    ChargePointHandlers(off, "A").on_meter_values(connector_id=1, meter_value=_values(10, NOW), transaction_id=tx)
    assert await _samples(ctx, tx) == []


async def test_201_transaction_events_keep_thinned_samples(ctx):
    def event(kind: str, seq: int, wh: int, second: int) -> event_store.Event:
        at = NOW + timedelta(seconds=second)
        return event_store.Event(
            event_type=kind,
            station_tx_id="st-1",
            seq_no=seq,
            timestamp=at,
            evse_id=1,
            id_tag="TAG",
            begin_wh=wh if kind == "Started" else None,
            end_wh=wh if kind == "Ended" else None,
            latest_wh=wh,
            latest_at=at,
            latest_w=11000,
        )

    every = timedelta(seconds=60)

    def apply(e: event_store.Event):
        return lambda s: event_store.apply_event(
            s, "A", e, now=NOW, fallback_connector=1, revive_within=None, settle_delay=timedelta(0), sample_every=every
        )

    first = await ctx.db.write(apply(event("Started", 0, 1000, 0)))
    for seq, second in enumerate(range(15, 151, 15), start=1):
        await ctx.db.write(apply(event("Updated", seq, 1000 + second, second)))
    await ctx.db.write(apply(event("Ended", 99, 1200, 160)))
    kept = await _samples(ctx, first.transaction_id)
    assert [k.at - NOW for k in kept] == [timedelta(seconds=s) for s in (0, 60, 120)]
    assert [k.wh for k in kept] == [1000, 1060, 1120] and {k.w for k in kept} == {11000}


async def test_samples_of_long_closed_transactions_are_pruned(ctx):
    old = (await ctx.db.write(lambda s: ocpp_store.start_transaction(s, "A", 1, "OLD", 0, NOW, NOW))).transaction_id
    ChargePointHandlers(ctx, "A").on_meter_values(connector_id=1, meter_value=_values(10, NOW), transaction_id=old)
    await ctx.db.write(lambda s: None)
    await ctx.db.write(
        lambda s: ocpp_store.stop_transaction(s, old, cp_id="A", meter_stop=20, stop_time=NOW, reason="Local", now=NOW)
    )
    new = (await ctx.db.write(lambda s: ocpp_store.start_transaction(s, "A", 2, "NEW", 0, NOW, NOW))).transaction_id
    ChargePointHandlers(ctx, "A").on_meter_values(connector_id=2, meter_value=_values(10, NOW), transaction_id=new)
    await ctx.db.write(lambda s: None)
    assert await ctx.db.write(lambda s: meter_sample_store.prune_samples(s, NOW - timedelta(days=1))) == 0
    assert await ctx.db.write(lambda s: meter_sample_store.prune_samples(s, NOW + timedelta(seconds=1))) == 1
    assert await _samples(ctx, old) == [] and len(await _samples(ctx, new)) == 1


async def test_201_a_transaction_id_reused_after_its_end_starts_anew_on_every_database(ctx):
    """SQLite gives stop times back without a zone: the reuse check must compare them as UTC all the same."""

    def event(kind: str, second: int) -> event_store.Event:
        at = NOW + timedelta(seconds=second)
        return event_store.Event(
            event_type=kind,
            station_tx_id="st-reused",
            seq_no=0 if kind == "Started" else 1,
            timestamp=at,
            evse_id=1,
            id_tag="TAG",
            begin_wh=1000 if kind == "Started" else None,
            end_wh=1100 if kind == "Ended" else None,
            latest_wh=None,
            latest_at=None,
            latest_w=None,
        )

    def apply(e: event_store.Event):
        return lambda s: event_store.apply_event(
            s, "A", e, now=NOW, fallback_connector=1, revive_within=None, settle_delay=timedelta(0), sample_every=None
        )

    first = await ctx.db.write(apply(event("Started", 0)))
    await ctx.db.write(apply(event("Ended", 60)))
    again = await ctx.db.write(apply(event("Started", 3600)))  # the station rebooted and numbers from the start
    assert again.transaction_id != first.transaction_id
