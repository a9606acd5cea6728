"""A trio OCPP-J 1.6 layer on the `ocpp` package's message layer.

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

SUBPROTOCOL = "ocpp1.6"

__all__ = [
    "SUBPROTOCOL",
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
