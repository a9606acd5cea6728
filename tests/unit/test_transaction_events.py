"""The 2.0.1 TransactionEvent rule, case by case (csms/core/transaction_events.py); no sockets, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.core.transaction_events import ENDED, STARTED, UPDATED, Step, Stored, plan

T0 = datetime(2026, 3, 2, 3, 12, tzinfo=UTC)
OPEN = Stored(7, open=True)
CLOSED = Stored(7, open=False, stop_time=T0)
FORCE_ENDED = Stored(7, open=False, stop_time=T0, estimated=True)  # closed by the CSMS: an unlock, the orphan rule


@pytest.mark.parametrize(
    ("event", "stored", "step"),
    [
        (STARTED, None, Step.START),
        (UPDATED, None, Step.START),  # its Started was lost: it charged, so it is stored
        (ENDED, None, Step.START_AND_END),  # a whole transaction never seen: stored, closed, billed
        (STARTED, OPEN, Step.DUPLICATE),  # the answer to its Started was lost
        (UPDATED, OPEN, Step.UPDATE),
        (ENDED, OPEN, Step.END),
        (ENDED, CLOSED, Step.DUPLICATE),
        (UPDATED, CLOSED, Step.AFTER_END),  # a replayed queue never reopens it (lbbrhzn/ocpp #2141)
        (ENDED, FORCE_ENDED, Step.RECONCILE),  # the station's figures replace the estimate
        (UPDATED, FORCE_ENDED, Step.AFTER_END),  # ... but an Updated never reopens it
    ],
)
def test_each_event_on_each_state(event, stored, step):
    assert plan(event, T0 - timedelta(minutes=5), stored) is step


def test_a_started_after_the_end_is_a_new_transaction_only_if_stamped_after_it():
    assert plan(STARTED, T0 + timedelta(seconds=1), CLOSED) is Step.START  # the station reuses ids after a reboot
    assert plan(STARTED, T0 - timedelta(seconds=1), CLOSED) is Step.AFTER_END  # its own Started, replayed late
    assert plan(STARTED, T0, Stored(7, open=False)) is Step.AFTER_END  # no end time known: never reopened
