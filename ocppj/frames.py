"""OCPP-J framing, sans IO: text <-> Call / CallResult / CallError.

The message classes are the `ocpp` package's own (`ocpp.messages`); this module
adds strict decoding that says *why* a frame is bad and which unique id (if any)
the CallError should carry, which `ocpp.messages.unpack` does not.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ocpp.messages import Call, CallError, CallResult

from ocppj.errors import OcppCallError

__all__ = ["Call", "CallResult", "CallError", "decode", "encode_call", "encode_result", "encode_error"]

CALL, CALLRESULT, CALLERROR = 2, 3, 4
_ID_RE = re.compile(r'^\s*\[\s*[234]\s*,\s*"([^"\\]{1,64})"')
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _guess_id(text: str) -> str:
    """Best effort unique id of a frame too broken to parse ("-1" if none)."""
    m = _ID_RE.match(text)
    return m.group(1) if m else "-1"


def _without_nul(text: str) -> str:
    """A peer's CallError code or description with NUL (U+0000) shown as U+FFFD. A Call or CallResult holding
    NUL is refused by the schema check (ocppj.schemas), but a CallError cannot be answered: its text is kept,
    and it reaches storage (a session's failure reason), where PostgreSQL refuses NUL with an InternalError."""
    return text.replace("\x00", "\ufffd")


def decode(text: str | bytes) -> Call | CallResult | CallError:
    """Parse one WebSocket message; raise OcppCallError naming the defect."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise OcppCallError("FormationViolation", "frame is not UTF-8 text", unique_id="-1") from None
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise OcppCallError(
            "FormationViolation", "frame is not valid JSON (or nested too deeply)", unique_id=_guess_id(text)
        ) from None
    if not isinstance(msg, list) or not msg:
        raise OcppCallError("FormationViolation", "frame must be a JSON array [type, id, ...]", unique_id="-1")
    kind = msg[0]
    uid = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
    if kind == CALL:
        if len(msg) != 4 or uid is None or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
            raise OcppCallError(
                "FormationViolation",
                "a Call must be [2, uniqueId:string, action:string, payload:object]",
                unique_id=uid or "-1",
            )
        return Call(uid, msg[2], msg[3])
    if kind == CALLRESULT:
        if len(msg) != 3 or uid is None or not isinstance(msg[2], dict):
            raise OcppCallError(
                "FormationViolation",
                "a CallResult must be [3, uniqueId:string, payload:object]",
                unique_id=uid or "-1",
            )
        return CallResult(uid, msg[2])
    if kind == CALLERROR:
        if len(msg) != 5 or uid is None or not isinstance(msg[2], str) or not isinstance(msg[3], str):
            raise OcppCallError(
                "FormationViolation",
                "a CallError must be [4, uniqueId, errorCode, errorDescription, errorDetails]",
                unique_id=uid or "-1",
            )
        return CallError(uid, _without_nul(msg[2]), _without_nul(msg[3]), msg[4])
    raise OcppCallError("ProtocolError", f"unknown MessageTypeId {kind!r} (expected 2, 3 or 4)", unique_id=uid or "-1")


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    return _dumps([CALL, unique_id, action, payload])


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    return _dumps([CALLRESULT, unique_id, payload])


def encode_error(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> str:
    return _dumps([CALLERROR, unique_id, code, description, details or {}])
