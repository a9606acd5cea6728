"""A webhook receiver for tests: an ordinary threaded HTTP server in the test process, recording every POST."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Receiver", "receiver"]


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0  # answer 500 to this many requests first
    failing: threading.Event | None = None  # set: answer 500 to every request
    hang: threading.Event | None = None  # set: answer; unset: hold every request
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests if r["status"] == 200]

    def types(self) -> set[str]:
        return {b["type"] for b in self.bodies()}


@contextmanager
def receiver(**kw) -> Iterator[Receiver]:
    rec = Receiver(**kw)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if rec.hang is not None:
                rec.hang.wait(60)
            with rec.lock:
                down = rec.failing is not None and rec.failing.is_set()
                status = 500 if down or len(rec.requests) < rec.fail_first else 200
                rec.requests.append(
                    {"headers": dict(self.headers), "body": body, "status": status, "at": time.monotonic()}
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        if rec.hang is not None:
            rec.hang.set()
        server.shutdown()
        server.server_close()
