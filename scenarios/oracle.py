"""The oracle: judges what a CSMS said against what really happened. Pure.

Input is observation only: the CSMS's verdicts sampled during the run
(`Sample`), the ground truth rebuilt from the simulator's trace (`Timeline`),
the transactions and sessions the CSMS stored (`StoredTransaction`), and the
scenario's `Rules`. Output is a list of `Violation`s, plain data. No sockets,
no clock, no sleeping: the shells (pytest plugin, CLI, locust hook) gather and
print.

The three invariants:
- never falsely free: a connector whose car has been charging for `grace`
  seconds, or that holds a reservation the CSMS granted, is never `free`; on a
  charge point online all along, the `grace` runs from when it told the CSMS
  (a status or a StartTransaction sent), as nothing else could tell;
- never falsely busy after recovery: a connector idle for the whole recovery
  window, on a charge point connected for that long, is `free`; a charge point
  gone for that long has its connectors `offline`, never `free`; and the CSMS
  never closes the connection of a charge point that still answers;
- nothing lost: every acknowledged StartTransaction is stored, every
  transaction that really ended is closed once, with the energy the charge point
  measured (exact when its StopTransaction arrived, within one meter sample when
  the CSMS ended it), and every session's fee follows the tariff;
- billed once, to the right session: a transaction started from the app is
  billed to a session (also when the app's start timed out and the charger began
  anyway); a StopTransaction that contradicts a register the CSMS acknowledged keeps
  the evidenced energy and is flagged for review; an app session that never started
  does not wait for ever.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .adapters.base import BUSY, FREE, OFFLINE, StoredSession, StoredTransaction, Verdict
from .timeline import IDLE_STATE, FaultMark, SimTransaction, Timeline

__all__ = [
    "Sample",
    "Hold",
    "AppStart",
    "Rules",
    "Violation",
    "Judgement",
    "judge",
    "expected_fee",
    "KINDS",
    "KIND_CLAIMS",
    "BLINDING_FAULTS",
]

KINDS = {
    "falsely_free": "reported free while a car was charging (or a granted reservation held it)",
    "falsely_busy": "reported busy (or offline) after recovery while the connector was idle and its charger online",
    "not_offline": "its charger was gone for the whole recovery window, yet the connector was not reported offline",
    "dropped_charger": "the CSMS closed the connection of a charge point that was still answering",
    "lost_transaction": "the CSMS acknowledged a StartTransaction it did not store",
    "unclosed_transaction": "the transaction really ended, but the CSMS still holds it open after recovery",
    "duplicate_transaction": "one real transaction is stored more than once",
    "lost_stop": "the CSMS acknowledged a StopTransaction but stored a different end",
    "wrong_energy": "the energy stored for the transaction is not what the charge point measured",
    "wrong_fee": "the session's fee does not follow energy x tariff (half up to the cent)",
    "unbilled_transaction": "a transaction the app started (remote start) was stored with no session to bill",
    "stale_session": "an app session that never started still waits for its StartTransaction after recovery",
    "open_session": "the transaction is closed, but the app session billed to it never ended (no end, no bill)",
    "wrong_answer": "an action through the CSMS (start, unlock, reservation) was answered against the situation",
}

# Which claim of a CSMS profile (scenarios/profile.py) each kind holds the CSMS to; None: every CSMS.
# A wrong_answer names its own claim (the action it is about).
KIND_CLAIMS: dict[str, str | None] = {
    "falsely_free": "occupancy",
    "falsely_busy": "occupancy",
    "not_offline": "occupancy",
    "dropped_charger": None,
    "lost_transaction": "transactions",
    "unclosed_transaction": "transactions",
    "duplicate_transaction": "transactions",
    "lost_stop": "transactions",
    "wrong_energy": "transactions",
    "wrong_fee": "sessions",
    "unbilled_transaction": "sessions",
    "stale_session": "sessions",
    "open_session": "sessions",
    "wrong_answer": None,
}

# Faults after which the CSMS cannot know the truth without an admin: the charger lies or says nothing.
BLINDING_FAULTS = frozenset({"stuck_status"})
_STOP_LOSING = frozenset({"drop_stop_transaction", "reboot"})  # the end of a transaction never reported
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Sample:
    """The CSMS's verdict on one connector, asked at trace time `t` and answered by `until`.

    A truth is held against a verdict only if it held over the whole request
    (and `grace` before it): what changed while the question was in flight is
    not the CSMS's fault.
    """

    t: float
    cp: str
    connector: int
    verdict: Verdict
    until: float = -1.0  # when the answer came (default: t)

    @property
    def end(self) -> float:
        return self.until if self.until >= self.t else self.t


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation the CSMS granted: the connector is not free from `start` (the grant) to `end`.

    `asked` is when it was asked for: from then on a busy verdict is no fault (the CSMS may hold the
    connector before its answer arrives); free is judged from the grant only.
    """

    cp: str
    connector: int
    start: float
    end: float
    asked: float | None = None


@dataclass(frozen=True, slots=True)
class AppStart:
    """A start asked for through the CSMS's app API that got a session: accepted, or timed out (504).

    A timed-out one counts too: the charger may have accepted late and started anyway.
    """

    session_id: str
    cp: str
    connector: int
    id_tag: str
    tariff: Decimal
    t: float  # when it was asked (trace time)
    outcome: str = "accepted"  # or "timeout"


@dataclass(frozen=True)
class Rules:
    """What a scenario promises to check, and with which allowances."""

    recovery_window: float  # s the CSMS gets to notice the truth (maintenance, triggers, timeouts)
    grace: float = 1.5  # s a truth must have held before a verdict is judged (messages in flight)
    recovery_from: float = 0.0  # no falsely-busy judgement before this (faults still acting, admin pending)
    holds: tuple[Hold, ...] = ()
    check_busy: bool = True
    check_free: bool = True
    check_stored: bool = True
    excuse_blinded: bool = True  # False once an admin action told the CSMS the truth (unlock scenarios)
    tariffs: dict[str, Decimal] = field(default_factory=dict)  # session id -> the tariff the app asked for
    app_starts: tuple[AppStart, ...] = ()
    sessions: dict[str, StoredSession] | None = None  # the app starts' sessions as stored (None: not asked)
    claims: frozenset[str] | None = None  # what the CSMS's profile claims (None: everything)
    answers: tuple[Violation, ...] = ()  # wrong answers the scenario saw while it acted (kind wrong_answer)


@dataclass(frozen=True)
class Violation:
    kind: str
    cp: str
    connector: int
    message: str
    t: float | None = None  # first time seen
    last_t: float | None = None
    count: int = 1  # samples (or records) showing it
    verdict: Verdict | None = None
    truth: dict[str, Any] = field(default_factory=dict)
    faults: tuple[FaultMark, ...] = ()
    claim: str | None = None  # the profile claim it holds the CSMS to; None: its kind's (KIND_CLAIMS)

    @property
    def claimed_by(self) -> str | None:
        return self.claim if self.claim is not None else KIND_CLAIMS.get(self.kind)

    def describe(self) -> str:
        """A few lines a person can act on: what, where, what the CSMS said, what was true, which faults."""
        when = (
            ""
            if self.t is None
            else f" at t={self.t:.1f}s"
            + (f"..{self.last_t:.1f}s ({self.count} samples)" if self.count > 1 and self.last_t is not None else "")
        )
        lines = [f"{self.kind}: {self.cp}/{self.connector}{when}: {self.message}"]
        if self.verdict is not None:
            lines.append(f"  CSMS said: {self.verdict.verdict} reasons={list(self.verdict.reasons)}")
            if self.verdict.signals:
                lines.append(f"  raw signals: {_compact(self.verdict.signals)}")
        if self.truth:
            lines.append(f"  ground truth: {_compact(self.truth)}")
        if self.faults:
            lines.append(
                "  faults: "
                + ", ".join(
                    f"{f.name}@{f.t:.1f}s" + ("" if f.connector is None else f"(connector {f.connector})")
                    for f in self.faults
                )
            )
        else:
            lines.append("  faults: none fired on this connector")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cp": self.cp,
            "connector": self.connector,
            "message": self.message,
            "t": self.t,
            "lastT": self.last_t,
            "count": self.count,
            "verdict": None
            if self.verdict is None
            else {
                "verdict": self.verdict.verdict,
                "reasons": list(self.verdict.reasons),
                "signals": self.verdict.signals,
            },
            "truth": self.truth,
            "faults": [{"t": f.t, "name": f.name, "connector": f.connector, "params": f.params} for f in self.faults],
            "claim": self.claimed_by,
        }


@dataclass(frozen=True)
class Judgement:
    violations: tuple[Violation, ...]
    checked: dict[str, int]  # what was looked at: samples, transactions, sessions, excused connectors
    unclaimed: dict[str, int] = field(default_factory=dict)  # kind -> findings the profile does not claim

    @property
    def passed(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        """Violations per kind, in the order found."""
        out: dict[str, int] = {}
        for v in self.violations:
            out[v.kind] = out.get(v.kind, 0) + 1
        return out


def expected_fee(energy_wh: int, tariff: Decimal) -> Decimal:
    """Wh / 1000 x tariff per kWh, half up to the cent: the rule of csms/core/billing.py, restated."""
    return (Decimal(energy_wh) * tariff / Decimal(1000)).quantize(_CENT, rounding=ROUND_HALF_UP)


def _compact(value: Any, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def judge(
    samples: Sequence[Sample], timeline: Timeline, stored: Iterable[StoredTransaction] | None, rules: Rules
) -> Judgement:
    """All three invariants; violations are grouped per (kind, connector), first occurrence kept."""
    found: dict[tuple[str, str, int], Violation] = {}
    excused: set[tuple[str, int]] = set()

    def add(v: Violation) -> None:
        key = (v.kind, v.cp, v.connector)
        prev = found.get(key)
        if prev is None:
            found[key] = v
        else:
            last = max((x for x in (prev.last_t, v.t, v.last_t) if x is not None), default=None)
            found[key] = Violation(
                prev.kind,
                prev.cp,
                prev.connector,
                prev.message,
                prev.t,
                last,
                prev.count + v.count,
                prev.verdict,
                prev.truth,
                prev.faults,
                prev.claim,
            )

    for s in samples:
        if rules.check_free:
            v = _falsely_free(s, timeline, rules)
            if v is not None:
                add(v)
        if rules.check_busy:
            v = _falsely_busy(s, timeline, rules, excused)
            if v is not None:
                add(v)
    if rules.check_busy:
        for v in _dropped(timeline):
            add(v)
    stored_list = list(stored) if stored is not None else None
    if rules.check_stored and stored_list is not None:
        for v in _stored(stored_list, timeline, rules):
            add(v)
        for v in _stale_sessions(stored_list, timeline, rules):
            add(v)
    unclaimed: dict[str, int] = {}
    kept: list[Violation] = []
    for v in [*found.values(), *rules.answers]:  # each wrong answer stands alone (its message is the finding)
        if rules.claims is not None and v.claimed_by is not None and v.claimed_by not in rules.claims:
            unclaimed[v.kind] = unclaimed.get(v.kind, 0) + 1
        else:
            kept.append(v)
    checked = {
        "samples": len(samples),
        "transactions": len(timeline.transactions),
        "stored": len(stored_list or ()),
        "excused_connectors": len(excused),
    }
    order = list(KINDS)
    return Judgement(tuple(sorted(kept, key=lambda v: (order.index(v.kind), v.cp, v.connector))), checked, unclaimed)


def _truth(timeline: Timeline, cp: str, connector: int, t: float) -> dict[str, Any]:
    state, since = timeline.connector(cp, connector).state_at(t)
    connected, link_since = timeline.charge_point(cp).connected_at(t)
    running = timeline.running_at(cp, connector, t)
    out: dict[str, Any] = {
        "state": state,
        "since": round(since, 2),
        "chargerConnected": connected,
        "connectedSince": round(link_since, 2),
    }
    if timeline.charge_point(cp).muted_at(t):
        out["chargerMuted"] = True
    if running is not None:
        out["transaction"] = {
            "localId": running.local_id,
            "transactionId": running.transaction_id,
            "idTag": running.id_tag,
            "startedAt": round(running.started_at, 2),
        }
    return out


def _falsely_free(s: Sample, tl: Timeline, rules: Rules) -> Violation | None:
    if s.verdict.verdict != FREE:
        return None
    connector = tl.connector(s.cp, s.connector)
    state, state_since = connector.state_at(s.end)
    since = connector.running_since(s.end)  # Charging then SuspendedEV is one transaction
    known_from = since
    if since is not None and tl.charge_point(s.cp).online_throughout(since, s.end):
        # Online all along: the CSMS can know only once the charge point says so (a silent connector's
        # StartTransaction may queue behind its other calls); offline, it must not say free at all.
        known_from = connector.first_told_busy(since, s.end)
    if known_from is not None and s.t - known_from >= rules.grace and not _unheard(tl, s.cp, s.connector, s.t):
        why = (
            f"a car has been {state} since t={since:.1f}s"
            if since == state_since
            else f"a car has been in its transaction since t={since:.1f}s ({state} since t={state_since:.1f}s)"
        )
    else:
        hold = next(
            (
                h
                for h in rules.holds
                if (h.cp, h.connector) == (s.cp, s.connector) and h.start + rules.grace <= s.t and s.end <= h.end
            ),
            None,
        )
        if hold is None:
            return None
        why = f"a reservation granted at t={hold.start:.1f}s holds it"
    return Violation(
        "falsely_free",
        s.cp,
        s.connector,
        f"reported free, but {why}",
        s.t,
        s.t,
        1,
        s.verdict,
        _truth(tl, s.cp, s.connector, s.t),
        tuple(tl.faults_of(s.cp, s.connector, s.t)),
    )


def _unheard(tl: Timeline, cp: str, connector: int, t: float) -> bool:
    """A hung charger started this transaction and never said so: the CSMS cannot know of it."""
    if not tl.charge_point(cp).muted_at(t):
        return False
    running = tl.running_at(cp, connector, t)
    return running is not None and running.transaction_id is None


def _blinded(tl: Timeline, cp: str, connector: int, t: float) -> bool:
    """Did a fault leave the CSMS no way to learn the truth by itself (a lying or hung charger)?"""
    if tl.charge_point(cp).muted_at(t):
        return True
    faults = tl.faults_of(cp, connector, t)
    names = {f.name for f in faults}
    if names & BLINDING_FAULTS:
        return True
    ignores_triggers = any(f.name == "silent_connector" and f.params.get("ignore_trigger", True) for f in faults)
    # ... and a transaction's end never reached the CSMS: only a status could tell, and none comes.
    return ignores_triggers and any(
        f.name in _STOP_LOSING or (f.name == "disconnect_mid_session" and not f.params.get("replay", True))
        for f in faults
    )


def _falsely_busy(s: Sample, tl: Timeline, rules: Rules, excused: set[tuple[str, int]]) -> Violation | None:
    if s.t < rules.recovery_from + rules.recovery_window:
        return None
    window_start = s.t - rules.recovery_window
    connected, link_since = tl.charge_point(s.cp).connected_at(s.end)
    if not connected:
        if link_since > window_start or s.verdict.verdict == OFFLINE:
            return None
        return Violation(
            "not_offline",
            s.cp,
            s.connector,
            f"its charger has been gone since t={link_since:.1f}s, but the CSMS says {s.verdict.verdict}",
            s.t,
            s.t,
            1,
            s.verdict,
            _truth(tl, s.cp, s.connector, s.t),
            tuple(tl.faults_of(s.cp, s.connector, s.end)),
        )
    if s.verdict.verdict == FREE:
        return None
    state, since = tl.connector(s.cp, s.connector).state_at(s.end)
    if state != IDLE_STATE or since > window_start or link_since > window_start:
        return None
    if any(
        h.cp == s.cp
        and h.connector == s.connector
        and (h.start if h.asked is None else min(h.asked, h.start)) <= s.end
        and s.t <= h.end + rules.recovery_window
        for h in rules.holds
    ):
        return None
    if rules.excuse_blinded and _blinded(tl, s.cp, s.connector, s.t):
        excused.add((s.cp, s.connector))
        return None
    what = "busy" if s.verdict.verdict == BUSY else s.verdict.verdict
    return Violation(
        "falsely_busy",
        s.cp,
        s.connector,
        f"reported {what}, but the connector has been idle since t={since:.1f}s and its charger "
        f"online since t={link_since:.1f}s (recovery window {rules.recovery_window:g}s)",
        s.t,
        s.t,
        1,
        s.verdict,
        _truth(tl, s.cp, s.connector, s.t),
        tuple(tl.faults_of(s.cp, s.connector, s.end)),
    )


def _dropped(tl: Timeline) -> list[Violation]:
    """Connections the CSMS closed while the charge point still answered (calls, or at least pings).

    The charger reconnects at once, so its verdicts in the gap are not judged (it really
    was gone): the close itself is the violation, on each of its connectors. A hung
    charger (heartbeat_stop without answer_calls) may be dropped.
    """
    out = []
    for cp, cpt in tl.charge_points.items():
        for t, code in cpt.dropped:
            stop = next((f for f in reversed(cpt.faults) if f.name == "heartbeat_stop" and f.t <= t), None)
            if cpt.muted_at(t) and (stop is None or not stop.params.get("answer_calls", False)):
                continue
            for c in sorted(c for (p, c) in tl.connectors if p == cp) or [0]:
                out.append(
                    Violation(
                        "dropped_charger",
                        cp,
                        c,
                        f"the CSMS closed the charge point's connection at "
                        f"t={t:.1f}s (close code {code}) while it was still answering",
                        t,
                        t,
                        1,
                        None,
                        _truth(tl, cp, c, t),
                        tuple(tl.faults_of(cp, c, t)),
                    )
                )
    return out


def _stop_said(x: SimTransaction) -> str:
    """The end message as the charge point's version names it."""
    if isinstance(x.transaction_id, str):
        return f"TransactionEvent(Ended) with {x.stop_meter_sent} Wh"
    return f"StopTransaction meterStop={x.stop_meter_sent}"


def _row_key(t: StoredTransaction) -> tuple[str, int | str]:
    """How the charge point names a stored transaction: the CSMS's id (1.6), the station's own (2.0.1)."""
    return (t.cp, t.station_tx_id if t.station_tx_id is not None else t.transaction_id)


def _stored(stored: list[StoredTransaction], tl: Timeline, rules: Rules) -> list[Violation]:
    out: list[Violation] = []
    by_id = {_row_key(t): t for t in stored}
    by_shape: dict[tuple[str, int, int, str], list[StoredTransaction]] = {}
    for t in stored:
        by_shape.setdefault((t.cp, t.connector, t.meter_start, t.id_tag), []).append(t)
    claimed = {(x.cp, x.transaction_id): x for x in tl.transactions if x.transaction_id is not None}
    # Real transactions that never got an answer, by shape: a stored row of that shape may be theirs.
    unanswered: dict[tuple[str, int, int, str], int] = {}
    for x in tl.transactions:
        if x.transaction_id is None:
            shape = (x.cp, x.connector, x.meter_start, x.id_tag)
            unanswered[shape] = unanswered.get(shape, 0) + 1
    deadline = tl.end - rules.recovery_window
    for x in tl.transactions:
        faults = tuple(tl.faults_of(x.cp, x.connector))

        def v(kind: str, message: str, x: SimTransaction = x, faults: tuple = faults) -> Violation:
            return Violation(kind, x.cp, x.connector, message, x.started_at, x.ended_at, 1, None, _tx_truth(x), faults)

        # Rows of this shape, less those that are another real transaction's (same tag, same meterStart).
        same = [
            t
            for t in by_shape.get((x.cp, x.connector, x.meter_start, x.id_tag), [])
            if claimed.get(_row_key(t), x) is x
        ]
        named = x.transaction_id if x.transaction_id is not None else x.station_tx_id  # 2.0.1: named unanswered too
        row = by_id.get((x.cp, named)) if named is not None else None
        if x.transaction_id is not None and row is None:
            said = (
                f"TransactionEvent(Started) of transaction {x.transaction_id} was acknowledged"
                if isinstance(x.transaction_id, str)
                else f"StartTransaction was answered with transactionId {x.transaction_id}"
            )
            out.append(v("lost_transaction", f"{said}, but the CSMS has no such transaction"))
            continue
        # Others of the same shape whose start was sent but never answered (a reboot lost it) own a row each.
        others = unanswered.get((x.cp, x.connector, x.meter_start, x.id_tag), 0) - (x.transaction_id is None)
        if len(same) > 1 + others:
            out.append(
                v("duplicate_transaction", "stored as transactions " + ", ".join(str(t.transaction_id) for t in same))
            )
        if row is None:
            row = same[0] if len(same) == 1 else None
        if row is None:
            continue  # never reached the CSMS (lost with the queue): nothing to judge
        unbilled = _unbilled(x, row, rules)
        if unbilled is not None:
            out.append(v("unbilled_transaction", unbilled))
        if x.ended_at is None:
            continue  # still running
        if not row.closed:
            due = max(x.ended_at, rules.recovery_from) <= deadline  # a full window after it ended and recovery began
            if due and not (rules.excuse_blinded and _blinded(tl, x.cp, x.connector, tl.end)):
                out.append(
                    v(
                        "unclosed_transaction",
                        f"ended at t={x.ended_at:.1f}s ({x.end}, {x.reason}); "
                        f"transaction {row.transaction_id} still open",
                    )
                )
            continue
        if row.session is not None and row.session.ended is False:
            s = row.session
            out.append(
                v(
                    "open_session",
                    f"transaction {row.transaction_id} was closed ({row.stop_reason}), but its "
                    f"session {s.session_id} is still {s.status}: never ended, never billed",
                )
            )
            continue
        out.extend(_energy(x, row, v, rules))
    return out


def _energy(x: SimTransaction, row: StoredTransaction, v, rules: Rules) -> list[Violation]:
    out = []
    real = x.energy_wh
    stored_e = None if row.meter_stop is None else max(0, row.meter_stop - row.meter_start)
    if x.stop_acked:
        if row.meter_stop != x.stop_meter_sent:
            out.append(
                v(
                    "lost_stop",
                    f"{_stop_said(x)} was acknowledged, the CSMS stored meterStop={row.meter_stop} ({row.stop_reason})",
                )
            )
    elif real is not None and stored_e is not None:
        # The CSMS must bill at least the energy it had acknowledged evidence of, and never more than was
        # delivered. With every message through, that is "within one meter sample"; what a fault lost on the
        # way (a queue dropped by a reboot or a lost reconnect) no CSMS can know.
        step = x.sample_step_wh()
        floor = min(x.evidenced_wh(), real)
        if not floor - 1 <= stored_e <= real + 1:
            out.append(
                v(
                    "wrong_energy",
                    f"force-ended with {stored_e} Wh; the charge point delivered {real} Wh, "
                    f"its acknowledged meter samples showed {x.evidenced_wh()} Wh "
                    f"(one meter sample is up to {step} Wh)",
                )
            )
    s = row.session
    if s is None or s.energy_wh is None:
        return out
    evidence = x.meter_start + x.evidenced_wh()  # the highest register the CSMS acknowledged
    contradicted = (
        x.stop_acked and x.stop_meter_sent is not None and x.evidenced_wh() > 0 and x.stop_meter_sent < evidence
    )
    if s.review:
        # Flagged: the CSMS kept the energy it had evidence of; that must lie between it and the truth.
        if real is not None and not min(x.evidenced_wh(), real) - 1 <= s.energy_wh <= real + 1:
            out.append(
                v(
                    "wrong_energy",
                    f"session {s.session_id} (flagged for review) billed {s.energy_wh} Wh; "
                    f"its acknowledged meter samples showed {x.evidenced_wh()} Wh and the "
                    f"charge point delivered {real} Wh",
                )
            )
    elif contradicted:
        out.append(
            v(
                "wrong_energy",
                f"{_stop_said(x)} is below the register "
                f"{evidence} Wh of an acknowledged meter sample (meter replaced?); session "
                f"{s.session_id} billed {s.energy_wh} Wh and is not flagged for review",
            )
        )
    elif stored_e is not None and s.energy_wh != stored_e and not s.reconciled:
        out.append(
            v(
                "wrong_energy",
                f"session {s.session_id} billed {s.energy_wh} Wh, its transaction "
                f"{row.transaction_id} holds {stored_e} Wh",
            )
        )
    asked = rules.tariffs.get(s.session_id)
    if asked is not None and s.tariff is not None and s.tariff != asked:
        out.append(v("wrong_fee", f"session {s.session_id} was started at {asked}/kWh, the CSMS bills {s.tariff}"))
    if s.fee is not None and s.tariff is not None and s.fee != expected_fee(s.energy_wh, s.tariff):
        out.append(
            v(
                "wrong_fee",
                f"session {s.session_id}: fee {s.fee} for {s.energy_wh} Wh at {s.tariff}/kWh, "
                f"expected {expected_fee(s.energy_wh, s.tariff)}",
            )
        )
    return out


def _app_starts_for(x: SimTransaction, rules: Rules) -> list[AppStart]:
    """The app's starts this remote-started transaction answers: same connector and tag, asked before it."""
    return [
        a
        for a in rules.app_starts
        if (a.cp, a.connector, a.id_tag) == (x.cp, x.connector, x.id_tag) and a.t <= x.started_at
    ]


def _unbilled(x: SimTransaction, row: StoredTransaction, rules: Rules) -> str | None:
    """A transaction the app started (RemoteStartTransaction) must be billed to one of the app's sessions."""
    if not x.remote or row.session is not None:
        return None
    starts = _app_starts_for(x, rules)
    if not starts:
        return None
    asked = ", ".join(f"{a.session_id} ({a.outcome} at t={a.t:.1f}s)" for a in starts)
    return (
        f"started by a remote start of the app (session {asked}); the CSMS stored it as transaction "
        f"{row.transaction_id} with no session: nobody is billed"
    )


def _stale_sessions(stored: list[StoredTransaction], tl: Timeline, rules: Rules) -> list[Violation]:
    """App sessions with no transaction must not wait for ever (a recovery window after they were asked)."""
    if rules.sessions is None:
        return []
    linked = {t.session.session_id for t in stored if t.session is not None}
    deadline = tl.end - rules.recovery_window
    out = []
    for a in rules.app_starts:
        s = rules.sessions.get(a.session_id)
        if s is None or s.ended is not False or a.session_id in linked or max(a.t, rules.recovery_from) > deadline:
            continue
        out.append(
            Violation(
                "stale_session",
                a.cp,
                a.connector,
                f"session {a.session_id} ({a.id_tag}, asked at t={a.t:.1f}s, {a.outcome}) has no "
                f"transaction and is still {s.status} a recovery window later: it would capture a "
                f"later transaction of the same tag",
                a.t,
                a.t,
                1,
                None,
                {"sessionId": a.session_id, "status": s.status, "idTag": a.id_tag},
                tuple(tl.faults_of(a.cp, a.connector)),
            )
        )
    return out


def _tx_truth(x: SimTransaction) -> dict[str, Any]:
    return {
        "localId": x.local_id,
        "transactionId": x.transaction_id,
        "idTag": x.id_tag,
        "remote": x.remote,
        "startedAt": round(x.started_at, 2),
        "endedAt": None if x.ended_at is None else round(x.ended_at, 2),
        "end": x.end,
        "reason": x.reason,
        "meterStart": x.meter_start,
        "meterEnd": x.meter_end,
        "energyWh": x.energy_wh,
        "stopAcknowledged": x.stop_acked,
    }
