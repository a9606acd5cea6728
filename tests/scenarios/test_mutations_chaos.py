"""Chaos fails when the CSMS stops healing itself: no orphan sweep and no quiet-transaction probe.

A small chaos run (10 charge points, 12 s of traffic) against `csms serve` with both switched
off must end in falsely busy connectors and unclosed transactions, each report naming the
faults that lost the StopTransaction.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mutants import scenario_flags

pytestmark = pytest.mark.scenarios

ROOT = Path(__file__).resolve().parents[2]
STOP_LOSING = {"drop_stop_transaction", "reboot", "disconnect_mid_session"}


def test_chaos_catches_a_csms_that_does_not_heal(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "scenarios.cli",
        "run",
        "chaos_under_load",
        "--ocpp",
        "1.6",
        "--scale",
        "10",
        "--chaos-seconds",
        "12",
        "--report",
        str(tmp_path),
        "--csms-arg=--orphan-grace-seconds=0",
        "--csms-arg=--quiet-transaction-seconds=0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
    (record,) = json.loads((tmp_path / "summary.json").read_text())["scenarios"]
    assert record["outcome"] == "failed"
    kinds = {v["kind"] for v in record["violations"]}
    assert {"falsely_busy", "unclosed_transaction"} <= kinds, kinds
    stuck = [v for v in record["violations"] if v["kind"] in ("falsely_busy", "unclosed_transaction")]
    for v in stuck:  # each stuck connector's history shows how its StopTransaction was lost
        assert STOP_LOSING & {f["name"] for f in v["faults"]}, v
    busy = [v for v in record["violations"] if v["kind"] == "falsely_busy"]
    assert all(
        v["verdict"]["verdict"] == "busy" and any(r.startswith("open_transaction:") for r in v["verdict"]["reasons"])
        for v in busy
    ), busy
    assert "falsely_busy" in proc.stdout and "drop_stop_transaction" in proc.stdout


def test_chaos_catches_a_csms_that_forgets_the_session_of_a_superseded_transaction(tmp_path):
    """The next car's StartTransaction supersedes a transaction whose stop was lost; a CSMS that closes it
    but leaves the app's session open (Charging, unbilled for ever) fails with open_session."""
    cmd = [
        sys.executable,
        "-m",
        "scenarios.cli",
        "run",
        "chaos_under_load",
        "--ocpp",
        "1.6",
        "--scale",
        "10",
        "--chaos-seconds",
        "30",
        "--report",
        str(tmp_path),
        *scenario_flags(["mutant=supersede_keeps_session"]),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
    (record,) = json.loads((tmp_path / "summary.json").read_text())["scenarios"]
    open_sessions = [v for v in record["violations"] if v["kind"] == "open_session"]
    assert open_sessions, {v["kind"] for v in record["violations"]}
    assert all("(Superseded)" in v["message"] for v in open_sessions), open_sessions
    assert "open_session" in proc.stdout
