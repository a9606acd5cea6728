"""The maintenance shell against a real database with an injected clock: no sleeping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from csms.clock import FakeClock
from csms.config import Settings
from csms.context import Context
from csms.db.models import AuditEvent, ChargingSession, Transaction
from csms.ocpp.registry import Registry
from csms.services.maintenance import run_once
from tests.support.db import plant_stuck_session


@pytest.fixture
def ctx(db_url, database):
    return Context(
        settings=Settings(db_url=db_url, session_idle_hours=2), clock=FakeClock(), db=database, registry=Registry()
    )


async def test_idle_session_is_force_ended_after_the_limit_and_not_before(ctx):
    sid, tx = plant_stuck_session(ctx.settings.db_url, "IDLE1", 1, meter_start=100, latest_wh=600)
    ended = await ctx.db.read(lambda s: s.get(ChargingSession, sid).end_time)
    assert ended is None
    # plant_stuck_session stamps rows with the real time; move the fake clock relative to it.
    started = await ctx.db.read(lambda s: s.get(ChargingSession, sid).created_at)
    from csms.core.times import as_utc

    ctx.clock.current = as_utc(started) + timedelta(hours=2)
    assert [a.subject for a in await run_once(ctx)] == []
    ctx.clock.advance(seconds=1)
    actions = await run_once(ctx)
    assert [(a.kind.value, a.subject) for a in actions] == [("end_idle_session", sid)]
    row = await ctx.db.read(lambda s: s.get(ChargingSession, sid))
    assert (row.end_reason, row.energy_wh, row.meter_source) == ("IdleTimeout", 500, "meter_values")
    assert await ctx.db.read(lambda s: s.get(Transaction, tx).stop_reason) == "IdleTimeout"
    audits = await ctx.db.read(lambda s: [e.action for e in s.scalars(select(AuditEvent))])
    assert "session.force_ended" in audits
    assert await run_once(ctx) == []  # nothing left to do


async def test_a_pass_no_longer_ours_applies_nothing_it_planned(ctx, caplog):
    """A duty holder frozen mid-pass (it may have lost the duties): the actions it planned before are left to the
    next pass, on fresh data; the next pass that is ours applies them."""
    sid, _ = plant_stuck_session(ctx.settings.db_url, "IDLE2", 1, meter_start=100, latest_wh=600)
    from csms.core.times import as_utc

    started = await ctx.db.read(lambda s: s.get(ChargingSession, sid).created_at)
    ctx.clock.current = as_utc(started) + timedelta(hours=2, seconds=1)
    planned = await run_once(ctx, still_ours=lambda: False)
    assert [(a.kind.value, a.subject) for a in planned] == [("end_idle_session", sid)]
    assert await ctx.db.read(lambda s: s.get(ChargingSession, sid).end_time) is None
    assert "maintenance.pass_abandoned" in caplog.text
    applied = await run_once(ctx, still_ours=lambda: True)
    assert [(a.kind.value, a.subject) for a in applied] == [("end_idle_session", sid)]
    assert await ctx.db.read(lambda s: s.get(ChargingSession, sid).end_reason) == "IdleTimeout"
