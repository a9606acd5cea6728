"""The oracle holds a CSMS to issue 15's billing rules: hand-made traces and stored rows, no sockets.

A transaction the app started is billed to a session (also after the app's start timed out);
a StopTransaction below a register the CSMS acknowledged keeps the evidenced energy and is
flagged (a flagged session's evidenced energy is accepted); an app session that never started
does not wait for ever; a replaced meter's meterStop is not the energy the car got.
"""

from __future__ import annotations

from decimal import Decimal

from scenarios.adapters.base import StoredSession, StoredTransaction
from scenarios.oracle import KINDS, AppStart, expected_fee
from scenarios.timeline import Timeline

from .test_oracle import judged, row, run
from .tracebuild import TraceBuilder

TARIFF = Decimal("0.30")


def _session(
    sid: str, energy: int, *, review: bool = False, reconciled: bool = False, ended: bool | None = True
) -> StoredSession:
    return StoredSession(
        sid, "Ended", TARIFF, energy, expected_fee(energy, TARIFF), reconciled=reconciled, review=review, ended=ended
    )


def _app(sid: str, t: float, *, tag: str = "APP1", outcome: str = "accepted", connector: int = 1) -> AppStart:
    return AppStart(sid, "CP1", connector, tag, TARIFF, t, outcome)


# ------------------------------------------------------------- unbilled starts
def remote_visit(started: float = 2.0) -> TraceBuilder:
    b = TraceBuilder()
    b.online(0.0)
    b.start(started, 1, tag="APP1", meter=1_000, remote=True, transaction_id=5)
    b.sample(started + 2, 1, 3_000)
    b.end(started + 4, 1, 4_000)
    b.unplug(started + 5, 1, 4_000)
    return b


def test_a_transaction_the_app_started_must_be_billed_to_a_session():
    b = remote_visit()
    (x,) = Timeline.from_records(b.records).transactions
    unbilled = [row(x)]
    billed = [row(x, session=_session("S1", 3_000))]
    for outcome in ("accepted", "timeout"):  # a timed-out start the charger began anyway counts too
        starts = (_app("S1", 1.0, outcome=outcome),)
        assert run(b, [], unbilled, end=60.0, app_starts=starts) == [("unbilled_transaction", "CP1", 1)]
        assert run(b, [], billed, end=60.0, app_starts=starts) == []
    (v,) = judged(b, [], unbilled, end=60.0, app_starts=(_app("S1", 1.0, outcome="timeout"),)).violations
    assert "S1 (timeout at t=1.0s)" in v.message and "transaction 5 with no session" in v.message


def test_a_local_transaction_or_another_tag_or_a_later_app_start_is_not_the_apps():
    b = remote_visit()
    (x,) = Timeline.from_records(b.records).transactions
    unbilled = [row(x)]
    assert run(b, [], unbilled, end=60.0) == []  # no app start recorded at all (another CSMS, or none)
    assert run(b, [], unbilled, end=60.0, app_starts=(_app("S1", 1.0, tag="APP2"),)) == []
    assert run(b, [], unbilled, end=60.0, app_starts=(_app("S1", 1.0, connector=2),)) == []
    assert run(b, [], unbilled, end=60.0, app_starts=(_app("S1", 2.5),)) == []  # asked after it began
    local = TraceBuilder()
    local.online(0.0)
    local.session(2.0, 1, transaction_id=5, meter_start=1_000, energy=3_000, tag="APP1")
    (y,) = Timeline.from_records(local.records).transactions
    assert run(local, [], [row(y)], end=60.0, app_starts=(_app("S1", 1.0),)) == []


# ------------------------------------------------------------- meter replaced
def replaced(ack: bool = True) -> TraceBuilder:
    """Samples up to 130,000 Wh (from 100,000), the car got 31,000 Wh, StopTransaction says 500."""
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, 1, meter=100_000, transaction_id=9)
    b.sample(2.0, 1, 120_000)
    b.sample(3.0, 1, 130_000, ack=ack)
    b.end(4.0, 1, 131_000, meter_stop=500)
    b.unplug(5.0, 1, 131_000)
    return b


def test_a_replaced_meters_stop_is_not_the_energy_the_car_got():
    (x,) = Timeline.from_records(replaced().records).transactions
    assert (x.stop_meter_sent, x.meter_end, x.energy_wh, x.evidenced_wh()) == (500, 500, 31_000, 30_000)
    assert x.sample_step_wh() == 20_000


def test_a_flagged_session_keeps_the_evidenced_energy():
    b = replaced()
    (x,) = Timeline.from_records(b.records).transactions
    stored = lambda s: [row(x, meter_stop=500, stop_reason="Local", session=s)]  # noqa: E731 - as sent
    assert run(b, [], stored(_session("S9", 30_000, review=True)), end=60.0) == []
    assert run(b, [], stored(_session("S9", 31_000, review=True)), end=60.0) == []  # all of it, also fine
    # Not flagged: billing what meterStop says (nothing) throws the evidence away.
    assert run(b, [], stored(_session("S9", 0)), end=60.0) == [("wrong_energy", "CP1", 1)]
    (v,) = judged(b, [], stored(_session("S9", 0)), end=60.0).violations
    assert "meterStop=500 is below the register 130000 Wh" in v.message and "not flagged" in v.message
    # Flagged, but billing less than the evidence, or more than was delivered.
    assert run(b, [], stored(_session("S9", 20_000, review=True)), end=60.0) == [("wrong_energy", "CP1", 1)]
    assert run(b, [], stored(_session("S9", 40_000, review=True)), end=60.0) == [("wrong_energy", "CP1", 1)]
    # A late stop (reconciled) is held to the same rule.
    assert run(b, [], stored(_session("S9", 0, reconciled=True)), end=60.0) == [("wrong_energy", "CP1", 1)]
    assert run(b, [], stored(_session("S9", 30_000, reconciled=True, review=True)), end=60.0) == []


def test_without_acknowledged_evidence_a_low_stop_may_bill_what_it_says():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, 1, meter=100_000, transaction_id=9)
    b.end(4.0, 1, 131_000, meter_stop=500)  # no sample ever reached the CSMS
    (x,) = Timeline.from_records(b.records).transactions
    assert run(b, [], [row(x, meter_stop=500, session=_session("S9", 0))], end=60.0) == []


# ------------------------------------------------------------- stale sessions
def test_an_app_session_that_never_started_must_end_within_the_window():
    b = TraceBuilder()
    b.online(0.0)
    starts = (_app("S1", 10.0),)
    pending = {"S1": StoredSession("S1", "Accepted", TARIFF, None, None, ended=False)}
    ended = {"S1": StoredSession("S1", "Failed", TARIFF, None, None, end_reason="StartExpired", ended=True)}
    assert run(b, [], [], end=15.1, window=5.0, app_starts=starts, sessions=pending) == [("stale_session", "CP1", 1)]
    assert run(b, [], [], end=14.9, window=5.0, app_starts=starts, sessions=pending) == []  # not a window yet
    assert run(b, [], [], end=15.1, window=5.0, app_starts=starts, sessions=ended) == []
    assert run(b, [], [], end=15.1, window=5.0, app_starts=starts, sessions=None) == []  # the CSMS cannot say
    unknown = {"S1": StoredSession("S1", "Accepted", TARIFF, None, None)}  # ended=None: not said
    assert run(b, [], [], end=15.1, window=5.0, app_starts=starts, sessions=unknown) == []


def test_a_session_billing_a_transaction_is_not_stale():
    b = remote_visit()
    (x,) = Timeline.from_records(b.records).transactions
    pending = {"S1": StoredSession("S1", "Charging", TARIFF, None, None, ended=False)}
    stored: list[StoredTransaction] = [row(x, session=_session("S1", 3_000))]
    assert run(b, [], stored, end=60.0, app_starts=(_app("S1", 1.0),), sessions=pending) == []


def test_the_new_kinds_are_documented():
    assert {"unbilled_transaction", "stale_session", "open_session"} <= set(KINDS)


# ------------------------------------------------------------- sessions left open
def test_a_closed_transaction_whose_session_never_ended_is_an_open_session():
    """The supersede path once closed the transaction and forgot its session: `Charging` for ever."""
    b = remote_visit()
    (x,) = Timeline.from_records(b.records).transactions
    forgotten = StoredSession("S1", "Charging", TARIFF, None, None, ended=False)
    assert run(
        b, [], [row(x, stop_reason="Superseded", session=forgotten)], end=60.0, app_starts=(_app("S1", 1.0),)
    ) == [("open_session", "CP1", 1)]
    (v,) = judged(b, [], [row(x, stop_reason="Superseded", session=forgotten)], end=60.0).violations
    assert "session S1 is still Charging" in v.message and "(Superseded)" in v.message
    assert run(b, [], [row(x, session=_session("S1", 3_000))], end=60.0, app_starts=(_app("S1", 1.0),)) == []
    # A CSMS that does not say whether its sessions ended is not judged on it.
    unknown = StoredSession("S1", "Charging", TARIFF, 3_000, expected_fee(3_000, TARIFF))
    assert run(b, [], [row(x, session=unknown)], end=60.0, app_starts=(_app("S1", 1.0),)) == []
    # A transaction still open may keep its session open.
    assert run(
        b, [], [row(x, closed=False, meter_stop=None, session=forgotten)], end=60.0, app_starts=(_app("S1", 1.0),)
    ) == [("unclosed_transaction", "CP1", 1)]
