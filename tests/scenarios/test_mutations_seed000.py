"""Mutation tests for the seed 000 scenarios: each one fails when the CSMS behaviour it guards is off.

Every test runs one catalogue scenario (`python -m scenarios.cli run NAME`) against an
embedded `csms serve` with one behaviour switched off (a threshold of 0 or a hidden
mutant of `tests.support.mutants`) and checks that the scenario fails *for the right reason*: exit code 1,
the expected violation kinds on the expected connector in summary.json, and a violation
report that names the faults which set the scene.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.mutants import scenario_flags

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.scenarios


@dataclass(frozen=True)
class Failed:
    """What a scenario run against a broken CSMS left behind."""

    record: dict[str, Any]  # the scenario's summary.json record
    output: str  # stdout + stderr

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        """The oracle's findings against ground truth (a scenario's wrong answers are reported apart)."""
        return [v for v in self.record["violations"] if v["kind"] != "wrong_answer"]

    @property
    def kinds(self) -> dict[tuple[str, int], set[str]]:
        """(charge point suffix, connector) -> violation kinds; suffix is the id after the run prefix."""
        out: dict[tuple[str, int], set[str]] = {}
        for v in self.verdicts:
            out.setdefault((_suffix(v["cp"]), v["connector"]), set()).add(v["kind"])
        return out

    def faults_named(self, kind: str) -> set[str]:
        return {f["name"] for v in self.record["violations"] if v["kind"] == kind for f in v["faults"]}


def _suffix(cp: str) -> str:
    return cp.rsplit("-", 1)[-1]


def run_broken(name: str, tmp_path: Path, *csms_args: str) -> Failed:
    """Run scenario `name` against a CSMS started with `csms_args`; it must fail (exit 1)."""
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "scenarios.cli", "run", name, "--report", str(report), *scenario_flags(csms_args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"{name} should fail against `csms serve {' '.join(csms_args)}`:\n{output[-6000:]}"
    summary = json.loads((report / "summary.json").read_text())
    (record,) = [s for s in summary["scenarios"] if s["name"] == name]
    assert record["outcome"] == "failed", record
    return Failed(record, output)


def assert_violations(failed: Failed, where: tuple[str, int], *kinds: str, faults: set[str]) -> None:
    """`kinds` were found on `where` (charge point suffix, connector), and the report names `faults`."""
    found = failed.kinds
    assert set(kinds) <= found.get(where, set()), f"expected {kinds} on {where}, found {found}"
    for kind in kinds:
        assert faults <= failed.faults_named(kind), f"{kind}: report names {failed.faults_named(kind)}"
        assert f"{kind}: " in failed.output
    for name in faults:
        assert name in failed.output  # the violation report a person reads names them too


def test_unlock_multiple_stuck_sessions_catches_an_unlock_that_keeps_the_transaction(tmp_path):
    failed = run_broken("unlock_multiple_stuck_sessions", tmp_path, "mutant=unlock_keeps_transaction")
    assert_violations(
        failed,
        ("0001", 1),
        "falsely_busy",
        "unclosed_transaction",
        faults={"drop_stop_transaction", "accept_remote_start_never_start"},
    )
    assert "open_transaction:" in json.dumps(failed.record["violations"])  # the CSMS said why it was busy


def test_unlock_normal_catches_a_late_stop_that_does_not_replace_the_estimate(tmp_path):
    failed = run_broken("unlock_normal", tmp_path, "mutant=late_stop_ignored")
    # The charger's StopTransaction(UnlockCommand) was acknowledged, yet the force-end's estimate stayed.
    assert failed.kinds == {("0001", 2): {"lost_stop"}}, failed.kinds
    (v,) = failed.verdicts
    assert v["truth"]["reason"] == "UnlockCommand" and v["truth"]["stopAcknowledged"] is True, v
    assert "faults: none fired on this connector" in failed.output  # no fault needed: a healthy charger


def test_disconnect_mid_session_catches_an_unlock_that_keeps_the_transaction(tmp_path):
    # The transaction stays open through the unlock, so the replayed StopTransaction closes it normally
    # while the session keeps the offline estimate: billed energy != the transaction's energy.
    failed = run_broken("disconnect_mid_session", tmp_path, "mutant=unlock_keeps_transaction")
    assert_violations(failed, ("0001", 1), "wrong_energy", faults={"disconnect_mid_session"})


def test_disconnect_mid_session_catches_a_replayed_stop_that_is_dropped(tmp_path):
    failed = run_broken("disconnect_mid_session", tmp_path, "mutant=late_stop_ignored")
    assert_violations(failed, ("0001", 1), "lost_stop", faults={"disconnect_mid_session"})


def test_reboot_mid_session_catches_a_csms_without_the_orphan_sweep(tmp_path):
    failed = run_broken("reboot_mid_session", tmp_path, "--orphan-grace-seconds=0")
    assert_violations(failed, ("0001", 1), "falsely_busy", "unclosed_transaction", faults={"reboot"})
    busy = next(v for v in failed.record["violations"] if v["kind"] == "falsely_busy")
    assert busy["verdict"]["reasons"] == ["open_transaction:1"], busy


def test_unlock_failures_catches_an_unlock_that_calls_a_charging_connector_free(tmp_path):
    failed = run_broken("unlock_failures", tmp_path, "mutant=unlock_resets_live_status")
    # Only the LIVE charger still has a car charging: its connector was reported free.
    assert failed.kinds == {("LIVE0001", 1): {"falsely_free"}}, failed.kinds
    assert_violations(failed, ("LIVE0001", 1), "falsely_free", faults={"unlock_failed"})
    (v,) = failed.verdicts
    assert v["verdict"]["signals"]["liveStatus"]["status"] == "Available", v  # what the charger never said


def test_unlock_failures_catches_a_failed_unlock_that_leaves_the_connector_blocked(tmp_path):
    failed = run_broken("unlock_failures", tmp_path, "mutant=unlock_keeps_transaction")
    for suffix, fault in (
        ("FAILED0001", "unlock_failed"),
        ("NOTSUP0001", "unlock_not_supported"),
        ("NOANSWER0001", "unlock_no_answer"),
    ):
        assert_violations(
            failed, (suffix, 1), "falsely_busy", "unclosed_transaction", faults={fault, "drop_stop_transaction"}
        )


def test_concurrent_starts_catches_a_reservation_that_does_not_hold_its_connector(tmp_path):
    failed = run_broken("concurrent_starts", tmp_path, "mutant=reservation_not_busy")
    assert failed.kinds == {("0001", 2): {"falsely_free"}}, failed.kinds
    assert_violations(failed, ("0001", 2), "falsely_free", faults={"accept_remote_start_never_start"})
    assert "a reservation granted at" in failed.verdicts[0]["message"]
    # The second line of defence still held: the unique index refused the four other payers.
    (line,) = [n for n in failed.record["notes"] if "paid reservations" in n]
    assert "1 granted" in line and "active_reservation:unique_index_conflict" in line, line
