"""The locustfile end to end: `python -m loadtests.run` starts `csms serve`, runs locust headless, judges.

Short runs (10 s of traffic) with the CSMS's maintenance shortened further, so the
recovery window is a few seconds. One run must pass and write locust's CSV and HTML
and the oracle's summary; one with the maintenance switched off and every
StopTransaction dropped must fail and name the falsely busy connectors.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.loadtests import needs_locust

pytestmark = needs_locust

FAST_MAINTENANCE = [
    "--csms-arg=--maintenance-interval-seconds=0.5",
    "--csms-arg=--quiet-transaction-seconds=3",
    "--csms-arg=--heartbeat-interval=5",
]
QUICK_TRAFFIC = ["--", "--session-seconds", "2:5", "--arrival-seconds", "0.5:2", "--meter-interval", "1"]


def _run(tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--users",
        "20",
        "--rate",
        "20",
        "--time",
        "10s",
        "--report",
        str(tmp_path),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_a_healthy_csms_passes_and_the_reports_are_written(tmp_path):
    done = _run(
        tmp_path,
        "--fault=drop_stop_transaction=0.3",
        "--fault=reject_remote_start=0.2",
        "--recovery-window",
        "7",
        *FAST_MAINTENANCE,
        *QUICK_TRAFFIC,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]

    stats = (tmp_path / "load_stats.csv").read_text()
    for action in (
        "BootNotification",
        "Authorize",
        "StartTransaction",
        "MeterValues",
        "StopTransaction",
        "StatusNotification",
    ):
        assert re.search(rf"^OCPP,{action},[1-9]", stats, re.M), f"no OCPP {action} in load_stats.csv:\n{stats}"
    assert "/occupancy" in stats
    assert (tmp_path / "load.html").stat().st_size > 10_000
    summary = json.loads((tmp_path / "oracle_summary.json").read_text())
    assert summary["passed"] is True and summary["violations"] == []
    assert summary["checked"]["transactions"] > 0 and summary["checked"]["stored"] == summary["checked"]["transactions"]
    assert summary["run"]["chargePoints"] > 10
    faults = {f["name"] for f in summary["run"]["faults"]}
    assert faults == {"drop_stop_transaction", "reject_remote_start"}
    traces = summary["run"]["traces"]
    assert len(traces) == 1 and '"fault":"drop_stop_transaction"' in open(traces[0]).read()
    assert "oracle: PASSED" in (tmp_path / "oracle_summary.txt").read_text()


def test_stuck_sessions_with_maintenance_off_fail_the_run_and_name_the_connectors(tmp_path):
    done = _run(
        tmp_path,
        "--fault=drop_stop_transaction=1,available=false",
        "--recovery-window",
        "3",
        "--csms-arg=--orphan-grace-seconds=0",
        "--csms-arg=--quiet-transaction-seconds=0",
        "--csms-arg=--status-grace-seconds=0",
        *QUICK_TRAFFIC,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-4000:]

    summary = json.loads((tmp_path / "oracle_summary.json").read_text())
    assert summary["passed"] is False
    busy = {(v["cp"], v["connector"]) for v in summary["violations"] if v["kind"] == "falsely_busy"}
    assert len(busy) >= 5, summary["violationCounts"]
    for cp, connector in busy:  # printed by locust (kind, connector) and in the readable summary
        assert re.search(rf"falsely_busy\s+{cp}/{connector}\b", out)
    text = (tmp_path / "oracle_summary.txt").read_text()
    assert "oracle: FAILED" in text and "drop_stop_transaction@" in text
    assert (tmp_path / "load_stats.csv").exists() and (tmp_path / "load.html").exists()
