"""How an OCPP 2.0.1 TransactionEvent changes what the CSMS holds: one pure rule per event.

2.0.1 stations name their transactions (a string id) and number each transaction's events
(`seqNo`); they queue events while offline and replay them later (`offline: true`, their own
timestamps). The field gets this wrong in known ways, each answered here:
- a replayed Updated or Started after the Ended never reopens the transaction or moves its
  meter backwards (lbbrhzn/ocpp #2141): after the end, events are evidence only;
- a repeated or reordered event changes nothing it should not: a Started again is answered
  and ignored, samples are ordered by their own timestamps (an older one never wins), and an
  Ended is applied whatever its seqNo (a lower one than an Updated already seen included);
- an Updated or Ended whose Started never arrived still opens (and closes) the transaction:
  the charger charged, so it is stored and billed;
- a station that rebooted may reuse its ids: a Started stamped after a closed transaction of
  the same id ended is a new transaction;
- an Ended for a transaction the CSMS closed on its own (a force end at an unlock, the orphan
  rule) brings the station's figures: they replace the estimate, as a late 1.6 StopTransaction's do.
Which EVSE an event belongs to, and its id token, are the station's to say only once
(EVerest libocpp #580/#577): they are remembered, never required again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

__all__ = ["Stored", "Step", "plan", "STARTED", "UPDATED", "ENDED", "STATUS_OF_CHARGING_STATE"]

STARTED, UPDATED, ENDED = "Started", "Updated", "Ended"

# 2.0.1's chargingState as the 1.6 status the occupancy rules know (csms/core/occupancy.py).
STATUS_OF_CHARGING_STATE = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "EVConnected": "Preparing",
    "Idle": "Preparing",  # a transaction without a car yet (TxStartPoint Authorized)
}


@dataclass(frozen=True)
class Stored:
    """What the CSMS holds for one station transaction id."""

    transaction_id: int
    open: bool
    stop_time: datetime | None = None
    estimated: bool = False  # closed by the CSMS on its own, with an estimate of the energy


class Step(Enum):
    START = "start"  # open a transaction (then apply the event's samples)
    START_AND_END = "start_and_end"  # an Ended for a transaction never seen: store it, closed
    UPDATE = "update"  # samples, charging state, the EVSE and id token if now given
    END = "end"  # close it with the event's meter (or the last sample)
    DUPLICATE = "duplicate"  # this event was applied already: answer, change nothing
    AFTER_END = "after_end"  # the transaction ended: evidence only, never reopened or rewound
    RECONCILE = "reconcile"  # the Ended of a transaction the CSMS closed itself: its figures replace the estimate


def plan(event_type: str, timestamp: datetime, stored: Stored | None) -> Step:
    """What to do with one event of a transaction, given what is stored for its id (None: nothing)."""
    if stored is None:
        return Step.START_AND_END if event_type == ENDED else Step.START
    if not stored.open:
        reused = event_type == STARTED and stored.stop_time is not None and timestamp > stored.stop_time
        if reused:  # the station rebooted and numbers its transactions from the start again
            return Step.START
        if event_type == ENDED:
            return Step.RECONCILE if stored.estimated else Step.DUPLICATE
        return Step.AFTER_END
    if event_type == STARTED:
        return Step.DUPLICATE  # a Started again (its answer was lost): the transaction is open already
    return Step.END if event_type == ENDED else Step.UPDATE
