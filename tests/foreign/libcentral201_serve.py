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

import argparse
import json
import resource
import signal
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

import jsonschema
from ocpp.exceptions import GenericError
from ocpp.v201 import call

from tests.foreign.libcentral_serve import Api
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ocpp-port", type=int, default=0, help="OCPP WebSocket port (0: a free one)")
    ap.add_argument("--api-port", type=int, default=0, help="JSON API port (0: a free one)")
    ap.add_argument("--token", required=True, help="the bearer token the API wants")
    ap.add_argument("--interval", type=int, default=30, help="heartbeat interval given at boot (s)")
    ap.add_argument("--response-timeout", type=float, default=5.0, help="how long it waits for a station's answer")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the chaos scenario opens many sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    central = LibCentral201(heartbeat_interval=args.interval, response_timeout=args.response_timeout)
    central.start(args.ocpp_port)
    handler = type("Api", (_Api201,), {"central": central, "token": args.token})
    api = ThreadingHTTPServer(("127.0.0.1", args.api_port), handler)
    api.daemon_threads = True
    threading.Thread(target=api.serve_forever, name="libcentral201-api", daemon=True).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    urls = {"ocpp_url": f"ws://127.0.0.1:{central.port}/ocpp", "api_url": f"http://127.0.0.1:{api.server_address[1]}"}
    print(json.dumps(urls), flush=True)
    done.wait()
    api.shutdown()
    central.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
