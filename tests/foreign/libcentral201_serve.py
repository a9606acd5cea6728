"""The `ocpp` library's 2.0.1 central system (`tests/interop201/libcentral201.py`) as a process, with a JSON API.

`LibCentral201` is the library's asyncio v201 `ChargePoint` with `@on` handlers behind `websockets.serve`:
it answers every station message (schema-checked both ways) and remembers what it received, nothing more.
This puts it on the network the way a QA team meets a 2.0.1 CSMS, for its adapter
(`tests/foreign/libcentral201_adapter.py`).

    python -m tests.foreign.libcentral201_serve --ocpp-port 0 --api-port 0 --token T

prints one JSON line, {"ocpp_url": ..., "api_url": ...}, then serves until SIGTERM.

    GET  /health                          {"name": "libcentral201", "version": ...}
    GET  /api/records?after=N&actions=A,B -> {"received": [{cp, action, payload}], "next": N', "connected": [...]}
    POST /api/call {"cp", "action", "payload": {camelCase}}
         -> 200 {"result": {...}} | 404 not connected | 504 no answer in time | 502 CallError
"""

from __future__ import annotations

import sys
from typing import Any

import jsonschema
from ocpp.exceptions import GenericError
from ocpp.v201 import call

from tests.foreign.libcentral_serve import Api, run
from tests.interop201.libcentral201 import LibCentral201

__all__ = ["main"]


class _Api201(Api):
    central: Any  # LibCentral201
    name = "libcentral201"
    calls = call

    def records(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            after = int(query.get("after", 0))
        except ValueError:
            return 400, {"error": "BadRequest", "message": "after is an integer"}
        actions = set(filter(None, query.get("actions", "").split(",")))
        received = self.central.received_since(after)
        return 200, {
            "received": [
                {"cp": r.station, "action": r.action, "payload": r.payload}
                for r in received
                if not actions or r.action in actions
            ],
            "next": after + len(received),
            "connected": self.central.connected(),
        }

    def send(self, cp: str, request: Any) -> Any:
        """Both ways schema-checked: the request, and the station's answer (a bad one is a 502)."""
        try:
            result = self.central.send(cp, request, validate=True)
        except jsonschema.ValidationError as exc:
            raise GenericError(f"schema: {exc.message}") from None
        if result is None:  # the library returns None for a CallError answer
            raise GenericError("the station answered with a CallError")
        return result


def main(argv: list[str] | None = None) -> int:
    return run(
        argv,
        __doc__ or "",
        lambda args: LibCentral201(heartbeat_interval=args.interval, response_timeout=args.response_timeout),
        lambda central: f"ws://127.0.0.1:{central.port}/ocpp",
        _Api201,
    )


if __name__ == "__main__":
    sys.exit(main())
