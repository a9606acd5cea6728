"""The unlock plan: what is stuck, what is still charging, and what an unlock therefore does. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from csms.core.unlock_plan import (
    ConnectorRows,
    LiveStatus,
    ReservationRow,
    SessionRow,
    TransactionRow,
    live_evidence,
    plan_unlock,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=2)
ONLINE = LiveStatus(None, None, True)


def tx(
    id: int = 7, *, seen_ago: float | None = None, latest: int | None = 5_200, stopped: bool = False
) -> TransactionRow:
    return TransactionRow(
        id,
        "TAG",
        NOW - timedelta(hours=1),
        4_000,
        5_000 if stopped else None,
        NOW - timedelta(minutes=1) if stopped else None,
        latest,
        None if seen_ago is None else NOW - timedelta(seconds=seen_ago),
    )


def session(id: str = "S1", transaction_id: int | None = 7) -> SessionRow:
    return SessionRow(id, "Charging", "TAG", transaction_id, NOW - timedelta(hours=1), Decimal("0.25"), None)


def rows(*txs: TransactionRow, sessions: tuple[SessionRow, ...] = (), reservations=(), stored="Charging"):
    return ConnectorRows(sessions, {t.id: t for t in txs}, tuple(reservations), stored)


def plan(r: ConnectorRows, live: LiveStatus = ONLINE, **kw):
    return plan_unlock(r, live, connector_id=1, now=NOW, evidence_window=WINDOW, fee_policy="charge", **kw)


def test_a_recent_meter_sample_is_live_evidence_in_words():
    assert (
        live_evidence(tx(seen_ago=4), ONLINE, now=NOW, window=WINDOW)
        == "still delivering energy: last meter sample 4 s ago, +1.20 kWh since its start"
    )
    assert live_evidence(tx(seen_ago=121), ONLINE, now=NOW, window=WINDOW) is None
    assert live_evidence(tx(seen_ago=4, stopped=True), ONLINE, now=NOW, window=WINDOW) is None
    assert live_evidence(tx(seen_ago=4), ONLINE, now=NOW, window=timedelta(0)) is None  # 0: the check is off


def test_a_recent_charging_status_of_an_online_charger_is_live_evidence():
    charging = LiveStatus("Charging", NOW - timedelta(seconds=30), True)
    assert "reported Charging 30 s ago" in live_evidence(tx(), charging, now=NOW, window=WINDOW)
    assert (
        live_evidence(tx(), LiveStatus("SuspendedEV", NOW - timedelta(seconds=30), True), now=NOW, window=WINDOW)
        is not None
    )
    # Hours-old Charging (the StopTransaction and the Available after it were lost): the seed's stuck session.
    assert live_evidence(tx(), LiveStatus("Charging", NOW - timedelta(hours=2), True), now=NOW, window=WINDOW) is None
    assert (
        live_evidence(tx(), LiveStatus("Charging", NOW - timedelta(seconds=30), False), now=NOW, window=WINDOW) is None
    )
    assert (
        live_evidence(tx(), LiveStatus("Finishing", NOW - timedelta(seconds=30), True), now=NOW, window=WINDOW) is None
    )


def test_a_stuck_session_is_ended_billed_and_its_connector_released():
    p = plan(rows(tx(seen_ago=3600), sessions=(session(),)))
    assert [(s.session_id, s.energy_wh, s.fee, s.meter_source) for s in p.sessions] == [
        ("S1", 1_200, "0.30", "meter_values")
    ]
    assert [(t.transaction_id, t.closing_meter_wh) for t in p.transactions] == [(7, 5_200)]
    assert p.status_reset_from == "Charging" and p.live == () and p.sends_unlock


def test_a_live_session_is_left_open_and_no_unlock_is_sent():
    paid = ReservationRow("R1", "Charging", NOW - timedelta(hours=1), session_id="S1")
    ghost = session("S0", transaction_id=None)  # an accepted remote start that never began: stuck
    p = plan(rows(tx(seen_ago=4), sessions=(ghost, session()), reservations=(paid,)))
    assert [x.transaction_id for x in p.kept] == [7] and p.kept[0].session_id == "S1"
    assert [s.session_id for s in p.sessions] == ["S0"] and p.transactions == ()
    assert p.reservations == ()  # the live session's reservation is still charging
    assert p.status_reset_from is None and not p.sends_unlock and p.remote_stops == ()


def test_force_active_stops_the_live_transaction_first_then_cleans_everything():
    p = plan(rows(tx(seen_ago=4), sessions=(session(),)), force_active=True)
    assert p.kept == () and p.remote_stops == (7,) and p.sends_unlock
    assert [s.session_id for s in p.sessions] == ["S1"] and [t.transaction_id for t in p.transactions] == [7]
    offline = plan(rows(tx(seen_ago=4), sessions=(session(),)), LiveStatus(None, None, False), force_active=True)
    assert offline.remote_stops == () and not offline.sends_unlock  # nobody to ask: cleaned all the same


def test_a_session_whose_transaction_already_closed_bills_its_meter_stop():
    p = plan(rows(tx(stopped=True), sessions=(session(),)))
    assert [(s.energy_wh, s.meter_source) for s in p.sessions] == [(1_000, "meter_stop")] and p.transactions == ()


def test_a_status_after_the_last_sample_that_says_the_charging_stopped_outweighs_it():
    stopped = LiveStatus("Available", NOW - timedelta(seconds=2), True)  # the car left after its last sample
    assert live_evidence(tx(seen_ago=4), stopped, now=NOW, window=WINDOW) is None
    earlier = LiveStatus("Preparing", NOW - timedelta(seconds=9), True)  # before the sample: still charging
    assert live_evidence(tx(seen_ago=4), earlier, now=NOW, window=WINDOW) is not None


def test_a_pause_by_the_charger_does_not_outweigh_a_recent_sample():
    paused = LiveStatus("SuspendedEVSE", NOW - timedelta(seconds=2), True)  # load management: it resumes
    assert live_evidence(tx(seen_ago=20), paused, now=NOW, window=WINDOW) is not None


def test_reservations_not_charging_are_cancelled_and_a_charging_one_ends_with_its_session():
    pending = ReservationRow("R0", "Authorized", NOW - timedelta(minutes=5))
    charging = ReservationRow("R1", "Charging", NOW - timedelta(hours=1), session_id="S1")
    p = plan(rows(tx(seen_ago=3600), sessions=(session(),), reservations=(pending, charging)))
    assert [r.id for r in p.reservations] == ["R0"] and [s.session_id for s in p.sessions] == ["S1"]
