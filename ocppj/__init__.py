"""A trio OCPP-J layer (1.6 and 2.0.1) on the `ocpp` package's message layer.

Shared by the CSMS and the simulator; imports neither a database nor a web
framework. `OcppConnection` is the only stateful piece; framing and schema
validation are pure.
"""

from ocppj.connection import Limits, OcppConnection, Trace, WebSocketLike, to_payload
from ocppj.errors import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
    OcppjError,
)
from ocppj.versions import V16, V201, VERSIONS, OcppVersion, negotiate

SUBPROTOCOL = V16.subprotocol  # the default: what a 1.6 charger offers

__all__ = [
    "SUBPROTOCOL",
    "OcppVersion",
    "V16",
    "V201",
    "VERSIONS",
    "negotiate",
    "OcppConnection",
    "Limits",
    "Trace",
    "WebSocketLike",
    "to_payload",
    "OcppjError",
    "OcppCallError",
    "CallTimeoutError",
    "CallErrorReceived",
    "InvalidResponseError",
    "ConnectionClosedError",
]
