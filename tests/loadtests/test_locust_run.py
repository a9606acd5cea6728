"""The locustfile end to end: `python -m loadtests.run` starts `csms serve`, runs locust headless, judges.

Short runs (10 s of traffic) with the CSMS's maintenance shortened further, so the
recovery window is a few seconds. One run must pass and write locust's CSV and HTML
and the oracle's summary; one with the maintenance switched off and every
StopTransaction dropped must fail, in locust's own reports too, and name the falsely
busy connectors. One runs plain `locust` with its web UI against a CSMS started as
`make serve` starts it (default timings: a 902 s recovery window) and must end as
soon as the CSMS has healed, saying "judging" meanwhile.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

from scenarios.embedded import launch_csms
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


def test_a_201_fleet_under_locust_passes_with_transaction_events(tmp_path):
    """The same load with OCPP 2.0.1 stations: TransactionEvents in locust's statistics, the oracle's judgement."""
    done = _run(
        tmp_path,
        "--ocpp",
        "2.0.1",
        "--fault=drop_stop_transaction=0.3",
        "--recovery-window",
        "7",
        *FAST_MAINTENANCE,
        *QUICK_TRAFFIC,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    stats = (tmp_path / "load_stats.csv").read_text()
    for action in ("BootNotification", "Authorize", "TransactionEvent", "StatusNotification"):
        assert re.search(rf"^OCPP,{action},[1-9]", stats, re.M), f"no OCPP {action} in load_stats.csv:\n{stats}"
    assert not re.search(r"^OCPP,(StartTransaction|StopTransaction),", stats, re.M), stats
    summary = json.loads((tmp_path / "oracle_summary.json").read_text())
    assert summary["passed"] is True and summary["violations"] == [], summary["violations"][:3]
    assert summary["checked"]["transactions"] > 0 and summary["checked"]["stored"] == summary["checked"]["transactions"]


NOT_TRANSACTIONS = """
name = "claims occupancy, not transactions"
[timings]
recovery_window = 10.0
[claims]
occupancy = true
transactions = false
remote_start = true
unlock_cleanup = true
sessions = true
reservations = true
"""


def test_stuck_sessions_with_maintenance_off_fail_the_run_in_locusts_reports_and_name_the_connectors(tmp_path):
    """Every stop lost and nothing heals: falsely busy connectors (claimed: failed) and unclosed transactions
    (not claimed by this profile: counted, not failed). The looks every 2 s never pass, so the run waits the
    whole window and is judged with it."""
    profile = tmp_path / "profile.toml"
    profile.write_text(NOT_TRANSACTIONS)
    done = _run(
        tmp_path,
        "--fault=drop_stop_transaction=1,available=false",
        "--csms-profile",
        str(profile),
        "--csms-arg=--orphan-grace-seconds=0",
        "--csms-arg=--quiet-transaction-seconds=0",
        "--csms-arg=--status-grace-seconds=0",
        *QUICK_TRAFFIC,
        "--oracle-poll",
        "2",
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-4000:]

    summary = json.loads((tmp_path / "oracle_summary.json").read_text())
    assert summary["passed"] is False
    assert summary["run"]["recoveryWindow"] == 10.0 and summary["run"]["healedAfter"] is None
    assert summary["run"]["looks"] >= 2, "it looked before the window's end, and went on waiting"
    assert "not healed yet (falsely_busy=" in out and "judged after the whole 10 s recovery window" in out
    busy = {(v["cp"], v["connector"]) for v in summary["violations"] if v["kind"] == "falsely_busy"}
    assert len(busy) >= 5, summary["violationCounts"]
    assert set(summary["violationCounts"]) == {"falsely_busy"}, summary["violationCounts"]
    assert summary["notClaimed"].get("unclosed_transaction", 0) >= 5, summary["notClaimed"]
    assert re.search(r"not claimed by the CSMS profile \(not judged\): unclosed_transaction=\d+", out)
    for cp, connector in busy:  # printed by locust (kind, connector) and in the readable summary
        assert re.search(rf"falsely_busy\s+{cp}/{connector}\b", out)
    text = (tmp_path / "oracle_summary.txt").read_text()
    assert "oracle: FAILED" in text and "drop_stop_transaction@" in text

    # Locust's own reports: one failure row per violation kind, counted as often as the oracle found it.
    with open(tmp_path / "load_failures.csv", newline="") as f:
        failures = [row for row in csv.DictReader(f) if row["Method"] == "oracle"]
    assert [(row["Name"], int(row["Occurrences"])) for row in failures] == [("falsely_busy", len(busy))]
    assert "reported busy" in failures[0]["Error"]
    with open(tmp_path / "load_stats.csv", newline="") as f:
        stats = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    assert int(stats[("oracle", "falsely_busy")]["Failure Count"]) == len(busy)
    html = (tmp_path / "load.html").read_text()
    report = json.loads(re.search(r"window\.templateArgs = (\{.*\})$", html, re.M).group(1))
    assert [(e["method"], e["name"], e["occurrences"]) for e in report["failures_statistics"]] == [
        ("oracle", "falsely_busy", len(busy))
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as res:
        body = res.read().decode()
    return json.loads(body) if res.headers.get_content_type() == "application/json" else body


def test_against_csms_serve_defaults_a_clean_run_ends_once_healed_and_the_web_ui_says_judging(tmp_path):
    """`make serve`'s CSMS (default timings) and plain locust with its defaults: the profile is csms serve's,
    902 s to heal. A run without faults has nothing to heal, so the first look passes and the run ends in
    seconds; while the oracle waits, locust's web UI reports "judging (recovery window 902 s)"."""
    tokens = tmp_path / "tokens"
    tokens.touch(mode=0o600)
    tokens.write_text("admin:loadtest:lt-" + os.urandom(8).hex() + "\n")
    token = tokens.read_text().strip().rsplit(":", 1)[1]
    serve = ["--db", f"sqlite:///{tmp_path / 'csms.db'}", "--allow-unknown-chargers", "--accept-unknown-id-tags"]
    csms = launch_csms(
        [*serve, "--ocpp-port", "0", "--http-port", "0", "--api-tokens-file", str(tokens)],
        tmp_path,
        log_path=tmp_path / "csms.log",
    )
    web = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    try:
        locust = subprocess.Popen(
            [
                *(sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py"),
                *("--autostart", "--autoquit", "0", "-u", "20", "-r", "20", "-t", "10s", "--stop-timeout", "0"),
                *("--web-host", "127.0.0.1", "--web-port", web.rsplit(":", 1)[1]),
                *("--ocpp-url", csms.ocpp, "--api-url", csms.http, "--api-token", token),
                *(
                    "--report-dir",
                    str(tmp_path),
                    "--csv",
                    str(tmp_path / "load"),
                    "--html",
                    str(tmp_path / "load.html"),
                ),
                *("--session-seconds", "2:5", "--arrival-seconds", "0.5:2", "--meter-interval", "1"),
            ],
            stdout=open(tmp_path / "locust.log", "w"),
            stderr=subprocess.STDOUT,
        )
        judging: list[tuple[dict, str, str]] = []
        while locust.poll() is None and time.monotonic() - started < 240:
            try:
                oracle = _get(f"{web}/oracle")
                if oracle["phase"] == "judging" and len(judging) < 3:
                    judging.append((oracle, _get(f"{web}/stats/requests")["state"], _get(f"{web}/")))
            except OSError:  # not listening yet, or gone
                pass
            time.sleep(0.2)
        still_running = locust.poll() is None
        rc = None if still_running else locust.wait()
    finally:
        if locust.poll() is None:
            locust.kill()
        csms.stop()
    took = time.monotonic() - started
    out = (tmp_path / "locust.log").read_text()
    assert not still_running, f"still running after {took:.0f} s: no early end of the 902 s window?\n{out[-3000:]}"
    assert rc == 0, out[-4000:]
    summary = json.loads((tmp_path / "oracle_summary.json").read_text())
    assert summary["passed"] is True and summary["run"]["profileName"] == "unstuck (csms serve defaults)"
    assert summary["run"]["recoveryWindow"] == 902.0
    assert 0 < summary["run"]["healedAfter"] < 120 and took < 240, (summary["run"], took)
    assert re.search(r"oracle: PASSED \(healed after \d+ s of the profile's 902 s window\)", out)
    assert summary["checked"]["transactions"] > 0 and summary["checked"]["stored"] == summary["checked"]["transactions"]

    assert judging, "the web UI never showed the oracle judging"
    oracle, state, index = judging[-1]
    assert oracle["label"] == "judging (recovery window 902 s)" and oracle["window"] == 902.0
    assert state == "judging (recovery window 902 s)"  # the header's Status while Stop waits
    assert 'id="unstuck-oracle"' in index and 'fetch("./oracle")' in index
