"""Every example in `unstuck-scenarios --help` runs: parsed, its names, files, adapter and profile real.

Each `run` example is run for real up to pytest's collection (`-- --collect-only`): the plugin checks
its adapter and profile and collects its scenarios; nothing connects anywhere.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.cli import EPILOG

REPO = Path(__file__).resolve().parents[2]


def examples() -> list[list[str]]:
    out, pending = [], ""
    for raw in EPILOG.splitlines():
        line = raw.strip()
        if pending:
            line, pending = pending + " " + line, ""
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        if line.startswith("unstuck-scenarios"):
            out.append(shlex.split(line, comments=True)[1:])
    return out


def test_the_help_has_examples_of_every_way_to_run():
    found = [" ".join(e) for e in examples()]
    assert len(found) >= 8
    for flag in ("--csms-url", "--adapter", "--csms-profile", "--scenarios", "--db", "--csms-arg", "-- "):
        assert any(flag in f for f in found), flag


@pytest.mark.parametrize("argv", examples(), ids=lambda a: " ".join(a)[:60])
def test_each_example_runs(argv: list[str], tmp_path: Path):
    if argv[0] == "run":
        ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
        argv = [*ours, "--report", str(tmp_path), "--", *rest, "--collect-only", "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "scenarios.cli", *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    if argv[0] == "run":
        assert "error" not in done.stdout.lower(), done.stdout[-2000:]
