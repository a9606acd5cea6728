"""Compiled JSON-schema validation of OCPP 1.6 and 2.0.1 payloads.

The schemas are the ones the `ocpp` package bundles; they are compiled once per
action with fastjsonschema (~20x cheaper per message than the jsonschema path
the library uses). Two deliberate relaxations and three tightenings:
- ``format: uri`` is not enforced, and ``date-time`` only in requests (a Call's
  payload): an answer's odd timestamp is parsed where it is used, as the `ocpp`
  library (jsonschema's Draft4Validator) lets it through, but a StartTransaction
  stamped "not-a-date" is refused instead of silently stamped "now".
- integers must fit 32 bits (OCPP's integers are): a 4,000-digit connectorId
  or 2^63 as a transactionId is a PropertyConstraintViolation, not a crash in
  storage. Energy registers (meterStart, meterStop) are exempt: the CSMS checks
  them against a plausible meter's range itself (csms.core.metering), and a stop with
  an impossible reading still ends its session.
- strings may not hold the NUL character (U+0000): JSON allows it, no OCPP string needs it, and
  PostgreSQL refuses it in text (an idTag "A\\u0000B" was an InternalError per message).
- ``multipleOf`` (charging-profile limits) is dropped: float arithmetic makes
  21.4 fail ``multipleOf 0.1``; the library works around it with Decimal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from ocppj.errors import OcppCallError
from ocppj.versions import V16, OcppVersion

__all__ = ["validator_for", "validate", "known_actions", "SchemaError"]

Validator = Callable[[Any], Any]
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_WIDER = frozenset({"meterStart", "meterStop"})  # Wh registers: ranged by their receiver, not here


def _is_date_time(value: str) -> bool:
    """ISO 8601 as OCPP writes it ("2026-01-01T10:00:00Z", with offset or fraction); date and time both."""
    if "T" not in value.upper():
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_FORMATS = {
    False: {"date-time": _is_date_time, "uri": lambda _v: True},
    True: {"date-time": lambda _v: True, "uri": lambda _v: True},
}


class SchemaError(OcppCallError):
    """A payload that does not match its OCPP schema."""


def _strip(node: Any, root: bool = True) -> Any:
    """Without `multipleOf` anywhere and the schema's own `$schema`/`id`/`$id` at its root (2.0.1 has
    properties named `id`, e.g. an EVSE's: those stay)."""
    if isinstance(node, dict):
        drop = ("multipleOf", "$schema", "id", "$id") if root else ("multipleOf",)
        return {k: _strip(v, False) for k, v in node.items() if k not in drop}
    if isinstance(node, list):
        return [_strip(v, False) for v in node]
    return node


@cache
def known_actions(version: OcppVersion = V16) -> frozenset[str]:
    """Every action of `version` that has a request schema."""
    folder = resources.files(version.package).joinpath("schemas")
    head, tail = version.request_schema.split("{action}")
    return frozenset(
        p.name[len(head) : len(p.name) - len(tail)]
        for p in folder.iterdir()
        if p.name.startswith(head) and p.name.endswith(tail) and not p.name.endswith("Response.json")
    )


@cache
def validator_for(action: str, response: bool, version: OcppVersion = V16) -> Validator | None:
    """The compiled validator for an action's request or response in `version`, or None."""
    name = f"{action}Response.json" if response else version.request_schema.format(action=action)
    path = resources.files(version.package).joinpath("schemas", name)
    if action not in known_actions(version) or not path.is_file():
        return None
    schema = _strip(json.loads(path.read_text(encoding="utf-8")))
    return fastjsonschema.compile(schema, formats=_FORMATS[response])


# fastjsonschema names the failing keyword in `rule`; map it to OCPP-J 1.6 codes.
_RULE_TO_CODE = {
    "type": "TypeConstraintViolation",
    "required": "OccurenceConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
    "additionalProperties": "FormationViolation",
    "format": "TypeConstraintViolation",
}


def _problem(node: Any, path: str) -> tuple[str, str] | None:
    """(path, "range" or "nul") of the first integer that does not fit 32 bits or string holding U+0000."""
    if isinstance(node, str):
        return (path, "nul") if "\x00" in node else None
    if isinstance(node, int) and not isinstance(node, bool):
        return (path, "range") if not INT_MIN <= node <= INT_MAX else None
    if isinstance(node, dict):
        for k, v in node.items():
            if "\x00" in k:
                return f"{path}.{k!r}", "nul"
            if k in _WIDER and not isinstance(v, str):
                continue
            if (found := _problem(v, f"{path}.{k}")) is not None:
                return found
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if (found := _problem(v, f"{path}[{i}]")) is not None:
                return found
    return None


def validate(
    action: str, payload: Any, *, response: bool, unique_id: str | None = None, version: OcppVersion = V16
) -> None:
    """Raise SchemaError (with the right CallError code) if payload is invalid."""
    check = validator_for(action, response, version)
    if check is None:
        raise OcppCallError(
            "NotImplemented",
            f"no {version} schema for {action}{'Response' if response else ''}",
            unique_id=unique_id,
        )
    try:
        check(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        code = _RULE_TO_CODE.get(exc.rule or "", "PropertyConstraintViolation")
        raise SchemaError(code, f"{action}: {exc.message}", unique_id=unique_id, details={"path": exc.name}) from None
    found = _problem(payload, "data")
    if found is None:
        return
    where, kind = found
    why = (
        "holds the NUL character (U+0000), which no OCPP string may"
        if kind == "nul"
        else f"is out of range ({version} integers are 32-bit: {INT_MIN} to {INT_MAX})"
    )
    raise SchemaError(
        "PropertyConstraintViolation", f"{action}: {where} {why}", unique_id=unique_id, details={"path": where}
    )
