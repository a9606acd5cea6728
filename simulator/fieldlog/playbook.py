"""The frame player's functional core: what a log says each charger must answer, and the ids it must rewrite.

Nothing here does I/O or waits; `player.py` is the shell that drives these against a live CSMS.

- `index_log` is one streamed pass over the log that keeps only what the player needs before it
  reaches that point of the log: each charger's answers to the CSMS's calls (a live CSMS asks
  when it decides, often before the log's answer would stream by), how many records it has, and
  whether it starts offline. Memory grows with the CSMS's calls, not with the log.
- `TxMap` maps a 1.6 charger's logged transactionIds to the ones the live CSMS assigns.
- `pick_answer` chooses the logged answer to a live CSMS call.
- `parse_log_time` reads `--from`/`--to`: log seconds, a clock time of the epoch's day, or ISO.
- `app_actions` finds the log's CSMS calls that a person caused (an app's remote start or stop, an
  operator's unlock): the player only answers a live CSMS, so these must be asked of it again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .frames import FrameRecord, LinkRecord

__all__ = [
    "LoggedAnswer",
    "ChargerBook",
    "LogIndex",
    "index_log",
    "TxMap",
    "pick_answer",
    "answer_frame",
    "parse_log_time",
    "Errors",
    "payload_of",
    "AppAction",
    "APP_CALLS",
    "app_actions",
]

CALL, RESULT, ERROR = 2, 3, 4


@dataclass(frozen=True)
class LoggedAnswer:
    """The charger's logged answer (`frame`, a CALLRESULT or CALLERROR) to the CSMS's logged `action` at `t`."""

    t: float
    action: str
    payload: Any
    frame: list[Any]


@dataclass
class ChargerBook:
    """What the player must know of one charger before it plays it."""

    records: int = 0  # records up to `end` (the player stops after the last one)
    first_t: float | None = None
    last_t: float | None = None
    first_link: str | None = None  # "connect": offline until then; "disconnect" or None: online from its first frame
    answers: dict[str, list[LoggedAnswer]] = field(default_factory=dict)


@dataclass
class LogIndex:
    chargers: dict[str, ChargerBook]
    first_t: float | None
    last_t: float | None


def index_log(
    records: Iterable[FrameRecord | LinkRecord], *, only: frozenset[str] | None = None, end: float | None = None
) -> LogIndex:
    """One streamed pass: per charger its record count, first/last t, first link event and answers to CSMS calls."""
    books: dict[str, ChargerBook] = {}
    asked: dict[tuple[str, Any], tuple[float, str, Any]] = {}  # (cp, message id) -> the CSMS's logged call
    first_t: float | None = None
    last_t: float | None = None
    for rec in records:
        if end is not None and rec.t > end:
            break
        if only is not None and rec.cp not in only:
            continue
        book = books.get(rec.cp)
        if book is None:
            book = books[rec.cp] = ChargerBook(first_t=rec.t)
        book.records += 1
        book.last_t = rec.t
        first_t = rec.t if first_t is None else first_t
        last_t = rec.t
        if isinstance(rec, LinkRecord):
            book.first_link = book.first_link or rec.event
            continue
        frame = rec.frame
        if len(frame) < 2:
            continue
        if rec.direction == "in" and frame[0] == CALL and len(frame) >= 3 and isinstance(frame[2], str):
            asked[(rec.cp, frame[1])] = (rec.t, frame[2], frame[3] if len(frame) > 3 else {})
        elif rec.direction == "out" and frame[0] in (RESULT, ERROR):
            call = asked.pop((rec.cp, frame[1]), None)
            if call is not None:
                t, action, payload = call
                book.answers.setdefault(action, []).append(LoggedAnswer(t, action, payload, frame))
    return LogIndex(books, first_t, last_t)


class TxMap:
    """A 1.6 charger's transaction ids: the log's (what its later frames name) -> the live CSMS's.

    The pair is learnt per StartTransaction message id from both answers: the live CSMS's (awaited
    when sent) and the log's (its `in` record). A StartTransaction the log has no answer for (lost,
    or answered only after a reconnect further on) leaves its live id waiting: the first log id a
    later frame names that is not mapped yet takes the oldest waiting one.
    """

    def __init__(self) -> None:
        self.log_to_csms: dict[int, int] = {}
        self._csms_by_msg: dict[Any, int] = {}
        self._log_by_msg: dict[Any, int] = {}
        self._waiting: list[int] = []  # live ids whose log id is not known yet, oldest first

    def csms_answered(self, msg_id: Any, csms_tx: Any) -> None:
        if not isinstance(csms_tx, int):
            return
        log_tx = self._log_by_msg.pop(msg_id, None)
        if log_tx is not None:
            self.log_to_csms[log_tx] = csms_tx
        else:
            self._csms_by_msg[msg_id] = csms_tx
            self._waiting.append(csms_tx)

    def log_answered(self, msg_id: Any, log_tx: Any) -> None:
        if not isinstance(log_tx, int):
            return
        csms_tx = self._csms_by_msg.pop(msg_id, None)
        if csms_tx is None:
            self._log_by_msg[msg_id] = log_tx
            return
        self._unwait(csms_tx)
        self.log_to_csms.setdefault(log_tx, csms_tx)

    def to_csms(self, log_tx: int) -> int | None:
        mapped = self.log_to_csms.get(log_tx)
        if mapped is None and self._waiting:
            mapped = self._waiting.pop(0)
            self._csms_by_msg = {m: c for m, c in self._csms_by_msg.items() if c != mapped}
            self.log_to_csms[log_tx] = mapped
        return mapped

    def to_log(self, csms_tx: Any) -> Any:
        return next((log for log, live in self.log_to_csms.items() if live == csms_tx), csms_tx)

    def rewrite(self, payload: Any) -> Any:
        """A 1.6 payload with its top-level `transactionId` (StopTransaction, MeterValues) as the CSMS knows it."""
        if not isinstance(payload, dict) or not isinstance(payload.get("transactionId"), int):
            return payload
        mapped = self.to_csms(payload["transactionId"])
        return payload if mapped is None else {**payload, "transactionId": mapped}

    def _unwait(self, csms_tx: int) -> None:
        if csms_tx in self._waiting:
            self._waiting.remove(csms_tx)


def pick_answer(
    logged: list[LoggedAnswer], used: set[int], payload: Any, *, since: float | None, to_log: Callable[[Any], Any]
) -> LoggedAnswer | None:
    """The logged answer for a live CSMS call: the first unused one whose logged call asked the same
    (a transactionId the CSMS names is read as the log's), else the first unused one; None when all are used.

    Calls the log shows before `since` (the play's start) were never made by this CSMS: they are passed over."""
    wanted = payload
    if isinstance(payload, dict) and "transactionId" in payload:
        wanted = {**payload, "transactionId": to_log(payload["transactionId"])}
    first: int | None = None
    for i, answer in enumerate(logged):
        if i in used or (since is not None and answer.t < since):
            continue
        if answer.payload == wanted:
            used.add(i)
            return answer
        first = i if first is None else first
    if first is None:
        return None
    used.add(first)
    return logged[first]


def answer_frame(msg_id: Any, logged: list[Any]) -> list[Any]:
    """The logged CALLRESULT/CALLERROR, sent under the live call's message id."""
    return [logged[0], msg_id, *logged[2:]]


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?$")


def parse_log_time(text: str, epoch: str) -> float:
    """`--from`/`--to` as log seconds: a number (seconds since the epoch), a clock time ("03:12",
    "03:12:30") on the epoch's day (UTC, as the epoch is written), or an ISO 8601 time."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    base = _parse_iso(epoch)
    m = _CLOCK.match(text)
    if m:
        h, mi, s = int(m[1]), int(m[2]), float(m[3] or 0)
        if h > 23 or mi > 59 or s >= 60:
            raise ValueError(f"{text!r}: not a clock time")
        day = base.replace(hour=0, minute=0, second=0, microsecond=0)
        t = (day + timedelta(hours=h, minutes=mi, seconds=s) - base).total_seconds()
        return t if t >= 0 else t + 86400.0  # before the epoch's time of day: the log ran past midnight
    try:
        when = _parse_iso(text)
    except ValueError:
        raise ValueError(f"{text!r}: give log seconds (e.g. 3600), a clock time (03:12) or an ISO time") from None
    return (when - base).total_seconds()


def _parse_iso(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Errors:
    """Plain-words errors, the first `keep` of them; the rest are counted."""

    def __init__(self, keep: int = 200) -> None:
        self.keep = keep
        self.items: list[str] = []
        self.dropped = 0

    def add(self, text: str) -> None:
        if len(self.items) < self.keep:
            self.items.append(text)
        else:
            self.dropped += 1

    def __len__(self) -> int:
        return len(self.items) + self.dropped

    def listing(self) -> list[str]:
        return self.items + ([f"... and {self.dropped} more errors not listed"] if self.dropped else [])


def payload_of(frame: list[Any]) -> Any:
    """A CALL's payload or a CALLRESULT's ({} if the log left it out)."""
    at = 3 if frame[0] == CALL else 2
    return frame[at] if len(frame) > at else {}


# The CSMS calls a person causes (1.6 and 2.0.1 names) -> what they asked: "start", "stop" or "unlock".
APP_CALLS: dict[str, str] = {
    "RemoteStartTransaction": "start",
    "RequestStartTransaction": "start",
    "RemoteStopTransaction": "stop",
    "RequestStopTransaction": "stop",
    "UnlockConnector": "unlock",
}


@dataclass(frozen=True)
class AppAction:
    """A CSMS call in the log that an app or an operator caused, as the CSMS under test must be asked it again.

    `connector` is the logged call's (a stop's: the connector its transaction ran on, when the log shows it);
    `answer` is what the charger answered in the log (its `status`, or "CallError X"; None: no answer logged)."""

    t: float
    cp: str
    kind: str  # "start", "stop" or "unlock" (APP_CALLS)
    action: str  # the logged call's action
    connector: int | None
    id_tag: str | None = None
    transaction_id: str | None = None  # a stop's, as the log names it
    answer: str | None = None


def app_actions(
    records: Iterable[FrameRecord | LinkRecord], *, start: float | None = None, end: float | None = None
) -> list[AppAction]:
    """The log's app and operator calls (APP_CALLS) from `start` to `end`, in log order, with the charger's answers.

    One streamed pass; what it keeps grows with the log's CSMS calls and transactions, not its frames."""
    found: dict[tuple[str, Any], int] = {}  # (cp, message id) -> the call's place in `out`, until its answer
    out: list[AppAction] = []
    tx_connector: dict[tuple[str, str], int] = {}  # (cp, the log's transaction id) -> its connector
    starts: dict[tuple[str, Any], int] = {}  # (cp, 1.6 StartTransaction message id) -> its connector
    for rec in records:
        if end is not None and rec.t > end:
            break
        if isinstance(rec, LinkRecord) or len(rec.frame) < 2:
            continue
        frame, cp = rec.frame, rec.cp
        if frame[0] == CALL and len(frame) >= 3:
            p = frame[3] if len(frame) > 3 and isinstance(frame[3], dict) else {}
            if rec.direction == "out":
                _charger_transaction(cp, frame[1], str(frame[2]), p, starts, tx_connector)
            elif frame[2] in APP_CALLS and (start is None or rec.t >= start):
                found[(cp, frame[1])] = len(out)
                out.append(_app_action(rec.t, cp, str(frame[2]), p, tx_connector))
        elif rec.direction == "in" and frame[0] == RESULT and (cp, frame[1]) in starts:
            tx = payload_of(frame).get("transactionId") if isinstance(payload_of(frame), dict) else None
            if tx is not None:
                tx_connector[(cp, str(tx))] = starts.pop((cp, frame[1]))
        elif rec.direction == "out" and frame[0] in (RESULT, ERROR) and (cp, frame[1]) in found:
            i = found.pop((cp, frame[1]))
            result = payload_of(frame)
            if frame[0] == ERROR:
                answer = f"CallError {frame[2] if len(frame) > 2 else '?'}"
            else:
                answer = str(result.get("status", "no status")) if isinstance(result, dict) else "no status"
            out[i] = replace(out[i], answer=answer)
    return out


def _app_action(
    t: float, cp: str, action: str, p: dict[str, Any], tx_connector: dict[tuple[str, str], int]
) -> AppAction:
    kind = APP_CALLS[action]
    if kind == "start":
        token = p.get("idToken")
        id_tag = token.get("idToken") if isinstance(token, dict) else p.get("idTag")
        c = p.get("evseId", p.get("connectorId"))
        return AppAction(
            t, cp, kind, action, c if isinstance(c, int) else None, None if id_tag is None else str(id_tag)
        )
    if kind == "stop":
        tx = None if p.get("transactionId") is None else str(p["transactionId"])
        return AppAction(t, cp, kind, action, tx_connector.get((cp, tx or "")), transaction_id=tx)
    c = p.get("evseId", p.get("connectorId"))  # 2.0.1 unlocks an EVSE's connector: the EVSE is our connector
    return AppAction(t, cp, kind, action, c if isinstance(c, int) else None)


def _charger_transaction(
    cp: str,
    msg_id: Any,
    action: str,
    p: dict[str, Any],
    starts: dict[tuple[str, Any], int],
    tx_connector: dict[tuple[str, str], int],
) -> None:
    """The charger's own starts: which connector each transaction of the log ran on (a stop names only the id)."""
    if action == "StartTransaction" and isinstance(p.get("connectorId"), int):
        starts[(cp, msg_id)] = p["connectorId"]
    elif action == "TransactionEvent" and p.get("eventType") == "Started":
        tx, evse = (p.get("transactionInfo") or {}).get("transactionId"), p.get("evse") or {}
        if tx is not None and isinstance(evse, dict) and isinstance(evse.get("id"), int):
            tx_connector[(cp, str(tx))] = evse["id"]
