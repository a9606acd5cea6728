"""The whole catalogue against central systems we did not write, as a QA team runs it: 0 artefacts.

One test file per foreign CSMS (test_foreign_*.py), so the slow tier runs them side by side.

Each foreign CSMS (tests/foreign/) runs as its own process; `unstuck-scenarios run` judges it through its
adapter (named by file) and its profile. Every scenario must pass, be "not claimed", or fail with oracle
violations that docs/harness.md's table explains as that CSMS's real defect — nothing else (no assertion
of ours, no adapter error, no crash).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.foreign.launch import launch

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "harness.md"
FOREIGN = {
    "libcentral": (
        "tests.foreign.libcentral_serve",
        "tests/scenarios/libcsms_adapter.py:LibCsmsAdapter",
        "tests/foreign/libcentral.toml",
    ),
    "plaincsms": (
        "tests.foreign.plaincsms",
        "tests/foreign/plaincsms_adapter.py:PlainCsmsAdapter",
        "tests/foreign/plaincsms.toml",
    ),
    "libcentral201": (  # the 2.0.1 one: its catalogue runs with --ocpp 2.0.1
        "tests.foreign.libcentral201_serve",
        "tests/foreign/libcentral201_adapter.py:LibCentral201Adapter",
        "tests/foreign/libcentral201.toml",
    ),
}
OCPP = {"libcentral201": "2.0.1"}  # the version each speaks (default 1.6)


def documented_defects() -> dict[tuple[str, str], set[str]]:
    """(CSMS, scenario) -> the violation kinds the docs' table explains as that CSMS's real defects."""
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("### Real defects the catalogue finds") :]
    out: dict[tuple[str, str], set[str]] = {}
    for line in table.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] in ("CSMS", "") or set(cells[0]) <= {"-"}:
            continue
        kinds = set(re.findall(r"`(\w+)`", cells[2]))
        out[(cells[0].strip("`"), cells[1].strip("`"))] = kinds
    return out


def judge_the_catalogue(name: str, tmp_path: Path) -> None:
    """Run every scenario against foreign CSMS `name`; fail on anything but a pass, not claimed, or a
    documented defect."""
    module, adapter, profile = FOREIGN[name]
    csms = launch(module, "foreign-" + name)
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "scenarios.cli", "run"),
                *("--csms-url", csms.ocpp_url, "--api-url", csms.api_url, "--api-token", csms.token),
                *("--adapter", adapter, "--csms-profile", profile, "--report", str(tmp_path)),
                *("--ocpp", OCPP.get(name, "1.6")),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        csms.stop()
    summary = json.loads((tmp_path / "summary.json").read_text())
    documented = documented_defects()
    artefacts = []
    for s in summary["scenarios"]:
        kinds = {v["kind"] for v in s["violations"]}
        if s["outcome"] in ("passed", "not_claimed"):
            continue
        if s["outcome"] == "skipped" and "runs in OCPP" in (s["error"] or ""):  # a case in a version it lacks
            continue
        if s["outcome"] == "failed" and kinds and "violation(s)" in (s["error"] or ""):  # the oracle's report
            base = s["name"].split("[", 1)[0]  # a case (chaos_under_load[ocpp1.6]) is its scenario's row
            unexplained = kinds - documented.get((name, s["name"]), documented.get((name, base), set()))
            if not unexplained:
                continue
            artefacts.append(f"{s['name']}: {sorted(unexplained)} not in the docs' table")
            continue
        artefacts.append(f"{s['name']}: {s['outcome']} without an oracle verdict: {s['error'][-1500:]}")
    assert not artefacts, "\n".join(artefacts) + "\n" + done.stdout[-3000:]
    assert summary["passed"] >= 3 and summary["notClaimed"] >= 1, summary
