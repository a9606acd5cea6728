"""The database layer on SQLite and PostgreSQL: schema, partial unique index, group-commit writer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import trio
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from csms.db.database import Database, DatabaseClosedError, DatabaseHungError, is_outage
from csms.db.engine import make_engine
from csms.db.models import AuditEvent, PaymentReservation
from csms.db.schema import prepare

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _reservation(rid: str, status: str = "PendingPayment", connector: int = 1) -> PaymentReservation:
    return PaymentReservation(
        id=rid,
        station_id="S",
        charge_point_id="CP",
        connector_id=connector,
        id_tag="T",
        tariff=Decimal("0.25"),
        status=status,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.fixture
def db(database):
    return database


async def test_one_active_reservation_per_connector(db):
    await db.write(lambda s: s.add(_reservation("a")))
    with pytest.raises(IntegrityError):
        await db.write(lambda s: s.add(_reservation("b", "Authorized")))
    # Terminal ones do not count, and other connectors are independent.
    await db.write(lambda s: s.add(_reservation("c", "Cancelled")))
    await db.write(lambda s: s.add(_reservation("d", "Failed")))
    await db.write(lambda s: s.add(_reservation("e", connector=2)))
    ids = await db.read(lambda s: sorted(r.id for r in s.scalars(select(PaymentReservation))))
    assert ids == ["a", "c", "d", "e"]


async def test_a_failing_write_in_a_batch_does_not_take_the_others_down(db):
    await db.write(lambda s: s.add(_reservation("first")))
    results = {}

    async def put(name, fn):
        try:
            results[name] = await db.write(fn)
        except IntegrityError:
            results[name] = "conflict"

    def audit(i):
        return lambda s: s.add(AuditEvent(at=NOW, actor="t", action=f"a{i}")) or i

    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(put, i, audit(i))
        n.start_soon(put, "dup", lambda s: s.add(_reservation("second")))
    assert results.pop("dup") == "conflict"
    assert results == {i: i for i in range(20)}
    assert await db.read(lambda s: len(list(s.scalars(select(AuditEvent))))) == 20
    assert db.batches < 21 + 1  # grouped: fewer commits than writes


async def test_submit_latest_keeps_only_the_newest_per_key(db):
    for i in range(5):
        db.submit_latest("k", lambda s, i=i: s.add(AuditEvent(at=NOW, actor="t", action=f"v{i}")))
    await db.write(lambda s: None)
    actions = await db.read(lambda s: [a.action for a in s.scalars(select(AuditEvent))])
    assert actions == ["v4"]


async def test_writer_flushes_queued_writes_when_cancelled(db_url):
    engine = make_engine(db_url)
    prepare(engine)
    database = Database(engine)
    async with trio.open_nursery() as n:
        await n.start(database.run_writer)
        for i in range(50):
            database.submit(lambda s, i=i: s.add(AuditEvent(at=NOW, actor="t", action=f"q{i}")))
        n.cancel_scope.cancel()
    with pytest.raises(DatabaseClosedError):
        database.submit(lambda s: None)
    assert database.run_sync(lambda s: len(list(s.scalars(select(AuditEvent))))) == 50
    engine.dispose()


async def test_latest_writes_that_meet_an_outage_are_retried_until_stored(db):
    """A status acknowledged while the database is down is stored once it is back (issue 11)."""
    from sqlalchemy.exc import OperationalError

    db.retry_seconds = db.max_retry_seconds = 0.05
    down = {"left": 3}

    def status(value):
        def fn(s):
            if down["left"] > 0:
                down["left"] -= 1
                raise OperationalError("INSERT ...", {}, Exception("connection refused"))
            s.add(AuditEvent(at=NOW, actor="t", action=value))

        return fn

    db.submit_latest(("CP", 1), status("Faulted"))
    db.submit_latest(("CP", 2), lambda s: s.add(AuditEvent(at=NOW, actor="t", action="other")))
    with trio.fail_after(5):
        while await db.read(lambda s: len(list(s.scalars(select(AuditEvent))))) < 2:
            await trio.sleep(0.02)
    assert down["left"] == 0 and db.retried >= 2
    actions = await db.read(lambda s: sorted(a.action for a in s.scalars(select(AuditEvent))))
    assert actions == ["Faulted", "other"]
    # A newer write for the key replaces the one waiting: still one row per key, latest wins.
    down["left"] = 2
    db.submit_latest(("CP", 3), status("Preparing"))
    await trio.sleep(0.01)
    db.submit_latest(("CP", 3), lambda s: s.add(AuditEvent(at=NOW, actor="t", action="Charging")))
    with trio.fail_after(5):
        while "Charging" not in await db.read(lambda s: [a.action for a in s.scalars(select(AuditEvent))]):
            await trio.sleep(0.02)
    actions = await db.read(lambda s: sorted(a.action for a in s.scalars(select(AuditEvent))))
    assert actions == ["Charging", "Faulted", "other"]


async def test_a_read_the_database_never_answers_fails_after_the_bound(db):
    """A hung server (SIGSTOP) would hold a read for ever; it fails after read_timeout, as an outage (REST 503)."""
    db.read_timeout = 0.3
    woke = trio.Event()  # the abandoned thread still ends, later, when the "server" wakes
    began = trio.current_time()
    with pytest.raises(DatabaseHungError) as caught:
        await db.read(lambda s: (time.sleep(1.0), trio.from_thread.run_sync(woke.set)))
    assert trio.current_time() - began < 0.9 and is_outage(caught.value)
    with trio.fail_after(5):
        await woke.wait()
    assert await db.read(lambda s: 42) == 42
