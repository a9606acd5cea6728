"""Why was a connector stuck? The pure rules of `unstuck-scenarios explain`: no sockets, no database, no clock.

A field log has no simulator behind it, so no ground truth: what the charger said stands in for it.
`read_charger_log` turns the log's frames into, per connector, the charger's *word* over log time;
`find_findings` holds the CSMS's sampled verdicts against that word and names each stretch where they
disagree, with the evidence the CSMS held and what ended it (an audit event of the CSMS, a stored
status going stale, the charger's own next message) or why nothing did by the log's end.

The charger's word (the rule, decided here once):

- *occupied* while a transaction it started on the connector is open (1.6 StartTransaction until its
  StopTransaction; 2.0.1 TransactionEvent Started until Ended) or while its last status is one of
  Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing, Occupied, Reserved;
- *free* when its last status is Available and no transaction is open; an Available also ends a
  transaction the charger never stopped (a charger says Available only with nothing running there);
- *Finishing with no transaction* is its own state: the session is over, but the cable may still be
  in the car, or hang free with a stuck plug sensor; only someone at the site can tell;
- *out of service* (Unavailable, Faulted), *unknown* (never reported) and *unreported since boot*
  (a BootNotification ends what the charger said before; a connector it does not report again stays
  so) are neither free nor occupied: no finding is made on them, except a busy verdict on a
  connector unreported since boot, which rests on what the charger said before its reboot.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.fieldlog.frames import FrameRecord, LinkRecord
from simulator.fieldlog.playbook import AppAction

from .adapters.base import BUSY, FREE, OFFLINE, Verdict

__all__ = [
    "OCCUPIED_STATUSES",
    "OUT_OF_SERVICE",
    "Word",
    "LogEvent",
    "ChargerLog",
    "VerdictSample",
    "AuditMark",
    "Finding",
    "Moment",
    "read_charger_log",
    "find_findings",
    "moment_at",
    "parse_log_time",
    "clock",
    "describe_finding",
    "rule_words",
    "band_state",
    "window_prelude",
    "explained_window",
    "Ask",
    "Reenacted",
    "what_to_ask",
    "reenactment_words",
    "ACCEPTED",
    "REFUSED",
    "NOT_SUPPORTED",
    "FAILED",
    "SKIPPED",
]

OCCUPIED_STATUSES = frozenset(
    {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Occupied", "Reserved"}
)
OUT_OF_SERVICE = frozenset({"Unavailable", "Faulted"})

# word states
FREE_W, OCCUPIED_W, FINISHING_NO_TX, OUT_W, UNKNOWN_W, UNREPORTED_W = (
    "free",
    "occupied",
    "finishing_no_tx",
    "out_of_service",
    "unknown",
    "unreported_since_boot",
)

# finding kinds
BUSY_WHILE_FREE = "busy_while_free"
FREE_WHILE_OCCUPIED = "free_while_occupied"
BUSY_UNREPORTED = "busy_unreported"
BUSY_FINISHING = "finishing_no_transaction"

KIND_WORDS = {
    BUSY_WHILE_FREE: "stuck busy: the CSMS said the connector was in use while the charger said it was free",
    FREE_WHILE_OCCUPIED: "falsely free: the CSMS said free while the charger said the connector was occupied",
    BUSY_UNREPORTED: "busy on old evidence: the charger had not reported the connector since it rebooted",
    BUSY_FINISHING: "Finishing with no transaction: the session was over, the charger kept saying Finishing "
    "(the gun may hang free)",
}

# What each CSMS audit action did, in words (ours: csms/core/maintenance.py, csms/services/sessions.py).
RULE_WORDS = {
    "maintenance.close_orphaned": "the orphan rule: an open transaction whose connector the charger reports "
    "Available is closed (with an estimate) after the orphan grace",
    "maintenance.release_status": "the status release: an old non-Available stored status with nothing holding "
    "the connector is set Available",
    "maintenance.mark_offline": "offline detection: a charger silent (or deaf to pings) too long is dropped, its "
    "connectors turn offline",
    "maintenance.expire_start": "the start timeout: an accepted remote start that never began is ended",
    "maintenance.cancel_reservation": "the reservation timeout: a reservation left pending too long is cancelled",
    "maintenance.end_idle_session": "the idle-session rule: a session with no activity for too long is ended",
    "maintenance.trigger_status": "a status request (TriggerMessage StatusNotification) to a silent connector",
    "maintenance.probe_quiet_transaction": "a status request about a transaction quiet for too long",
    "maintenance.probe_contradicted_status": "a status request about a status no open transaction explains",
    "maintenance.probe_stale_silent_status": "a status request about a connector that never reports by itself",
    "session.superseded": "supersede: the next StartTransaction on the connector closed the transaction whose "
    "stop was lost",
    "session.force_ended": "an admin's unlock force-ended the session",
    "connector.unlock": "an admin's unlock",
}
# Audit actions that only ask: they can lead to a heal, but the heal is what follows them.
ASKING = frozenset(a for a in RULE_WORDS if a == "maintenance.trigger_status" or a.startswith("maintenance.probe_"))


@dataclass(frozen=True, slots=True)
class Word:
    """What the charger said about one connector from `t` on."""

    t: float
    state: str  # free, occupied, finishing_no_tx, out_of_service, unknown, unreported_since_boot
    status: str | None = None  # its last status
    transaction: str | None = None  # the open transaction, as the log names it
    said: str = ""  # the message that made it so, in words

    def text(self) -> str:
        bits = [self.status or "no status"]
        if self.transaction is not None:
            bits.append(f"transaction {self.transaction} open")
        return f"{self.state.replace('_', ' ')} ({', '.join(bits)})"


@dataclass(frozen=True, slots=True)
class LogEvent:
    """Something in the log worth a mark on the timeline: a boot, a link change, a start, a stop, a CSMS call."""

    t: float
    cp: str
    connector: int | None
    name: str
    text: str


@dataclass
class ChargerLog:
    """The charger's side of a field log, indexed by connector."""

    words: dict[tuple[str, int], list[Word]] = field(default_factory=dict)
    events: list[LogEvent] = field(default_factory=list)
    links: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # (t, connected) changes
    start: float = 0.0
    end: float = 0.0

    def word_at(self, key: tuple[str, int], t: float) -> Word:
        changes = self.words.get(key) or []
        i = bisect.bisect_right(changes, t, key=lambda w: w.t)
        return changes[i - 1] if i else Word(self.start, UNKNOWN_W, said="nothing yet")

    def connected_at(self, cp: str, t: float) -> bool:
        changes = self.links.get(cp) or []
        i = bisect.bisect_right(changes, t, key=lambda c: c[0])
        return changes[i - 1][1] if i else True  # a log that never says otherwise: online from its first frame


@dataclass(frozen=True, slots=True)
class VerdictSample:
    """The CSMS's verdict on one connector at log time `t`."""

    t: float
    cp: str
    connector: int
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class AuditMark:
    """One row of the CSMS's audit trail, at log time `t` (its wall time mapped back onto the log)."""

    t: float
    action: str
    cp: str | None
    connector: int | None
    subject: str | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Finding:
    """One stretch where the CSMS and the charger disagreed (or, Finishing, where only the site can tell)."""

    cp: str
    connector: int
    kind: str
    since: float
    until: float  # the first sample that no longer disagreed, or the log's end
    verdict: Verdict  # what the CSMS said at `since`, with its reasons
    word: Word  # what the charger had said
    healed: bool
    healed_by: str  # in words: the rule, the charger's message, or why nothing did
    rule: str | None = None  # the audit action that healed it, when one did
    asked: tuple[AuditMark, ...] = ()  # status requests the CSMS made meanwhile


@dataclass(frozen=True)
class Moment:
    """`--at`: one connector at one log time."""

    cp: str
    connector: int
    t: float
    verdict: Verdict | None
    sampled_at: float | None
    word: Word
    connected: bool


# ------------------------------------------------------------------ reading the log
_TX_EVENT = "TransactionEvent"


def read_charger_log(
    records: Iterable[FrameRecord | LinkRecord], *, connectors: Mapping[str, Iterable[int]] | None = None
) -> ChargerLog:
    """The charger's word per connector, its link changes and the log's notable events, in one pass."""
    log = ChargerLog()
    calls: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}  # (cp, direction, uid) -> action, payload
    tx_of: dict[tuple[str, int], str] = {}  # open transaction per connector
    status_of: dict[tuple[str, int], str | None] = {}
    connector_of_tx: dict[tuple[str, str], int] = {}
    pending_start: dict[tuple[str, str], int] = {}  # 1.6 StartTransaction uid -> connector (id comes in the answer)
    first = True
    for cp, cs in (connectors or {}).items():
        for c in cs:
            log.words.setdefault((cp, c), [])

    def say(t: float, cp: str, c: int, said: str) -> None:
        key = (cp, c)
        status, tx = status_of.get(key), tx_of.get(key)
        state = _state(status, tx)
        words = log.words.setdefault(key, [])
        word = Word(t, state, status, tx, said)
        if words and words[-1].t == t:
            words[-1] = word
        elif not words or (words[-1].state, words[-1].status, words[-1].transaction) != (state, status, tx):
            words.append(word)

    for rec in records:
        if first:
            log.start, first = rec.t, False
        log.end = max(log.end, rec.t)
        if isinstance(rec, LinkRecord):
            up = rec.event == "connect"
            log.links.setdefault(rec.cp, []).append((rec.t, up))
            log.events.append(
                LogEvent(rec.t, rec.cp, None, rec.event, f"{rec.event}{': ' + rec.why if rec.why else ''}")
            )
            continue
        frame, cp, t = rec.frame, rec.cp, rec.t
        if frame[0] == 2 and len(frame) >= 4:
            action, payload = str(frame[2]), frame[3] if isinstance(frame[3], dict) else {}
            calls[(cp, rec.direction, str(frame[1]))] = (action, payload)
            if rec.direction == "out":
                _charger_call(
                    log, t, cp, str(frame[1]), action, payload, status_of, tx_of, connector_of_tx, pending_start, say
                )
            continue
        asked = calls.pop((cp, "in" if rec.direction == "out" else "out", str(frame[1])), None)
        if asked is None:
            continue
        action, payload = asked
        answer = frame[2] if frame[0] == 3 and len(frame) > 2 and isinstance(frame[2], dict) else {}
        if rec.direction == "in" and action == "StartTransaction":  # the CSMS named the transaction
            c = pending_start.pop((cp, str(frame[1])), None)
            tx_id = answer.get("transactionId")
            if c is not None and tx_id is not None and tx_of.get((cp, c)) == f"start:{frame[1]}":
                tx_of[(cp, c)] = str(tx_id)
                connector_of_tx[(cp, str(tx_id))] = c
                say(t, cp, c, f"StartTransaction answered: transaction {tx_id}")
        elif rec.direction == "out":  # the charger's answer to a CSMS call
            status = answer.get("status") if frame[0] == 3 else f"CallError {frame[2] if len(frame) > 2 else ''}"
            c = payload.get("connectorId", payload.get("evseId"))
            log.events.append(
                LogEvent(t, cp, c if isinstance(c, int) else None, action, f"the log's CSMS sent {action}: {status}")
            )
    return log


def _charger_call(
    log: ChargerLog,
    t: float,
    cp: str,
    uid: str,
    action: str,
    p: dict[str, Any],
    status_of: dict[tuple[str, int], str | None],
    tx_of: dict[tuple[str, int], str],
    connector_of_tx: dict[tuple[str, str], int],
    pending_start: dict[tuple[str, str], int],
    say: Any,
) -> None:
    """One CALL the charger sent, applied to its word."""
    if action == "BootNotification":
        log.events.append(LogEvent(t, cp, None, "boot", "BootNotification: the charger (re)started"))
        for key in [k for k in log.words if k[0] == cp]:
            status_of[key] = None
            tx_of.pop(key, None)
            log.words[key].append(Word(t, UNREPORTED_W, None, None, "BootNotification"))
        return
    if action == "StatusNotification":
        c = p.get("evseId", p.get("connectorId"))  # 2.0.1: per EVSE (our connector id), 1.6: per connector
        status = p.get("connectorStatus", p.get("status"))
        if not isinstance(c, int) or c <= 0 or not isinstance(status, str):
            return
        if status == "Available" and (cp, c) in tx_of:
            log.events.append(
                LogEvent(t, cp, c, "available_open", f"Available with transaction {tx_of[(cp, c)]} never stopped")
            )
            tx_of.pop((cp, c))
        status_of[(cp, c)] = status
        say(t, cp, c, f"StatusNotification {status}")
    elif action == "StartTransaction":
        c = p.get("connectorId")
        if isinstance(c, int) and c > 0:
            tx_of[(cp, c)] = f"start:{uid}"
            pending_start[(cp, uid)] = c
            log.events.append(LogEvent(t, cp, c, "start", f"StartTransaction ({p.get('idTag')})"))
            say(t, cp, c, "StartTransaction")
    elif action == "StopTransaction":
        tx = str(p.get("transactionId"))
        c = connector_of_tx.get((cp, tx))
        if c is None:
            c = next((k[1] for k, v in tx_of.items() if k[0] == cp and v == tx), None)
        log.events.append(LogEvent(t, cp, c, "stop", f"StopTransaction {tx} ({p.get('reason', 'Local')})"))
        if c is not None and tx_of.get((cp, c)) == tx:
            tx_of.pop((cp, c))
            say(t, cp, c, f"StopTransaction {tx}")
    elif action == _TX_EVENT:
        info = p.get("transactionInfo") or {}
        tx = str(info.get("transactionId"))
        evse = p.get("evse") or {}
        c = evse.get("id") if isinstance(evse, dict) else None
        c = c if isinstance(c, int) else connector_of_tx.get((cp, tx))
        event = p.get("eventType")
        if c is None:
            return
        if event == "Started" or (event == "Updated" and (cp, c) not in tx_of):
            tx_of[(cp, c)] = tx
            connector_of_tx[(cp, tx)] = c
            if event == "Started":
                log.events.append(LogEvent(t, cp, c, "start", f"TransactionEvent Started {tx}"))
            say(t, cp, c, f"TransactionEvent {event}")
        elif event == "Ended":
            log.events.append(LogEvent(t, cp, c, "stop", f"TransactionEvent Ended {tx}"))
            if tx_of.get((cp, c)) == tx:
                tx_of.pop((cp, c))
                say(t, cp, c, f"TransactionEvent Ended {tx}")


def _state(status: str | None, tx: str | None) -> str:
    if tx is not None:
        return OCCUPIED_W
    if status is None:
        return UNREPORTED_W
    if status == "Finishing":
        return FINISHING_NO_TX
    if status in OCCUPIED_STATUSES:
        return OCCUPIED_W
    if status in OUT_OF_SERVICE:
        return OUT_W
    return FREE_W if status == "Available" else UNKNOWN_W


def band_state(word: Word) -> str:
    """The report's upper band (scenarios/report/html.py TRUTH_STATES) for a word."""
    if word.state == FREE_W:
        return "unplugged"
    if word.state in (UNKNOWN_W, UNREPORTED_W):
        return "silent"
    if word.state == OUT_W:
        return "out_of_service"
    return {
        "Charging": "charging",
        "SuspendedEV": "suspended",
        "SuspendedEVSE": "suspended",
        "Finishing": "finishing",
    }.get(word.status or "", "charging" if word.transaction and not word.status else "plugged")


# ------------------------------------------------------------------ judging
# Finishing with no transaction is normal while a driver stows the cable: a finding only past this (log seconds).
FINISHING_GRACE = 900.0


def _mismatch(word: Word, verdict: Verdict, connected: bool) -> str | None:
    """The finding kind a verdict makes against the charger's word, or None. A CSMS that does not know the
    charger yet (ours answers `station:unknown` before its first boot is stored) is judged on nothing."""
    if "station:unknown" in verdict.reasons:
        return None
    return _kind(word, verdict.verdict, connected)


def _kind(word: Word, verdict: str, connected: bool) -> str | None:
    if word.state == FREE_W and verdict != FREE and (verdict != OFFLINE or connected):
        return BUSY_WHILE_FREE
    if word.state == OCCUPIED_W and verdict == FREE:
        return FREE_WHILE_OCCUPIED
    if word.state == UNREPORTED_W and verdict == BUSY:
        return BUSY_UNREPORTED
    if word.state == FINISHING_NO_TX and verdict == BUSY:
        return BUSY_FINISHING
    return None


def find_findings(
    log: ChargerLog,
    samples: Sequence[VerdictSample],
    audit: Sequence[AuditMark] = (),
    *,
    grace: float = 60.0,
) -> list[Finding]:
    """Every stretch, per connector, where the CSMS's verdict and the charger's word disagreed for at least
    `grace` log seconds (a message in flight is nobody's fault), with what ended it."""
    by_key: dict[tuple[str, int], list[VerdictSample]] = {}
    for s in sorted(samples, key=lambda s: s.t):
        by_key.setdefault((s.cp, s.connector), []).append(s)
    out: list[Finding] = []
    for key, series in sorted(by_key.items()):
        i = 0
        while i < len(series):
            s = series[i]
            word = log.word_at(key, s.t)
            kind = _mismatch(word, s.verdict, log.connected_at(key[0], s.t))
            if kind is None:
                i += 1
                continue
            j = i
            while j + 1 < len(series):
                nxt = series[j + 1]
                if _mismatch(log.word_at(key, nxt.t), nxt.verdict, log.connected_at(key[0], nxt.t)) != kind:
                    break
                j += 1
            last = series[j]
            after = series[j + 1] if j + 1 < len(series) else None
            until = after.t if after is not None else max(log.end, last.t)
            if until - s.t >= (FINISHING_GRACE if kind == BUSY_FINISHING else grace):
                out.append(_finding(log, key, kind, s, last, after, audit))
            i = j + 1
    return out


def _finding(
    log: ChargerLog,
    key: tuple[str, int],
    kind: str,
    first: VerdictSample,
    last: VerdictSample,
    after: VerdictSample | None,
    audit: Sequence[AuditMark],
) -> Finding:
    word = log.word_at(key, first.t)
    mine = [a for a in audit if a.cp == key[0] and a.connector in (None, key[1])]
    asked = tuple(a for a in mine if a.action in ASKING and first.t - 60 <= a.t <= (after or last).t)
    if after is None:
        return Finding(
            key[0],
            key[1],
            kind,
            first.t,
            max(log.end, last.t),
            first.verdict,
            word,
            False,
            _why_nothing(kind, last.verdict, log.word_at(key, last.t)),
            None,
            asked,
        )
    healed_by, rule = _what_healed(log, key, last, after, mine)
    return Finding(key[0], key[1], kind, first.t, after.t, first.verdict, word, True, healed_by, rule, asked)


def _what_healed(
    log: ChargerLog, key: tuple[str, int], last: VerdictSample, after: VerdictSample, audit: Sequence[AuditMark]
) -> tuple[str, str | None]:
    """Which rule (or message) ended a stretch: the audit trail first, then what the verdict's reasons say."""
    slack = max(30.0, after.t - last.t)
    acting = [a for a in audit if a.action not in ASKING and last.t - slack <= a.t <= after.t + slack]
    if acting:
        a = min(acting, key=lambda a: abs(a.t - after.t))
        return f"{rule_words(a.action)} ({a.action}{_audit_detail(a)})", a.action
    before_word, after_word = log.word_at(key, last.t), log.word_at(key, after.t)
    if after_word != before_word:
        return f"the charger's own word ({after_word.said})", None
    before = last.verdict.reasons
    if before and all(r.startswith("persisted_status:") for r in before):
        return (
            f"the freshness window: the stored status ({before[0].split(':')[1]}) was too old to count "
            "without a live one; no rule acted, the verdict stopped trusting it",
            None,
        )
    if any(r.startswith("websocket:reconnected") for r in before):
        return "the reconnect settle window ended (the charger had not repeated its statuses yet)", None
    if last.verdict.verdict == OFFLINE and after.verdict.verdict != OFFLINE:
        return "the charger's connection came back", None
    # A sample is stamped when it is asked: the CSMS may answer after the log's next moment (a drop just
    # after `after.t` can be what it saw), by up to about the time between two samples.
    late = after.t + max(60.0, 2 * (after.t - last.t))
    if after.verdict.verdict == OFFLINE and _went_offline(log, key[0], last.t, late):
        calls = [e for e in log.events if e.cp == key[0] and e.name[:1].isupper() and last.t - 900 <= e.t <= late]
        cause = f" after {calls[-1].text}" if calls else ""
        return f"the charger's connection dropping{cause}: the CSMS said offline, the charger was gone", None
    return (
        f"the CSMS changed its verdict to {after.verdict.verdict} (its reasons before: "
        f"{', '.join(before) or 'none'}); no audit event names a rule",
        None,
    )


def _went_offline(log: ChargerLog, cp: str, a: float, b: float) -> bool:
    """The log has the charger offline at `b`, or its connection dropping between `a` and `b`."""
    return not log.connected_at(cp, b) or any(a <= t <= b and not up for t, up in log.links.get(cp, ()))


def _why_nothing(kind: str, verdict: Verdict, word: Word) -> str:
    reasons = verdict.reasons
    tx = [r.split(":", 1)[1] for r in reasons if r.startswith("open_transaction:")]
    live = [r.split(":", 1)[1] for r in reasons if r.startswith("live_status:")]
    stored = [r for r in reasons if r.startswith("persisted_status:")]
    if kind == BUSY_FINISHING:
        return (
            "nothing would have: the charger itself kept saying Finishing with no transaction, and no rule "
            "overrides a status the charger keeps; someone at the site (or a Reset) must look at the gun"
        )
    if kind == FREE_WHILE_OCCUPIED:
        return f"nothing would have: the CSMS never learned of the charger's {word.text()}"
    if tx:
        return (
            f"nothing would have: transaction {', '.join(tx)} stayed open in the CSMS (no StopTransaction came, "
            "and no rule closed it although the charger said Available)"
        )
    if live:
        return f"nothing would have: the CSMS kept the charger's last live status {', '.join(live)}"
    if stored:
        return f"nothing would have: the CSMS kept trusting its stored status ({stored[0]})"
    if verdict.verdict == OFFLINE:
        return "nothing would have: the CSMS still held the charger offline"
    return f"nothing would have: the CSMS still said {verdict.verdict} ({', '.join(reasons) or 'no reasons'})"


def _audit_detail(a: AuditMark) -> str:
    reason = (a.details or {}).get("reason")
    subject = f" {a.subject}" if a.subject else ""
    return f"{subject}: {reason}" if reason else subject


def rule_words(action: str) -> str:
    return RULE_WORDS.get(action, f"the CSMS's {action}")


# ------------------------------------------------------------------ the app's actions, asked again
# A re-enacted action's outcome: the CSMS accepted it, refused it (its answer said why), its adapter cannot
# ask it, the ask failed (no answer, an error), or it was not asked (nothing to ask it of).
ACCEPTED, REFUSED, NOT_SUPPORTED, FAILED, SKIPPED = "accepted", "refused", "not_supported", "failed", "skipped"


@dataclass(frozen=True, slots=True)
class Ask:
    """What to ask the CSMS under test for one logged app action: an adapter method and its arguments,
    or why it cannot be asked (`skip`)."""

    method: str  # "start", "stop" or "unlock" (CsmsAdapter's)
    cp: str
    connector: int | None = None
    id_tag: str | None = None
    session_id: str | None = None
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class Reenacted:
    """A logged app action asked again of the CSMS under test, and its answer (log times)."""

    action: AppAction
    asked_at: float
    answered_at: float | None
    outcome: str  # ACCEPTED, REFUSED, NOT_SUPPORTED, FAILED or SKIPPED
    said: str  # the CSMS's answer in words ("HTTP 409 RemoteStartRejected: ...")
    session_id: str | None = None


def what_to_ask(action: AppAction, sessions: Mapping[tuple[str, int], str]) -> Ask:
    """The adapter call that does what the log's app or operator did. A stop names the session the CSMS under
    test opened for a re-enacted start on that connector (`sessions`): the log's transaction id is not its own."""
    cp, c = action.cp, action.connector
    if action.kind == "start":
        if c is None or action.id_tag is None:
            return Ask("start", cp, c, action.id_tag, skip=f"the log's {action.action} names no connector or id tag")
        return Ask("start", cp, c, action.id_tag)
    if action.kind == "stop":
        session = sessions.get((cp, c)) if c is not None else None
        if session is None:
            return Ask(
                "stop",
                cp,
                c,
                skip=f"no session of a re-enacted start to stop (transaction {action.transaction_id} of the log "
                "was not started by a re-enacted remote start)",
            )
        return Ask("stop", cp, c, session_id=session)
    if c is None:
        return Ask("unlock", cp, skip=f"the log's {action.action} names no connector")
    return Ask("unlock", cp, c)


def reenactment_words(
    r: Reenacted,
    log: ChargerLog,
    samples: Sequence[VerdictSample],
    findings: Sequence[Finding],
    epoch: str,
    *,
    end: str = "the log's end",
) -> str:
    """One re-enacted action in words: what was asked, what the CSMS answered, and for a start the charger
    refused, whether the CSMS then held the connector busy with no car (and what freed it), or did not."""
    a = r.action
    where = f" for connector {a.connector}" if a.connector is not None else ""
    tag = f" (idTag {a.id_tag})" if a.id_tag else ""
    answered = f", the charger answered {a.answer}" if a.answer else ", no answer in the log"
    head = f"{clock(a.t, epoch)} {a.cp}: the log's CSMS sent {a.action}{where}{tag}{answered}"
    if r.outcome in (SKIPPED, NOT_SUPPORTED, FAILED):
        return f"{head}; not re-enacted: {r.said}."
    when = clock(r.asked_at, epoch)
    if r.answered_at is not None and r.answered_at - r.asked_at >= 1.0:  # at 1200x a 0.2 s answer is 4 min of log
        when += f", answered at {clock(r.answered_at, epoch)}"
    head = f"{head}; re-enacted (asked of the CSMS under test at {when}): {r.said}."
    if a.kind != "start" or a.connector is None:
        return head
    key = (a.cp, a.connector)
    series = sorted((s for s in samples if (s.cp, s.connector) == key), key=lambda s: s.t)
    before = [s for s in series if s.t <= r.asked_at]
    since = r.answered_at if r.answered_at is not None else r.asked_at
    after = [s for s in series if s.t >= since]
    belief = f" Before the request the CSMS said {_said(before[-1].verdict)}" if before else ""
    if not after:
        return f"{head}{belief}; no verdict was sampled after its answer."
    first = after[0]
    belief += f"{';' if belief else ' The CSMS'} after the answer it said {_said(first.verdict)}."
    if r.outcome == ACCEPTED or log.word_at(key, first.t).state != FREE_W:
        return head + belief
    run = []  # the busy stretch from the first sample after the answer, while the charger says free
    for s in after:
        if s.verdict.verdict != BUSY or log.word_at(key, s.t).state != FREE_W:
            break
        run.append(s)
    if not run:
        return f"{head}{belief} It did not hold the connector busy after the rejection."
    start, freed = run[0], (after[len(run)] if len(run) < len(after) else None)
    held = (
        f" It held the connector busy with no car after the rejection from {clock(start.t, epoch)} "
        f"({', '.join(start.verdict.reasons) or 'no reasons given'})"
    )
    found = next(
        (
            f
            for f in findings
            if (f.cp, f.connector) == key and f.kind == BUSY_WHILE_FREE and f.since <= start.t <= f.until
        ),
        None,
    )
    if found is not None:
        if found.healed:
            return f"{head}{belief}{held}; healed at {clock(found.until, epoch)} by {found.healed_by}."
        return f"{head}{belief}{held}; never freed by {end}: {found.healed_by}."
    if freed is not None:
        brief = f"{_span(freed.t - start.t)}: too short for a finding"
        return f"{head}{belief}{held}; free again at {clock(freed.t, epoch)} ({brief})."
    return f"{head}{belief}{held} until {end}."


def _said(v: Verdict) -> str:
    return f"{v.verdict} ({', '.join(v.reasons) or 'no reasons'})"


# ------------------------------------------------------------------ one moment
def moment_at(
    log: ChargerLog, samples: Sequence[VerdictSample], t: float, keys: Iterable[tuple[str, int]]
) -> list[Moment]:
    """Each connector at log time t: the CSMS's last sampled verdict at or before t, and the charger's word."""
    out = []
    for key in sorted(keys):
        series = [s for s in samples if (s.cp, s.connector) == key and s.t <= t]
        last = max(series, key=lambda s: s.t) if series else None
        out.append(
            Moment(
                key[0],
                key[1],
                t,
                last.verdict if last else None,
                last.t if last else None,
                log.word_at(key, t),
                log.connected_at(key[0], t),
            )
        )
    return out


# ------------------------------------------------------------------ a window of the log
def explained_window(start: float | None, end: float | None, log_start: float, log_end: float) -> tuple[float, float]:
    """`--from`/`--to` (log seconds, already parsed; None: the log's own start or end) as the span to explain,
    clipped to the log; ValueError when it is empty or misses the log."""
    s = log_start if start is None else max(start, log_start)
    e = log_end if end is None else min(end, log_end)
    if start is not None and start >= log_end:
        raise ValueError(f"--from ({start:g} s) is at or after the log's end ({log_end:g} s)")
    if end is not None and end <= log_start:
        raise ValueError(f"--to ({end:g} s) is at or before the log's start ({log_start:g} s)")
    if e <= s:
        raise ValueError(f"--to ({e:g} s) is not after --from ({s:g} s)")
    return s, e


def window_prelude(
    records: Iterable[FrameRecord | LinkRecord], start: float, at: float
) -> list[FrameRecord | LinkRecord]:
    """What the CSMS must have been told before `start` for the window to be judged as the night was, re-stamped
    at log time `at` (just before the window): the subsequence of each charger's frames before `start` that
    still held at `start`, in log order, none of the rest.

    Kept: the charger's last BootNotification; every transaction it started and had not ended (1.6
    StartTransaction with the log's answer, which names the transaction; 2.0.1 TransactionEvent Started),
    with its last MeterValues / TransactionEvent Updated (the meter the CSMS estimates from); each
    connector's last StatusNotification. A transaction counts as open until the charger *sent* its end
    (StopTransaction, TransactionEvent Ended): a later Available does not close it in a CSMS, and a lost
    stop is what the window may be about. A charger offline at `start` (its last link record before it a
    disconnect) gets a disconnect after its prelude: the CSMS learns it, then sees it go.

    Not kept: everything else (heartbeats, authorizations, the CSMS's own calls and what they changed),
    and the times: the CSMS receives all of it at `at`, so its own clocks (a status's age, an orphan's
    grace) start there."""
    order: dict[int, FrameRecord] = {}  # position in the log -> a kept record
    boot: dict[str, int] = {}
    status: dict[tuple[str, int], int] = {}
    online: dict[str, bool] = {}
    starts: dict[tuple[str, str], list[int]] = {}  # (cp, 1.6 message id) -> [its position, its answer's position]
    tx_of_start: dict[tuple[str, str], str] = {}  # (cp, message id) -> the log's transaction id, once answered
    started: dict[tuple[str, str], int] = {}  # (cp, 2.0.1 transaction id) -> position of its Started
    meter: dict[tuple[str, str], int] = {}  # (cp, transaction id, as the log names it) -> its last meter frame
    pending: set[tuple[str, str]] = set()  # (cp, message id) of StartTransactions not answered yet
    for i, rec in enumerate(records):
        if rec.t >= start:
            break
        if isinstance(rec, LinkRecord):
            online[rec.cp] = rec.event == "connect"
            continue
        frame, cp = rec.frame, rec.cp
        online.setdefault(cp, True)
        if rec.direction == "in":  # the log's CSMS: only its answer to a StartTransaction (the transaction's id)
            key = (cp, str(frame[1]) if len(frame) > 1 else "")
            if frame[0] == 3 and key in pending and key in starts and len(frame) > 2 and isinstance(frame[2], dict):
                tx = frame[2].get("transactionId")
                if tx is not None:
                    starts[key].append(i)
                    tx_of_start[key] = str(tx)
                    order[i] = rec
            pending.discard(key)
            continue
        if frame[0] != 2 or len(frame) < 4 or not isinstance(frame[3], dict):
            continue
        uid, action, p = str(frame[1]), str(frame[2]), frame[3]
        if action == "BootNotification":
            _forget(order, boot.get(cp))
            boot[cp] = i
        elif action == "StatusNotification":
            c = p.get("evseId", p.get("connectorId"))
            if isinstance(c, int):
                _forget(order, status.get((cp, c)))
                status[(cp, c)] = i
        elif action == "StartTransaction":
            starts[(cp, uid)] = [i]
            pending.add((cp, uid))
        elif action == "StopTransaction":
            tx = str(p.get("transactionId"))
            uid_of = next((u for (c, u), t in tx_of_start.items() if c == cp and t == tx), None)
            if uid_of is None:  # its start was never answered in the log: the oldest such start of the charger
                uid_of = next((u for (c, u) in starts if c == cp and (c, u) not in tx_of_start), None)
            for pos in starts.pop((cp, uid_of), []) if uid_of is not None else []:
                _forget(order, pos)
            tx_of_start.pop((cp, uid_of or ""), None)
            _forget(order, meter.pop((cp, tx), None))
            continue
        elif action == "MeterValues" and p.get("transactionId") is not None:
            tx = str(p["transactionId"])
            _forget(order, meter.get((cp, tx)))
            meter[(cp, tx)] = i
        elif action == "TransactionEvent":
            tx = str((p.get("transactionInfo") or {}).get("transactionId"))
            event = p.get("eventType")
            if event == "Started":
                started[(cp, tx)] = i
            elif event == "Ended":
                _forget(order, started.pop((cp, tx), None))
                _forget(order, meter.pop((cp, tx), None))
                continue
            else:
                _forget(order, meter.get((cp, tx)))
                meter[(cp, tx)] = i
        else:
            continue
        order[i] = rec
    out: list[FrameRecord | LinkRecord] = [
        FrameRecord(at, r.cp, r.direction, r.frame) for _, r in sorted(order.items())
    ]
    told = {r.cp for r in out}
    out += [LinkRecord(at, cp, "disconnect", "offline at the window's start") for cp in sorted(told) if not online[cp]]
    return out


def _forget(order: dict[int, FrameRecord], pos: int | None) -> None:
    if pos is not None:
        order.pop(pos, None)


# ------------------------------------------------------------------ times
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?$")


def _epoch(epoch: str) -> datetime:
    return datetime.fromisoformat(epoch.replace("Z", "+00:00")).astimezone(UTC)


def parse_log_time(text: str, epoch: str) -> float:
    """`--at`: log seconds ("5400"), a clock time ("03:12", "03:12:30": the first such moment at or after the
    log's start) or an ISO time; ValueError with what it expected."""
    text = text.strip()
    start = _epoch(epoch)
    try:
        return float(text)
    except ValueError:
        pass
    m = _CLOCK.match(text)
    if m:
        h, mi, s = int(m.group(1)), int(m.group(2)), float(m.group(3) or 0)
        if h > 23 or mi > 59 or s >= 60:
            raise ValueError(f"{text!r} is not a time of day")
        at = start.replace(hour=h, minute=mi, second=0, microsecond=0) + timedelta(seconds=s)
        if at < start - timedelta(seconds=1):
            at += timedelta(days=1)
        return (at - start).total_seconds()
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r}: expected log seconds, a clock time (03:12) or an ISO time") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - start).total_seconds()


def clock(t: float, epoch: str) -> str:
    """Log time as the log's own clock (UTC, HH:MM:SS): a night reads as the ticket tells it."""
    return (_epoch(epoch) + timedelta(seconds=t)).strftime("%H:%M:%S")


def _span(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def describe_finding(f: Finding, epoch: str, *, end: str = "the log's end") -> str:
    """The finding in words, one paragraph (`end`: what its unhealed end was, "the window's end" with --to)."""
    reasons = ", ".join(f.verdict.reasons) or "no reasons given"
    head = (
        f"{f.cp} connector {f.connector}: {KIND_WORDS.get(f.kind, f.kind)}, from {clock(f.since, epoch)} "
        f"for {_span(f.until - f.since)}. The CSMS said {f.verdict.verdict} ({reasons}); the charger had said "
        f"{f.word.text()} since {clock(f.word.t, epoch)} ({f.word.said})."
    )
    asked = ""
    if f.asked:
        asked = f" Meanwhile the CSMS asked {len(f.asked)} time(s): {rule_words(f.asked[0].action)}."
    if f.healed:
        return f"{head}{asked} Healed at {clock(f.until, epoch)} by {f.healed_by}."
    return f"{head}{asked} Not healed by {end} ({clock(f.until, epoch)}): {f.healed_by}."
