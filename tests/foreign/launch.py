"""Start a foreign CSMS as the process a QA team would run, and read where it listens.

Both foreign CSMSs print one JSON line, {"ocpp_url": ..., "api_url": ...}, when ready.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ForeignCsms", "launch"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ForeignCsms:
    ocpp_url: str
    api_url: str
    token: str
    proc: subprocess.Popen[str]

    def stop(self) -> int:
        """SIGTERM, then kill if it does not end within 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def launch(module: str, token: str, *extra: str, timeout: float = 20.0) -> ForeignCsms:
    """`python -m module --ocpp-port 0 --api-port 0 --token token ...`, once it has printed its URLs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--ocpp-port", "0", "--api-port", "0", "--token", token, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            urls = json.loads(line)
            return ForeignCsms(urls["ocpp_url"], urls["api_url"], token, proc)
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{module} did not print its URLs within {timeout} s (exit {proc.returncode})")
