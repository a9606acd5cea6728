"""Runs node/station.js, an OCPP 2.0.1 station on npm ocpp-rpc in strict mode, as a peer for tests.

ocpp-rpc validates every Call and answer, both ways, against its own copy of the 2.0.1 schemas (with
date-time formats checked), so it catches what the `ocpp` library lets through. The script prints one JSON
line per exchange; this module collects them. Blocking API (from trio: `trio.to_thread.run_sync`):

    require_node()                                    # skips the test when node/npm are absent
    with OcppRpcStation(csms.url("RPC1"), password="pw", stay=True) as peer:
        peer.wait_for(lambda: peer.event("ready"))  # its script is done, it answers Calls now
        ...                                           # the CSMS sends RequestStartTransaction, ...
    assert peer.returncode == 0                       # 2: a strict-mode validation failure

`node_modules` is installed into node/ on first use (`npm ci`, from package-lock.json).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["NODE_DIR", "OcppRpcStation", "ensure_installed", "missing", "require_node"]

NODE_DIR = Path(__file__).with_name("node")
SCRIPT = NODE_DIR / "station.js"
MIN_NODE = (17, 3)  # ocpp-rpc's engines field


def missing() -> str | None:
    """Why the ocpp-rpc peer cannot run here (node or npm absent or too old), or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return f"the ocpp-rpc peer needs node and npm on PATH (node: {node}, npm: {npm}); apt-get install nodejs npm"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        major, minor = (int(p) for p in version.lstrip("v").split(".")[:2])
    except ValueError:
        return f"the ocpp-rpc peer cannot read node's version ({version!r})"
    if (major, minor) < MIN_NODE:
        return f"the ocpp-rpc peer needs node >= {MIN_NODE[0]}.{MIN_NODE[1]}, found {version}"
    return None


def ensure_installed() -> None:
    """`npm ci` into node/ unless ocpp-rpc is there; a file lock keeps parallel workers from racing."""
    if (NODE_DIR / "node_modules" / "ocpp-rpc" / "package.json").exists():
        return
    with open(NODE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (NODE_DIR / "node_modules" / "ocpp-rpc" / "package.json").exists():
            return
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci in {NODE_DIR} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def require_node() -> None:
    """Skip the calling test, saying why, when node/npm are absent; install node_modules on first use."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    ensure_installed()


class OcppRpcStation:
    """node station.js as a subprocess; its output lines collected as they come, by a reader thread."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        stay: bool = False,
        script: bool = True,
        id_token: str = "RPCTAG",
        answers: dict[str, dict[str, Any]] | None = None,
        call_timeout_ms: int = 10_000,
    ) -> None:
        """`url`: the whole station URL (its last segment is the identity); `stay`: after the script, keep
        answering the CSMS until `close()`; `answers`: action -> the answer to give instead of the default."""
        self.argv = ["node", str(SCRIPT), url, "--id-token", id_token, "--call-timeout-ms", str(call_timeout_ms)]
        if password is not None:
            self.argv += ["--password", password]
        if stay:
            self.argv.append("--stay")
        if not script:
            self.argv.append("--no-script")
        if answers:
            self.argv += ["--answers", json.dumps(answers)]
        self.returncode: int | None = None
        self.stderr = ""
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []
        self._next_id = 0

    def __enter__(self) -> OcppRpcStation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> OcppRpcStation:
        self._proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self

    def close(self, timeout: float = 15.0) -> int:
        """End standard input (the peer then closes its WebSocket with 1000) and wait; returns its exit status."""
        if self._proc is None:
            raise RuntimeError("the ocpp-rpc peer was never started")
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.returncode = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self.returncode = self._proc.wait(5)
        for reader in self._readers:
            reader.join(5)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.returncode

    def run(self, timeout: float = 30.0) -> int:
        """Start, let the script run to its end (without `stay`), and return the exit status."""
        self.start()
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.close()

    # ------------------------------------------------------------ records
    def lines(self) -> list[dict[str, Any]]:
        """Every line it printed so far, in order (a non-JSON line as {"raw": text})."""
        with self._lock:
            return list(self._lines)

    def exchanges(self, action: str | None = None, dir: str | None = None) -> list[dict[str, Any]]:
        """Its exchanges, "out" (its Calls and the CSMS's answers) and "in" (the CSMS's Calls, its answers)."""
        return [
            line
            for line in self.lines()
            if "dir" in line and dir in (None, line["dir"]) and action in (None, line["action"])
        ]

    def call_errors(self) -> list[dict[str, Any]]:
        """Its exchanges that ended in an error: a CallError either way, a timeout, a strict-mode refusal."""
        return [line for line in self.exchanges() if "error" in line]

    def event(self, name: str) -> list[dict[str, Any]]:
        """Its event lines of one kind: open, ready, strictValidationFailure, close, done, connectFailed."""
        return [line for line in self.lines() if line.get("event") == name]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if (
                self._proc is not None
                and self._proc.poll() is not None
                and not any(r.is_alive() for r in self._readers)
            ):
                break  # it exited and everything it printed is read
            time.sleep(0.02)
        return bool(predicate())

    # ----------------------------------------------------------- commands
    def call(self, action: str, params: dict[str, Any] | None = None, timeout: float = 15.0) -> dict[str, Any]:
        """Make the peer (started with `stay`) send a Call; returns its exchange line (response or error)."""
        self._next_id += 1
        call_id = self._next_id
        self._command({"id": call_id, "call": action, "params": params or {}})
        if not self.wait_for(lambda: self._by_id(call_id), timeout):
            raise TimeoutError(f"the ocpp-rpc peer did not report its {action} (id {call_id}) in {timeout} s")
        line = self._by_id(call_id)
        assert line is not None
        return line

    def set_answers(self, answers: dict[str, dict[str, Any]]) -> None:
        """Change how it answers from now on: action -> the answer to give."""
        self._command({"answers": answers})

    def _command(self, command: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None, "start the peer with stay=True"
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()

    def _by_id(self, call_id: int) -> dict[str, Any] | None:
        return next((line for line in self.lines() if line.get("id") == call_id), None)

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for text in self._proc.stdout:
            try:
                line = json.loads(text)
            except ValueError:
                line = {"raw": text.rstrip("\n")}
            with self._lock:
                self._lines.append(line if isinstance(line, dict) else {"raw": text.rstrip("\n")})

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        self.stderr = self._proc.stderr.read()
