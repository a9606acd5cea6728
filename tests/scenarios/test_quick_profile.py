"""The quick profile as QA runs it (`make run`): every scenario passes, every report is written.

This is what makes CI fail when a CSMS invariant breaks: the scenarios judge
`csms serve` (a subprocess, fresh SQLite) against the simulator's ground truth.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from scenarios.meta import catalogue

pytestmark = pytest.mark.scenarios


def test_quick_profile_passes_and_writes_reports(tmp_path):
    report = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "scenarios.cli", "run", "--profile", "quick", "--report", str(report)],
                          capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-8000:]
    assert proc.returncode == 0, tail
    names = {i.name for i in catalogue()}
    summary = json.loads((report / "summary.json").read_text())
    assert {s["name"] for s in summary["scenarios"]} == names
    assert all(s["outcome"] == "passed" and not s["violations"] for s in summary["scenarios"]), tail
    junit = ET.parse(report / "junit.xml").getroot()
    suite = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert int(suite.get("tests")) == len(names) and int(suite.get("failures")) == 0
    html = (report / "report.html").read_text()
    assert all(name in html for name in names)
    traces = {p.stem for p in (report / "traces").glob("*.jsonl")}
    assert traces == names
    assert "HTML report:" in proc.stdout and "unstuck scenarios" in proc.stdout
