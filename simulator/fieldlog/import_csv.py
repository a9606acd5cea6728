"""`--format ocpp-core-csv`: OCPP.Core's MessageLog table, exported as CSV, made into frames.

OCPP.Core (github.com/dallmann-consulting/OCPP.Core) keeps no frames: each handled message writes
one MessageLog row through `WriteMessageLog(chargePointId, connectorId, message, result,
errorCode)`. This reader was written from those calls (ControllerOCPP16.*.cs and ControllerOCPP20.*.cs
as of 2026). It is lossy: whatever a row does not hold is reconstructed or assumed, as said below.

Columns read (the first row names them; any order, any case; `,`, `;` or tab between them):

* `LogTime`: the frame's time (OCPP.Core writes `DateTime.UtcNow`; without a zone it is UTC).
* `ChargePointId`: the charger, kept exactly as spelled.
* `ConnectorId`: the connector (1.6) or EVSE (2.0.1) id, when the row has one.
* `Message`: the action.
* `Result`: the short text OCPP.Core logged (per action, below).
* `ErrorCode`: an OCPP error code: the answer becomes a CALLERROR with it (not for StatusNotification,
  whose ErrorCode column is the charger's own errorCode).
* `LogId`: only the message ids (`csv-<LogId>`, else `csv-<line>`) and made-up transaction ids.

Each row becomes the CALL and its answer at the row's time. What each action (Result as logged)
becomes:

* BootNotification (1.6: no Result; 2.0.1: the boot reason): vendor and model "unknown" (2.0.1: that
  reason); the answer Accepted with interval 300 (OCPP.Core's default HeartBeatInterval).
* Heartbeat (no Result): CALL {}; the answer holds the row's time.
* StatusNotification (1.6: `Info=.. / Status=.. / `, ErrorCode the charger's errorCode; 2.0.1:
  `Status=..`; a bare status word is read too): that status on ConnectorId (1.6) or on EVSE
  ConnectorId, connector 1 (2.0.1); the answer {}.
* Authorize (`'TAG'=>Accepted`): the idTag (2.0.1: an ISO14443 idToken) and its status.
* StartTransaction (the idTagInfo status): connectorId is ConnectorId when above 0 (OCPP.Core logs
  -1), else the charger's last Preparing connector, else 1; idTag the charger's last Authorize tag,
  else "unknown"; meterStart the last meter reading on that connector, else 0. The answer has the
  status and, when Accepted, transactionId = LogId.
* StopTransaction (the idTagInfo status; an `UnknownTransaction:ID=../Meter=..` row before it):
  transactionId from that row, else the charger's open transaction (on the connector last reported
  Finishing, else the oldest); meterStop that row's Meter, else the last reading. The answer: the status.
* MeterValues (`Meter (kWh): .. | Charge (kW): .. | SoC (%): ..`): one meterValue with energy (Wh),
  power (W) and SoC, each when logged (OCPP.Core writes -1 for none); a decimal comma is read too.
* TransactionEvent (`StartTx => STATUS | Meter..`, `UpdateTx => Meter..`, `EndTx => STATUS | Meter..`):
  Started/Updated/Ended on EVSE ConnectorId, transactionId `csv-<LogId of its start>`, seqNo counted
  per transaction, triggerReason Authorized/MeterValuePeriodic/StopAuthorized (assumed), the reading.
  The answer: the idTokenInfo status.
* DataTransfer (`VendorId=.. / MessageId=.. / Data=..`): those fields; the answer Accepted.
* An action the CSMS sends (Reset, UnlockConnector, RemoteStartTransaction, ...; Result: the
  charger's answer status): the CSMS's CALL with an empty payload (not logged), the charger's
  answer {"status": Result}.
* Any other action (OCPP.Core logs the raw payload of an action it does not support, ErrorCode
  NotSupported): the CALL with Result as payload when it is a JSON object, else {}; the answer {}.

Skipped and counted always: rows whose ErrorCode is "Unknown answer" (an answer OCPP.Core could not
match), the `UnknownTransaction` rows (folded into the row that follows them), MeterValues without a
reading, a StatusNotification without a status. A row without a time, charger or action is a bad
line (stops the import unless --skip-bad).

Note: with OCPP.Core's default `DbMessageLog: 1`, BootNotification, Heartbeat, DataTransfer and
StatusNotification are not logged at all; only `DbMessageLog: 2` exports have them. A log without
StatusNotification rows tells little about a stuck connector.

The file is read twice, streamed: first for each charger's OCPP version (by its actions and its
rows' shapes), then for the frames.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .import_common import (
    CSMS_ACTIONS,
    V16_ONLY,
    V201_ONLY,
    Bad,
    Entry,
    FieldLogImportError,
    ImportOptions,
    iso,
    parse_time,
    text_lines,
)

__all__ = ["COLUMNS", "read_ocpp_core_csv"]

COLUMNS = ("LogId", "LogTime", "ChargePointId", "ConnectorId", "Message", "Result", "ErrorCode")
_REQUIRED = ("LogTime", "ChargePointId", "Message")
_V16_ERRORS = frozenset(
    "ConnectorLockFailure EVCommunicationError GroundFailure HighTemperature InternalError LocalListConflict "
    "NoError OtherError OverCurrentFailure OverVoltage PowerMeterFailure PowerSwitchFailure ReaderFailure "
    "ResetFailure UnderVoltage WeakSignal".split()
)
_STATUS = re.compile(r"Status=([A-Za-z]+)")
_INFO = re.compile(r"Info=(.*?) / Status=")
_TAG = re.compile(r"'(.*)'=>(\w*)")
_UNKNOWN_TX = re.compile(r"UnknownTransaction:U?ID=([^/]*)/Meter=(.*)")
_TX_EVENT = re.compile(r"(StartTx|UpdateTx|EndTx) => ?([A-Za-z]*)")
_FIELD = re.compile(r"(Meter \(kWh\)|Charge \(kW\)|SoC \(%\)): *(-?[\d.,]+)")
_DATA = re.compile(r"VendorId=(.*?) / MessageId=(.*?) / Data=(.*)")
_OPEN_TX = 64  # open transactions kept per charger (a log of many unmatched starts stays small)


@dataclass
class _Row:
    line: int
    us: int
    cp: str
    connector: int | None
    action: str
    result: str
    error: str
    log_id: str


@dataclass
class _ChargerState:
    """What earlier rows of one charger tell a later, lossy row (streamed: small per charger)."""

    version: str
    tag: str = "unknown"
    preparing: int | None = None  # the connector last reported Preparing
    finishing: int | None = None  # the connector last reported Finishing
    meter_wh: dict[int, float] = field(default_factory=dict)
    open_tx: OrderedDict[int, tuple[int | str, int]] = field(default_factory=OrderedDict)  # tx -> connector
    unknown_stop: tuple[str, str] | None = None  # (transaction id, meter) of an UnknownTransaction row
    seq: Counter[str] = field(default_factory=Counter)  # TransactionEvent seqNo per transaction id


def read_ocpp_core_csv(path: Path, options: ImportOptions) -> Iterator[Entry | Bad]:
    """The frames of a MessageLog export: a version pass, then the frames pass."""
    versions = _versions(path)
    states: dict[str, _ChargerState] = {}
    for row in _rows(path):
        if isinstance(row, Bad):
            yield row
            continue
        state = states.get(row.cp) or states.setdefault(row.cp, _ChargerState(versions.get(row.cp, "1.6")))
        yield from _row_entries(row, state)


def _dialect(header: str) -> str:
    return max((",", ";", "\t"), key=header.count)


def _rows(path: Path) -> Iterator[_Row | Bad]:
    """The rows as _Row, a Bad for each unreadable one; FieldLogImportError when it is no MessageLog."""
    bad: list[Bad] = []

    def lines() -> Iterator[str]:
        for _, text in text_lines(path):
            if isinstance(text, Bad):
                bad.append(text)  # the reader sees an empty line; the Bad is yielded in its place
                yield "\n"
            else:
                yield text

    stream = lines()
    header_line, header = _header(path, stream, bad)
    names = next(csv.reader([header], delimiter=_dialect(header)))
    columns = {n.strip().lower(): i for i, n in enumerate(names)}
    missing = [c for c in _REQUIRED if c.lower() not in columns]
    if missing:
        raise FieldLogImportError(
            f"{path}:{header_line}: not an OCPP.Core MessageLog export: the first row must name the columns "
            f"{', '.join(COLUMNS)} (missing {', '.join(missing)})"
        )
    reader = csv.reader(stream, delimiter=_dialect(header))
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Bad(header_line + reader.line_num, f"not a CSV row ({exc})")
            continue
        yield from bad
        bad.clear()
        if cells:
            yield _row(header_line + reader.line_num, cells, columns)


def _header(path: Path, stream: Iterator[str], bad: list[Bad]) -> tuple[int, str]:
    """The first non-empty line (the column names) and its number."""
    for line_no, text in enumerate(stream, 1):
        if bad:
            raise FieldLogImportError(f"{path}:{bad[0].line}: {bad[0].reason}: not an OCPP.Core MessageLog export")
        if text.strip():
            return line_no, text
    raise FieldLogImportError(f"{path}: empty: not an OCPP.Core MessageLog export")


def _row(line: int, cells: list[str], columns: dict[str, int]) -> _Row | Bad:
    def cell(name: str) -> str:
        i = columns.get(name.lower())
        return cells[i].strip() if i is not None and i < len(cells) else ""

    if len(cells) < len(columns):
        return Bad(line, f"{len(cells)} cells, the header names {len(columns)} (a row cut short?)")
    cp, action = cell("ChargePointId"), cell("Message")
    if not cp or not action:
        return Bad(line, "no ChargePointId or no Message")
    try:
        us = parse_time(cell("LogTime"))
    except ValueError as exc:
        return Bad(line, f"LogTime: {exc}")
    connector = cell("ConnectorId")
    try:
        conn = int(connector) if connector and connector.upper() != "NULL" else None
    except ValueError:
        return Bad(line, f"ConnectorId {connector!r} is not a number")
    result, error = (_null(cell(c)) for c in ("Result", "ErrorCode"))
    return _Row(line, us, cp, conn, action, result, error, cell("LogId") or str(line))


def _null(text: str) -> str:
    """A database export writes a missing value as NULL or nothing."""
    return "" if text.upper() == "NULL" else text


def _versions(path: Path) -> dict[str, str]:
    """Each charger's OCPP version: the first pass, by its actions and its rows' shapes."""
    votes: dict[str, Counter[str]] = {}
    try:
        for row in _rows(path):
            vote = None if isinstance(row, Bad) else _vote(row)
            if vote and isinstance(row, _Row):
                votes.setdefault(row.cp, Counter())[vote] += 1
    except FieldLogImportError:
        return {}  # the frames pass says what is wrong, at the same place
    return {cp: "2.0.1" if v["2.0.1"] > v["1.6"] else "1.6" for cp, v in votes.items()}


def _vote(row: _Row) -> str | None:
    if row.action in V201_ONLY:
        return "2.0.1"
    if row.action in V16_ONLY:
        return "1.6"
    if row.action == "StatusNotification":
        return "1.6" if "Info=" in row.result else "2.0.1" if row.result.startswith("Status=") else None
    return None


# --- one row -> frames --------------------------------------------------------------------------


def _row_entries(row: _Row, state: _ChargerState) -> list[Entry | Bad]:
    if row.error == "Unknown answer":
        return [Bad(row.line, "an answer OCPP.Core could not match to a request", fatal=False)]
    mid = f"csv-{row.log_id}"
    if row.action in CSMS_ACTIONS:
        answer = _answer(row, mid, {"status": row.result} if row.result else {})
        return [Entry(row.us, row.cp, "in", [2, mid, row.action, {}]), _flip(answer)]
    build = _BUILDERS.get(row.action, _other)
    made = build(row, state)
    if isinstance(made, Bad):
        return [made]
    payload, answer_payload = made
    return [Entry(row.us, row.cp, "out", [2, mid, row.action, payload]), _answer(row, mid, answer_payload)]


def _answer(row: _Row, mid: str, payload: dict[str, Any]) -> Entry:
    """The CSMS's answer (`in`): a CALLERROR when the row has an OCPP error code."""
    if row.error and row.action != "StatusNotification":
        return Entry(row.us, row.cp, "in", [4, mid, row.error, "", {}])
    return Entry(row.us, row.cp, "in", [3, mid, payload])


def _flip(e: Entry) -> Entry:
    """The same frame the other way: for a CALL the CSMS sent, the answer is the charger's."""
    return Entry(e.us, e.cp, "out" if e.kind == "in" else "in", e.frame)


Built = tuple[dict[str, Any], dict[str, Any]] | Bad


def _boot(row: _Row, state: _ChargerState) -> Built:
    answer = {"status": "Accepted", "currentTime": iso(row.us), "interval": 300}
    if state.version == "2.0.1":
        station = {"model": "unknown", "vendorName": "unknown"}
        return {"reason": row.result or "Unknown", "chargingStation": station}, answer
    return {"chargePointVendor": "unknown", "chargePointModel": "unknown"}, answer


def _heartbeat(row: _Row, state: _ChargerState) -> Built:
    return {}, {"currentTime": iso(row.us)}


def _status(row: _Row, state: _ChargerState) -> Built:
    m = _STATUS.search(row.result)
    status = m.group(1) if m else row.result if row.result.isalpha() else ""
    if not status:
        return Bad(row.line, "a StatusNotification without a status in Result", fatal=False)
    connector = row.connector if row.connector is not None else 0
    if status == "Preparing":
        state.preparing = connector
    if status == "Finishing":
        state.finishing = connector
    if state.version == "2.0.1":
        return {"timestamp": iso(row.us), "connectorStatus": status, "evseId": connector, "connectorId": 1}, {}
    payload: dict[str, Any] = {
        "connectorId": connector,
        "errorCode": row.error if row.error in _V16_ERRORS else "NoError",
        "status": status,
        "timestamp": iso(row.us),
    }
    info = _INFO.search(row.result)
    if info and info.group(1).strip():
        payload["info"] = info.group(1).strip()
    return payload, {}


def _authorize(row: _Row, state: _ChargerState) -> Built:
    m = _TAG.search(row.result)
    tag, status = (m.group(1), m.group(2) or "Accepted") if m else ("unknown", "Accepted")
    if tag:
        state.tag = tag
    if state.version == "2.0.1":
        return {"idToken": {"idToken": tag, "type": "ISO14443"}}, {"idTokenInfo": {"status": status}}
    return {"idTag": tag}, {"idTagInfo": {"status": status}}


def _start(row: _Row, state: _ChargerState) -> Built:
    connector = row.connector if row.connector and row.connector > 0 else state.preparing or 1
    status = row.result or "Accepted"
    answer: dict[str, Any] = {"idTagInfo": {"status": status}, "transactionId": 0}
    if status == "Accepted" and not row.error:
        tx = int(row.log_id) if row.log_id.isdigit() else row.line
        answer["transactionId"] = tx
        state.open_tx[tx] = (tx, connector)
        if len(state.open_tx) > _OPEN_TX:
            state.open_tx.popitem(last=False)
    meter = round(state.meter_wh.get(connector, 0))
    return {"connectorId": connector, "idTag": state.tag, "meterStart": meter, "timestamp": iso(row.us)}, answer


def _stop(row: _Row, state: _ChargerState) -> Built:
    unknown = _UNKNOWN_TX.match(row.result)
    if unknown:
        state.unknown_stop = (unknown.group(1), unknown.group(2))
        return Bad(row.line, "an UnknownTransaction row (folded into the StopTransaction row after it)", fatal=False)
    tx: int | None = None
    meter: float | None = None
    if state.unknown_stop is not None:
        tx_text, meter_text = state.unknown_stop
        state.unknown_stop = None
        tx = int(tx_text) if tx_text.strip().isdigit() else 0
        meter = _number(meter_text)
    elif state.open_tx:
        tx = next((t for t, (_, c) in state.open_tx.items() if c == state.finishing), next(iter(state.open_tx)))
    connector = state.open_tx.pop(tx, (0, state.finishing or 0))[1] if tx is not None else 0
    if meter is None:
        meter = state.meter_wh.get(connector, 0.0)
    payload = {"transactionId": tx or 0, "meterStop": round(meter), "timestamp": iso(row.us)}
    return payload, {"idTagInfo": {"status": row.result or "Accepted"}}


def _number(text: str) -> float | None:
    """A number as OCPP.Core's server culture wrote it (a decimal comma in much of Europe)."""
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return None


def _readings(row: _Row) -> dict[str, float]:
    out = {}
    for name, value in _FIELD.findall(row.result):
        x = _number(value)
        if x is not None and x >= 0:
            out[name] = x
    return out


def _sampled(readings: dict[str, float], version: str) -> list[dict[str, Any]]:
    """Sampled values in the version's shape: 1.6 wants strings, 2.0.1 numbers and unitOfMeasure."""
    values = []
    for name, measurand, unit, scale in (
        ("Meter (kWh)", "Energy.Active.Import.Register", "Wh", 1000),
        ("Charge (kW)", "Power.Active.Import", "W", 1000),
        ("SoC (%)", "SoC", "Percent", 1),
    ):
        if name in readings:
            x = round(readings[name] * scale, 3)
            if version == "2.0.1":
                values.append({"value": x, "measurand": measurand, "unitOfMeasure": {"unit": unit}})
            else:
                values.append({"value": f"{x:g}", "measurand": measurand, "unit": unit})
    return values


def _meter_values(row: _Row, state: _ChargerState) -> Built:
    readings = _readings(row)
    if not readings:
        return Bad(row.line, "a MeterValues row with no reading in Result", fatal=False)
    connector = row.connector or 0
    if "Meter (kWh)" in readings:
        state.meter_wh[connector] = readings["Meter (kWh)"] * 1000
    meter_value = [{"timestamp": iso(row.us), "sampledValue": _sampled(readings, state.version)}]
    if state.version == "2.0.1":
        return {"evseId": connector, "meterValue": meter_value}, {}
    payload: dict[str, Any] = {"connectorId": connector, "meterValue": meter_value}
    tx = next((t for t, (_, c) in state.open_tx.items() if c == connector), None)
    if tx is not None:
        payload["transactionId"] = tx
    return payload, {}


def _transaction_event(row: _Row, state: _ChargerState) -> Built:
    if _UNKNOWN_TX.match(row.result):
        return Bad(row.line, "an UnknownTransaction row (the TransactionEvent row after it has the event)", fatal=False)
    m = _TX_EVENT.match(row.result)
    kind, status = (m.group(1), m.group(2)) if m else ("UpdateTx", "")
    event, trigger = {
        "StartTx": ("Started", "Authorized"),
        "UpdateTx": ("Updated", "MeterValuePeriodic"),
        "EndTx": ("Ended", "StopAuthorized"),
    }[kind]
    evse = row.connector or 0
    if event == "Started":
        tx: int | str = f"csv-{row.log_id}"
        state.open_tx[row.line] = (tx, evse)
        if len(state.open_tx) > _OPEN_TX:
            state.open_tx.popitem(last=False)
    else:
        key = next((k for k, (_, c) in state.open_tx.items() if c == evse), None)
        tx = state.open_tx[key][0] if key is not None else f"csv-unknown-{evse}"
        if event == "Ended" and key is not None:
            del state.open_tx[key]
    payload: dict[str, Any] = {
        "eventType": event,
        "timestamp": iso(row.us),
        "triggerReason": trigger,
        "seqNo": state.seq[str(tx)],
        "transactionInfo": {"transactionId": str(tx)},
    }
    state.seq[str(tx)] += 1
    if event == "Ended" or len(state.seq) > _OPEN_TX:
        del state.seq[str(tx) if event == "Ended" else next(iter(state.seq))]
    if evse > 0:
        payload["evse"] = {"id": evse, "connectorId": 1}
    readings = _readings(row)
    if readings:
        payload["meterValue"] = [{"timestamp": iso(row.us), "sampledValue": _sampled(readings, "2.0.1")}]
    return payload, ({"idTokenInfo": {"status": status}} if status else {})


def _data_transfer(row: _Row, state: _ChargerState) -> Built:
    m = _DATA.match(row.result)
    payload: dict[str, Any] = {"vendorId": m.group(1) if m else "unknown"}
    if m and m.group(2):
        payload["messageId"] = m.group(2)
    if m and m.group(3):
        payload["data"] = m.group(3)
    return payload, {"status": "Accepted"}


def _other(row: _Row, state: _ChargerState) -> Built:
    try:
        payload = json.loads(row.result) if row.result.startswith("{") else {}
    except ValueError:
        payload = {}
    return (payload if isinstance(payload, dict) else {}), {}


_BUILDERS = {
    "BootNotification": _boot,
    "Heartbeat": _heartbeat,
    "StatusNotification": _status,
    "Authorize": _authorize,
    "StartTransaction": _start,
    "StopTransaction": _stop,
    "MeterValues": _meter_values,
    "TransactionEvent": _transaction_event,
    "DataTransfer": _data_transfer,
}
