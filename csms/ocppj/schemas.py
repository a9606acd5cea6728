"""Compiled JSON-schema validation of OCPP 1.6 payloads.

The schemas are the ones the `ocpp` package bundles; they are compiled once per
action with fastjsonschema (~20x cheaper per message than the jsonschema path
the library uses). Two deliberate relaxations, both to stay interoperable with
the `ocpp` library's own validation:
- ``format`` (date-time, uri) is not enforced, as jsonschema's Draft4Validator
  does not enforce it either; timestamps are parsed where they are used.
- ``multipleOf`` (charging-profile limits) is dropped: float arithmetic makes
  21.4 fail ``multipleOf 0.1``; the library works around it with Decimal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from .errors import OcppCallError

__all__ = ["validator_for", "validate", "known_actions", "SchemaError"]

Validator = Callable[[Any], Any]
_FORMATS = {"date-time": lambda _v: True, "uri": lambda _v: True}


class SchemaError(OcppCallError):
    """A payload that does not match its OCPP 1.6 schema."""


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in ("multipleOf", "$schema", "id")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


@cache
def known_actions() -> frozenset[str]:
    """Every OCPP 1.6 action that has a request schema."""
    folder = resources.files("ocpp.v16").joinpath("schemas")
    return frozenset(
        p.name[: -len(".json")]
        for p in folder.iterdir()
        if p.name.endswith(".json") and not p.name.endswith("Response.json")
    )


@cache
def validator_for(action: str, response: bool) -> Validator | None:
    """The compiled validator for an action's request or response, or None."""
    name = f"{action}Response.json" if response else f"{action}.json"
    path = resources.files("ocpp.v16").joinpath("schemas", name)
    if action not in known_actions() or not path.is_file():
        return None
    schema = _strip(json.loads(path.read_text(encoding="utf-8")))
    return fastjsonschema.compile(schema, formats=_FORMATS)


# fastjsonschema names the failing keyword in `rule`; map it to OCPP-J 1.6 codes.
_RULE_TO_CODE = {
    "type": "TypeConstraintViolation",
    "required": "OccurenceConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
    "additionalProperties": "FormationViolation",
}


def validate(action: str, payload: Any, *, response: bool, unique_id: str | None = None) -> None:
    """Raise SchemaError (with the right CallError code) if payload is invalid."""
    check = validator_for(action, response)
    if check is None:
        raise OcppCallError(
            "NotImplemented",
            f"no OCPP 1.6 schema for {action}{'Response' if response else ''}",
            unique_id=unique_id,
        )
    try:
        check(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        code = _RULE_TO_CODE.get(exc.rule or "", "PropertyConstraintViolation")
        raise SchemaError(
            code, f"{action}: {exc.message}", unique_id=unique_id, details={"path": exc.name}
        ) from None
