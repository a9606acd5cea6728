"""The OCPP versions this layer speaks, and what differs between them on the wire.

Both are OCPP-J: the same frames over a WebSocket. They differ in the subprotocol
name, where the `ocpp` package keeps their schemas, and two CallError codes
(OCPP-J 1.6's "OccurenceConstraintViolation" and "FormationViolation" are
"OccurrenceConstraintViolation" and "FormatViolation" in OCPP-J 2.0.1).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OcppVersion", "V16", "V201", "VERSIONS", "BY_NAME", "negotiate"]


@dataclass(frozen=True)
class OcppVersion:
    name: str  # "1.6", "2.0.1"
    subprotocol: str  # Sec-WebSocket-Protocol
    package: str  # the `ocpp` package's module with its schemas, call and call_result
    request_schema: str  # file name pattern of a request's schema
    spelling: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)  # 1.6 code -> ours

    def code(self, code: str) -> str:
        """A CallError code as this version spells it."""
        return self.spelling.get(code, code)

    def result_of(self, action: str, payload: Mapping[str, Any]) -> Any:
        """An answer's payload (snake_case keys) as this version's `call_result.<action>` dataclass."""
        return getattr(importlib.import_module(f"{self.package}.call_result"), action)(**payload)

    def __str__(self) -> str:
        return f"OCPP {self.name}"


V16 = OcppVersion("1.6", "ocpp1.6", "ocpp.v16", "{action}.json")
V201 = OcppVersion(
    "2.0.1",
    "ocpp2.0.1",
    "ocpp.v201",
    "{action}Request.json",
    {"OccurenceConstraintViolation": "OccurrenceConstraintViolation", "FormationViolation": "FormatViolation"},
)
VERSIONS: Mapping[str, OcppVersion] = {v.subprotocol: v for v in (V16, V201)}
BY_NAME: Mapping[str, OcppVersion] = {v.name: v for v in (V16, V201)}  # "1.6", "2.0.1"


def negotiate(offered: Iterable[str], spoken: Iterable[OcppVersion] = (V201, V16)) -> OcppVersion | None:
    """The first subprotocol the charger offered that we speak: its order is its preference (RFC 6455 §4.1)."""
    ours = {v.subprotocol: v for v in spoken}
    return next((ours[p] for p in offered if p in ours), None)
