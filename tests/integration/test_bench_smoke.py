"""`python -m loadtests.bench` end to end: it starts its own `csms serve`, drives it, and reports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("websockets", reason="loadtests.bench needs websockets (the dev/load extras)")


def test_bench_smoke_mixed_load_has_calls_and_no_errors(tmp_path):
    cmd = [sys.executable, "-m", "loadtests.bench", "--cps", "5", "--duration", "2", "--json", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    res = json.loads(done.stdout.strip().splitlines()[-1])

    assert res["mode"] == "mixed"
    assert res["calls_ok_in_window"] > 0 and res["calls_per_s"] > 0
    assert res["errors_total"] == 0, res["errors"]
    assert res["connections"]["opened"] == 5 and res["connections"]["failed"] == 0
    assert res["connections"]["dropped"] == 0 and res["ramp"]["setup_errors"] == {}
    assert {"Authorize", "StartTransaction", "MeterValues", "StopTransaction"} <= set(res["lat_by_action_ms"])
    server = res["server"]
    assert server["ms_per_call"] > 0 and server["vmhwm_mb"] > 0
    assert res["target"]["returncode"] == 0  # stopped cleanly by SIGTERM
