"""What the field-log readers share: the actions of each OCPP version and their direction, a read
entry or bad line, the import's options, times, and frame checks (importers.py and import_csv.py)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from simulator.errors import SimulatorError

from .import_sort import RUN_BYTES

# The actions of OCPP 1.6 (with its security whitepaper) and 2.0.1, as the `ocpp` library's
# `Action` enums list them (tests/simulator/test_fieldlog_import.py checks they still agree).
V16_ACTIONS = frozenset(
    "Authorize BootNotification CancelReservation CertificateSigned ChangeAvailability ChangeConfiguration "
    "ClearCache ClearChargingProfile DataTransfer DeleteCertificate DiagnosticsStatusNotification "
    "ExtendedTriggerMessage FirmwareStatusNotification GetCompositeSchedule GetConfiguration GetDiagnostics "
    "GetInstalledCertificateIds GetLocalListVersion GetLog Heartbeat InstallCertificate LogStatusNotification "
    "MeterValues RemoteStartTransaction RemoteStopTransaction ReserveNow Reset SecurityEventNotification "
    "SendLocalList SetChargingProfile SignCertificate SignedFirmwareStatusNotification SignedUpdateFirmware "
    "StartTransaction StatusNotification StopTransaction TriggerMessage UnlockConnector UpdateFirmware".split()
)
V201_ACTIONS = frozenset(
    "Authorize BootNotification CancelReservation CertificateSigned ChangeAvailability ClearCache "
    "ClearChargingProfile ClearDisplayMessage ClearVariableMonitoring ClearedChargingLimit CostUpdated "
    "CustomerInformation DataTransfer DeleteCertificate FirmwareStatusNotification Get15118EVCertificate "
    "GetBaseReport GetCertificateStatus GetChargingProfiles GetCompositeSchedule GetDisplayMessages "
    "GetInstalledCertificateIds GetLocalListVersion GetLog GetMonitoringReport GetReport GetTransactionStatus "
    "GetVariables Heartbeat InstallCertificate LogStatusNotification MeterValues NotifyChargingLimit "
    "NotifyCustomerInformation NotifyDisplayMessages NotifyEVChargingNeeds NotifyEVChargingSchedule NotifyEvent "
    "NotifyMonitoringReport NotifyReport PublishFirmware PublishFirmwareStatusNotification ReportChargingProfiles "
    "RequestStartTransaction RequestStopTransaction ReservationStatusUpdate ReserveNow Reset "
    "SecurityEventNotification SendLocalList SetChargingProfile SetDisplayMessage SetMonitoringBase "
    "SetMonitoringLevel SetNetworkProfile SetVariableMonitoring SetVariables SignCertificate StatusNotification "
    "TransactionEvent TriggerMessage UnlockConnector UnpublishFirmware UpdateFirmware".split()
)
# What a charger sends (the spec's direction). One set serves both versions: no action goes one
# way in 1.6 and the other in 2.0.1. DataTransfer goes both ways; it is listed as the charger's.
CP_ACTIONS = frozenset(
    "Authorize BootNotification DataTransfer DiagnosticsStatusNotification FirmwareStatusNotification Heartbeat "
    "LogStatusNotification MeterValues SecurityEventNotification SignCertificate SignedFirmwareStatusNotification "
    "StartTransaction StatusNotification StopTransaction ClearedChargingLimit Get15118EVCertificate "
    "GetCertificateStatus NotifyChargingLimit NotifyCustomerInformation NotifyDisplayMessages "
    "NotifyEVChargingNeeds NotifyEVChargingSchedule NotifyEvent NotifyMonitoringReport NotifyReport "
    "PublishFirmwareStatusNotification ReportChargingProfiles ReservationStatusUpdate TransactionEvent".split()
)
CSMS_ACTIONS = (V16_ACTIONS | V201_ACTIONS) - CP_ACTIONS
V16_ONLY = V16_ACTIONS - V201_ACTIONS
V201_ONLY = V201_ACTIONS - V16_ACTIONS

FORMATS = ("jsonl", "frames", "ocpp-core-csv", "trace")
MAX_LINE = 1 << 20  # a longer "line" is not a log line (a binary file has few newlines)
PENDING_CALLS = 100_000  # CALLs kept waiting for their answer in `frames`; older ones are forgotten
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


class FieldLogImportError(SimulatorError):
    """A field log that cannot be imported: names the file, the line and why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing the log says: a frame (`kind` out/in) or a link event, at `us` microseconds since 1970."""

    us: int
    cp: str
    kind: str  # "out": the charger sent it; "in": the CSMS sent it; "link": connect/disconnect
    frame: list[Any] | None = None
    event: str = ""
    why: str = ""


@dataclass(frozen=True, slots=True)
class Bad:
    """A line the reader could not use. `fatal` lines stop the import unless --skip-bad; the others
    are well formed but carry nothing to replay, and are always skipped and counted."""

    line: int
    reason: str
    fatal: bool = True


@dataclass(frozen=True)
class ImportOptions:
    format: str = "jsonl"
    skip_bad: bool = False
    cp: str | None = None  # `frames`: the charger of lines that name none
    gap_seconds: float | None = None
    run_bytes: int = RUN_BYTES


Reader = Callable[[Path, ImportOptions], Iterator["Entry | Bad"]]


# --- times and frames ---------------------------------------------------------------------------


def parse_time(value: Any) -> int:
    """Microseconds since 1970 UTC. ISO 8601 without a zone is UTC; a number is epoch s (or ms > 1e11)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch_number(float(value))
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"no time ({value!r})")
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return _epoch_number(float(text))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r} is neither ISO 8601 nor epoch seconds/milliseconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


def _epoch_number(x: float) -> int:
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"time {x!r} is not a time since 1970")
    return round(x * 1000) if x >= 1e11 else round(x * 1_000_000)


def iso(us: int) -> str:
    """ISO 8601 UTC with `Z`: milliseconds, or microseconds when the time has them."""
    dt = _EPOCH + timedelta(microseconds=us)
    spec = "milliseconds" if us % 1000 == 0 else "microseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def check_frame(frame: Any) -> str | None:
    """Why `frame` is not an OCPP-J message array, or None when it is one."""
    if not isinstance(frame, list) or not frame:
        return "frame is not an OCPP-J array"
    kind, n = frame[0], len(frame)
    if kind == 2:
        ok = n == 4 and isinstance(frame[1], str) and isinstance(frame[2], str) and frame[2] != ""
        return None if ok and isinstance(frame[3], dict) else "a CALL must be [2, id, action, {payload}]"
    if kind == 3:
        ok = n == 3 and isinstance(frame[1], str) and isinstance(frame[2], dict)
        return None if ok else "a CALLRESULT must be [3, id, {payload}]"
    if kind == 4:
        ok = n in (4, 5) and isinstance(frame[1], str) and isinstance(frame[2], str)
        return None if ok else "a CALLERROR must be [4, id, code, description, {details}]"
    return f"message type {kind!r} is not 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR)"


def frame_from_text(text: str) -> list[Any] | str:
    """The frame in `text`, or why it is not one (a frame cut short is the usual reason)."""
    try:
        frame = json.loads(text)
    except ValueError:
        return "frame is not valid JSON (cut short?)"
    return check_frame(frame) or frame


# --- lines --------------------------------------------------------------------------------------


def text_lines(path: Path) -> Iterator[tuple[int, str | Bad]]:
    """(line number, text) in file order; a line that is not UTF-8 text comes as a Bad instead.

    Reads bytes with a length cap so that a binary file (few newlines) or a runaway line cannot
    fill memory; a UTF-8 byte order mark (Excel's CSV) is dropped.
    """
    with open(path, "rb") as f:
        line_no = 0
        while raw := f.readline(MAX_LINE):
            line_no += 1
            if len(raw) >= MAX_LINE and not raw.endswith(b"\n"):
                while (more := f.readline(MAX_LINE)) and not more.endswith(b"\n"):
                    pass
                yield line_no, Bad(line_no, "a line longer than 1 MiB: not a log line (a binary file?)")
                continue
            if b"\x00" in raw:
                yield line_no, Bad(line_no, "binary data (NUL bytes), not a text log")
                continue
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError:
                yield line_no, Bad(line_no, "not UTF-8 text (a binary file?)")
                continue
            yield line_no, text


def not_json(text: str) -> str:
    """Why a line is not JSON, with a hint when it looks like another format."""
    stripped = text.strip()
    if "ChargePointId" in stripped and "," in stripped or stripped.count(",") >= 4 and "[" not in stripped:
        return "not a JSON line (it looks like CSV: --format ocpp-core-csv?)"
    if re.match(r"(\d{4}-\d\d-\d\d[T ]\S+|\d+(\.\d+)?)\s+(\S+\s+)?\[", stripped):
        return "not a JSON line (it looks like timestamped frames: --format frames?)"
    return "not a JSON line (cut short?)"


# --- jsonl --------------------------------------------------------------------------------------
