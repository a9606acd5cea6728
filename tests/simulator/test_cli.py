"""`unstuck-sim` as a user runs it: run with a fleet file, replay, faults, help, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from simulator.cli import main

from .libcsms import LibCentral

FLEET = """
seed = 3
ramp = 200

[driver]
first_within = 0.3
session = [0.5, 0.7]
idle = [0.1, 0.2]
linger = [0.05, 0.1]

[[group]]
prefix = "CP"
count = 3
connectors = 1
config = { MeterValueSampleInterval = 1 }
"""


@pytest.fixture
def lib():
    central = LibCentral(heartbeat_interval=1)
    central.start()
    yield central
    central.stop()


def test_run_then_replay_one_charge_point(tmp_path, lib, capsys):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET)
    trace = tmp_path / "reports" / "trace.jsonl"
    code = main(
        [
            "run",
            "--csms",
            lib.url,
            "--fleet",
            str(fleet),
            "--duration",
            "1.6",
            "--trace",
            str(trace),
            "--progress",
            "0.5",
            "--fault",
            "drop_stop_transaction=1,available=false",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "connected 3/3" in err  # the progress line
    assert "transactions" in out and "drop_stop_transaction" in out and "(none)" in out  # no errors
    header = json.loads(trace.read_text().splitlines()[0])
    assert header["kind"] == "header" and header["spec"]["seed"] == 3 and header["run"]["duration"] == 1.6
    assert lib.received(action="StartTransaction") and not lib.received(action="StopTransaction")

    again = LibCentral(heartbeat_interval=1)
    again.start()
    try:
        code = main(["replay", str(trace), "--csms", again.url, "--only", "CP0002", "--progress", "0"])
        assert code == 0
        assert {r.cp for r in again.received()} == {"CP0002"}
        first = [r.payload["idTag"] for r in lib.received("CP0002", "StartTransaction")]
        assert [r.payload["idTag"] for r in again.received("CP0002", "StartTransaction")][:1] == first[:1]
        assert not again.received(action="StopTransaction")
    finally:
        again.stop()


def test_faults_listing(capsys):
    assert main(["faults"]) == 0
    out = capsys.readouterr().out
    for name in ("drop_stop_transaction", "unlock_no_answer", "heartbeat_stop", "wire:", "reproduces:"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--csms", "ws://127.0.0.1:9/ocpp", "--fault", "teleport=1"], "unknown fault 'teleport'"),
        (["run", "--count", "2"], "no CSMS URL"),
        (["run", "--csms", "ws://x", "--fleet", "/nonexistent.toml"], "cannot read fleet file"),
        (["replay", "/nonexistent.jsonl"], "No such file"),
    ],
)
def test_bad_input_says_what_is_wrong(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "examples:" in out and "--fault" in out and "unstuck-sim replay" in out
