"""Mutation tests for the seed 001 scenarios: each fails when the CSMS behaviour it guards is off.

Every test runs one catalogue scenario (`python -m scenarios.cli run NAME`) against an
embedded `csms serve` with that behaviour switched off (a threshold of 0, a freshness
window too long to expire, or a mutant of `tests.support.mutants`) and checks that it fails for the
right reason: exit code 1, exactly the expected violation kinds on the expected
connectors in summary.json, and a violation report that names the faults that set the
scene (or, with no fault, the signal that kept the connector busy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mutants import scenario_flags

pytestmark = pytest.mark.scenarios

ROOT = Path(__file__).resolve().parents[2]
BOTH = (1, 2)


@dataclass(frozen=True)
class Mutation:
    scenario: str
    csms_args: tuple[str, ...]
    violations: frozenset[tuple[str, int]]  # (kind, connector): all of these, and no others but may_follow
    faults: frozenset[str] = frozenset()  # named in every violation and in the report
    reported: tuple[str, ...] = ()  # further text the violation report must hold
    why: str = ""
    may_follow: frozenset[tuple[str, int]] = frozenset()  # consequences of the break that timing may or may not show

    def __str__(self) -> str:
        return self.scenario


def _v(kind: str, *connectors: int) -> set[tuple[str, int]]:
    return {(kind, c) for c in connectors}


MUTATIONS = [
    Mutation(
        "stale_persisted_status",
        ("--freshness-minutes=600", "--status-release-minutes=0"),
        frozenset(_v("falsely_busy", 1)),
        frozenset({"silent_connector"}),
        ("persisted_status:Preparing",),
        why="a stored status never goes stale",
    ),
    Mutation(
        "unclosed_transaction",
        ("--orphan-grace-seconds=0",),
        frozenset(_v("falsely_busy", *BOTH) | _v("unclosed_transaction", *BOTH)),
        frozenset({"drop_stop_transaction"}),
        ("open_transaction:",),
        why="no orphan sweep",
    ),
    Mutation(
        "unclosed_transaction_silent",
        ("--quiet-transaction-seconds=0",),
        frozenset(_v("falsely_busy", *BOTH) | _v("unclosed_transaction", *BOTH)),
        frozenset({"drop_stop_transaction"}),
        ("live_status:Charging", "open_transaction:"),
        why="no quiet-transaction probe: the orphan sweep never hears Available",
    ),
    Mutation(
        "lingering_reservation",
        ("--reservation-timeout-minutes=0",),
        frozenset(_v("falsely_busy", 1)),
        frozenset(),
        ("active_reservation:", "PendingPayment"),
        why="abandoned reservations are never cancelled",
    ),
    Mutation(
        "missing_live_status",
        ("--status-grace-seconds=0", "--freshness-minutes=600", "--status-release-minutes=0"),
        frozenset(_v("falsely_busy", 1)),
        frozenset({"silent_connector"}),
        ("persisted_status:Preparing",),
        why="no status trigger after boot (and the stored status never goes stale)",
    ),
    Mutation(
        "race_after_remote_start",
        ("mutant=remote_accept_marks_busy",),
        frozenset(_v("falsely_busy", 2)),
        frozenset({"accept_remote_start_never_start", "silent_connector"}),
        ("persisted_status:Occupied",),
        why="an accepted remote start is stored as Occupied",
    ),
    # The ping and heartbeat-timeout backstops would notice the dead socket 2-3 s later; a long heartbeat
    # interval keeps them out of the run, so the whole absence shows what forgetting nothing means.
    Mutation(
        "charger_offline",
        ("mutant=registry_never_forgets", "--heartbeat-interval=30"),
        frozenset(_v("not_offline", *BOTH)),
        frozenset({"disconnect_mid_session"}),
        ("CSMS said: free",),
        why="a closed connection stays in the live registry",
    ),
    Mutation(
        "charger_gone_for_good",
        ("mutant=registry_never_forgets", "--heartbeat-interval=30"),
        frozenset(_v("not_offline", *BOTH)),
        frozenset({"disconnect_mid_session"}),
        ("CSMS said: free",),
        why="a closed connection stays in the live registry",
    ),
    Mutation(
        "pings_without_heartbeat",
        ("mutant=pongs_not_liveness",),
        frozenset(_v("dropped_charger", *BOTH)),
        frozenset({"heartbeat_stop"}),
        ("close code 1001",),
        why="liveness from OCPP messages only: pongs do not count",
        # Dropped, it reconnects; a hung charger reports nothing, so its connectors stay not-free for the
        # reconnect settle window (until our probe's answer + 2 s), which the 1 s recovery window may catch.
        may_follow=frozenset(_v("falsely_busy", *BOTH)),
    ),
]


@pytest.mark.parametrize("m", MUTATIONS, ids=str)
def test_scenario_fails_when_its_behaviour_is_switched_off(m: Mutation, tmp_path: Path):
    report = tmp_path / "report"
    cmd = [
        sys.executable,
        "-m",
        "scenarios.cli",
        "run",
        m.scenario,
        "--report",
        str(report),
        *scenario_flags(m.csms_args),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 1, f"{m.scenario} should fail when {m.why} ({' '.join(m.csms_args)}):\n{output}"

    (record,) = json.loads((report / "summary.json").read_text())["scenarios"]
    assert record["name"] == m.scenario and record["outcome"] == "failed", record
    verdicts = [v for v in record["violations"] if v["kind"] != "wrong_answer"]  # a scenario's answers: apart
    found = {(v["kind"], v["connector"]) for v in verdicts}
    assert set(m.violations) <= found <= set(m.violations) | m.may_follow, (
        f"{m.scenario}: {sorted(found)}\n{record['error']}"
    )
    assert len({v["cp"] for v in verdicts}) == 1  # one charge point in each of these stories
    for v in verdicts:
        assert m.faults <= {f["name"] for f in v["faults"]}, v

    text = record["error"]  # the violation report a person reads (ViolationsFound)
    assert "ViolationsFound" in text, text
    for kind, connector in m.violations:
        assert f"{kind}: " in text and f"/{connector} at t=" in text, (kind, connector, text)
    for name in m.faults:
        assert f"{name}@" in text, (name, text)
    if not m.faults:
        assert "faults: none fired on this connector" in text, text
    for words in m.reported:
        assert words in text, (words, text)
