"""The `ocpp` library's central system (`tests/simulator/libcsms.py`) as a process, with a small JSON API.

`LibCentral` answers every Call and remembers what it received; nothing more.
This puts it on the network the way a QA team meets a CSMS: an OCPP port and
an HTTP API, so its adapter (`tests/scenarios/libcsms_adapter.py`) needs no
import of it.

    python -m tests.foreign.libcentral_serve --ocpp-port 0 --api-port 0 --token T

prints one JSON line, {"ocpp_url": ..., "api_url": ...}, then serves until SIGTERM.
The API (every /api path wants `Authorization: Bearer T`):

    GET  /health                                   {"name": "libcentral", "version": ...}
    GET  /api/records?after=N&startedAfter=M&actions=StatusNotification,StopTransaction
         -> {"received": [...], "next": N', "started": [...], "startedNext": M', "connected": [...]}
         what it received from position N on (optionally only those actions), the transactions it
         started from position M on, and the charge points connected now
    POST /api/call {"cp": ..., "action": "RemoteStartTransaction", "payload": {camelCase}}
         -> 200 {"result": {...}} | 404 not connected | 504 no answer in time | 502 CallError
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import json
import resource
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import Any
from urllib.parse import parse_qs, urlsplit

import websockets
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.v16 import call

from tests.simulator.libcsms import LibCentral

__all__ = ["VERSION", "Api", "serve_api", "run", "call_payload", "result_json", "main"]

VERSION = f"ocpp {version('ocpp')}"  # the library is the whole central system


def call_payload(action: str, payload: dict[str, Any], calls: Any = call) -> Any:
    """The library's `call.<action>` dataclass (of `calls`: v16 by default) for a camelCase payload (KeyError for an
    unknown action)."""
    cls = getattr(calls, action, None)
    if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
        raise KeyError(action)
    return cls(**camel_to_snake_case(payload))


def result_json(result: Any) -> dict[str, Any]:
    return snake_to_camel_case(remove_nones(serialize_as_dict(result)))


class Api(BaseHTTPRequestHandler):
    """The JSON API over a central system that records what it receives; a subclass names another one."""

    central: Any  # LibCentral here
    token: str
    name = "libcentral"
    calls: Any = call  # the library's call classes of its OCPP version
    protocol_version = "HTTP/1.1"

    def records(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            after, started_after = int(query.get("after", 0)), int(query.get("startedAfter", 0))
        except ValueError:
            return 400, {"error": "BadRequest", "message": "after and startedAfter are integers"}
        actions = set(filter(None, query.get("actions", "").split(",")))
        received, started = self.central.records_since(after, started_after)
        return 200, {
            "received": [
                {"cp": r.cp, "action": r.action, "payload": r.payload}
                for r in received
                if not actions or r.action in actions
            ],
            "next": after + len(received),
            "started": [s._asdict() for s in started],
            "startedNext": started_after + len(started),
            "connected": self.central.connected(),
        }

    def send(self, cp: str, request: Any) -> Any:
        return self.central.send(cp, request, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Quiet: one line per request would drown the run's output."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a cancelled scenario): its loss
            self.close_connection = True

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return True
        self._reply(401, {"error": "Unauthorized", "message": "Authorization: Bearer <token> required"})
        return False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self._reply(200, {"name": self.name, "version": VERSION})
            return
        if not self._authorized():
            return
        if url.path != "/api/records":
            self._reply(404, {"error": "NotFound", "message": f"no {url.path}"})
            return
        self._reply(*self.records({k: v[-1] for k, v in parse_qs(url.query).items()}))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))  # read first: the connection is kept alive
        if not self._authorized():
            return
        if urlsplit(self.path).path != "/api/call":
            self._reply(404, {"error": "NotFound", "message": f"no {self.path}"})
            return
        try:
            body = json.loads(raw or b"{}")
            cp, action = str(body["cp"]), str(body["action"])
            request = call_payload(action, dict(body.get("payload") or {}), self.calls)
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": "BadRequest", "message": f"want cp, action, payload: {exc!r}"})
            return
        try:
            result = self.send(cp, request)
        except KeyError:
            self._reply(404, {"error": "NotConnected", "message": f"{cp} is not connected"})
        except websockets.ConnectionClosed:
            self._reply(404, {"error": "NotConnected", "message": f"{cp} disconnected before it answered"})
        except TimeoutError:
            self._reply(504, {"error": "Timeout", "message": f"{cp} did not answer {action} in time"})
        except OCPPError as exc:
            self._reply(502, {"error": "CallError", "message": f"{cp} answered {action} with {exc!r}"})
        else:
            self._reply(200, {"result": result_json(result)})


def serve_api(central: Any, port: int, token: str, api: type[Api] = Api) -> ThreadingHTTPServer:
    """The JSON API on 127.0.0.1:`port` (0: a free one), served from a daemon thread."""
    handler = type("Api", (api,), {"central": central, "token": token})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"{api.name}-api", daemon=True).start()
    return server


def run(
    argv: list[str] | None,
    doc: str,
    make_central: Callable[[argparse.Namespace], Any],
    ocpp_url: Callable[[Any], str],
    api: type[Api] = Api,
) -> int:
    """Parse the command line, start the central system and its API, print their URLs, serve until SIGTERM."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ocpp-port", type=int, default=0, help="OCPP WebSocket port (0: a free one)")
    ap.add_argument("--api-port", type=int, default=0, help="JSON API port (0: a free one)")
    ap.add_argument("--token", required=True, help="the bearer token the API wants")
    ap.add_argument("--interval", type=int, default=30, help="heartbeat interval given at boot (s)")
    ap.add_argument("--response-timeout", type=float, default=5.0, help="how long it waits for a charger's answer")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the chaos scenario opens many sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    central = make_central(args)
    central.start(args.ocpp_port)
    server = serve_api(central, args.api_port, args.token, api)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    urls = {"ocpp_url": ocpp_url(central), "api_url": f"http://127.0.0.1:{server.server_address[1]}"}
    print(json.dumps(urls), flush=True)
    done.wait()
    server.shutdown()
    central.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(
        argv,
        __doc__ or "",
        lambda args: LibCentral(heartbeat_interval=args.interval, response_timeout=args.response_timeout),
        lambda central: str(central.url),
    )


if __name__ == "__main__":
    sys.exit(main())
