"""The 2.0.1 field-bug scenarios fail on a CSMS with that field bug put back (tests/support/mutants.py).

Each runs one scenario against an embedded `csms serve` carrying one known 2.0.1 bug of the field
and checks it fails for the right reason: the violation kinds it must find, on the right connector,
naming the fault that set the scene.
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

# scenario, mutant, (kind, connector) it must find (at least), a fault one of them names, words in the report
CASES = [
    (
        "queued_ended",
        "queued_ended_dropped",
        {("wrong_answer", 1), ("lost_stop", 1)},
        "disconnect_mid_session",
        "while its Ended was still queued",
    ),
    ("replayed_events", "replayed_events_reopen", {("lost_stop", 1)}, "replay_after_end", "TransactionEvent(Ended)"),
    # The idle EVSE 1 is called busy by the transaction of EVSE 2 (whose fault it was, so 1 names none).
    ("evse_less_events", "evse_less_to_connector_1", {("falsely_busy", 1)}, None, "open_transaction:"),
]


@pytest.mark.parametrize(("scenario", "mutant", "must", "fault", "words"), CASES, ids=[c[1] for c in CASES])
def test_a_201_field_bug_fails_its_scenario(scenario, mutant, must, fault, words, tmp_path: Path):
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "scenarios.cli", "run", scenario, "--report", str(report)]
    proc = subprocess.run(
        [*cmd, *scenario_flags([f"mutant={mutant}"])], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 1, f"{scenario} should fail on {mutant}:\n{output}"
    (record,) = json.loads((report / "summary.json").read_text())["scenarios"]
    assert record["name"] == f"{scenario}[ocpp2.0.1]" and record["outcome"] == "failed", record
    found = {(v["kind"], v["connector"]) for v in record["violations"]}
    assert must <= found, (sorted(found), record["error"])
    if fault is not None:
        assert any(fault in {f["name"] for f in v["faults"]} for v in record["violations"]), record["violations"]
    assert words in record["error"], record["error"]
