"""A team's own scenario folder, outside the repo: run by `unstuck-scenarios run --scenarios DIR` and by plain
pytest (the plugin's entry point), reported in full even when a scenario raises before its judgement, and
rerun exactly by the line its report gives. Real processes: an embedded CSMS per run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "scenarios" / "test_idle_reboot.py"
BIN = Path(sys.executable).parent

TEAM_BUG = "the team's helper broke: " + " ".join(f"word{i}" for i in range(1500))  # ~12,000 characters

RAISES_EARLY = f"""
from scenarios.meta import scenario


@scenario(code="XRE", purpose="raises before its judgement", seed="team example", quick_s=3)
async def test_raises_early(fleet, oracle):
    f = await fleet(connectors=1)
    await f[f.ids[0]].plug_in(1)
    await oracle.wait(1.0)
    raise RuntimeError({TEAM_BUG!r})
"""


@pytest.fixture
def team(tmp_path: Path) -> Path:
    folder = tmp_path / "team"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "test_idle_reboot.py")
    (folder / "test_raises_early.py").write_text(RAISES_EARLY, encoding="utf-8")
    return folder


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the repo on the path
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _records(report: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((report / "summary.json").read_text())["scenarios"]}


def test_a_team_folder_runs_reports_in_full_and_reruns_exactly(team: Path):
    cwd = team.parent
    done = _run([str(BIN / "unstuck-scenarios"), "run", "--scenarios", "team", "--jobs", "2", "--seed", "5"], cwd)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    records = _records(cwd / "reports")
    assert records["idle_reboot"]["outcome"] == "passed", records["idle_reboot"].get("error")
    summary = json.loads((cwd / "reports" / "summary.json").read_text())
    assert summary["rerun"] == "unstuck-scenarios run --profile quick --seed 5 --scenarios team"  # the whole run

    early = records["raises_early"]
    assert early["outcome"] == "failed" and "reportError" not in early
    assert TEAM_BUG in early["error"]  # the whole text, not cut mid-word
    assert early["fleet"]["chargePoints"] == 1 and early["timeline"]["connectors"]  # truth and verdicts so far
    assert early["timeline"]["end"] >= 1.0 and early["timeline"]["connectors"][0]["verdict"]
    html = (cwd / "reports" / "report.html").read_text()
    assert "could not be built" not in html and "the fleet never started" not in html

    rerun = records["idle_reboot"]["rerun"]
    assert rerun == "unstuck-scenarios run --profile quick --seed 5 --scenarios team idle_reboot"
    again = _run([str(BIN / rerun.split()[0]), *shlex.split(rerun)[1:], "--report", "again"], cwd)
    assert again.returncode == 0, again.stdout[-3000:]
    assert list(_records(cwd / "again")) == ["idle_reboot"]
    header = json.loads((cwd / "again" / "summary.json").read_text())["rerun"]
    assert header == "unstuck-scenarios run --profile quick --seed 5 --scenarios team idle_reboot"


def test_plain_pytest_runs_a_team_scenario_through_the_entry_point(team: Path):
    cwd = team.parent
    (team / "test_raises_early.py").unlink()
    # No pytest.ini, no trio_mode, no -p: the installed plugin gives the fixtures and runs it under trio.
    args = ["team", "-p", "no:cacheprovider", "--seed", "5", "--api-token", "SECRET123", "--report-dir", "out"]
    done = _run([str(BIN / "pytest"), *args], cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = _records(cwd / "out").values()
    assert record["outcome"] == "passed" and record["name"] == "idle_reboot"
    assert "unstuck scenarios" in done.stdout  # the summary table
    for written in ("summary.json", "report.html"):
        assert "SECRET123" not in (cwd / "out" / written).read_text()  # a report is no place for a token
    rerun = record["rerun"]
    assert rerun.startswith(f"{sys.executable} -m pytest -p no:cacheprovider --seed 5 --api-token")
    assert rerun.endswith("test_idle_reboot.py::test_idle_reboot") and '"$UNSTUCK_API_TOKEN"' in rerun
    again = subprocess.run(
        rerun.replace("--report-dir out", "--report-dir again"),
        shell=True,  # the line a person pastes, token from the environment
        cwd=cwd,
        env={**os.environ, "UNSTUCK_API_TOKEN": "SECRET123"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert again.returncode == 0, again.stdout[-3000:]
    assert list(_records(cwd / "again")) == ["idle_reboot"]


def test_a_bad_adapter_or_profile_is_one_error_before_anything_runs(team: Path, tmp_path: Path):
    cwd = team.parent
    for flag, value, says in (
        ("--adapter", "their_csms.adapter:Theirs", "cannot import their_csms.adapter"),
        ("--csms-profile", "their.toml", "CSMS profile their.toml: cannot read it"),
    ):
        done = _run([str(BIN / "unstuck-scenarios"), "run", "--scenarios", "team", flag, value], cwd)
        assert done.returncode != 0 and says in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and not (cwd / "reports").exists()


PARAMETRIZED = """
import pytest

from scenarios.meta import scenario


@pytest.mark.parametrize("k", [1, 2])
@scenario(code="XPA", purpose="one case passes, one fails", seed="team example", quick_s=1)
async def test_cases(oracle, k):
    oracle.note(f"case {k}")
    assert k == 1, "the second case fails"
"""

TWO_IN_ONE = PARAMETRIZED.replace("test_cases", "test_other").replace('"XPA"', '"XPB"')


def test_each_case_of_a_parametrized_scenario_is_its_own_record_and_two_scenarios_in_one_file_are_refused(
    tmp_path: Path,
):
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "test_cases.py").write_text(PARAMETRIZED, encoding="utf-8")
    done = _run([str(BIN / "unstuck-scenarios"), "run", "--scenarios", "team", "--jobs", "1"], tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    records = _records(tmp_path / "reports")
    assert {k: r["outcome"] for k, r in records.items()} == {"cases[1]": "passed", "cases[2]": "failed"}
    assert records["cases[1]"]["notes"] == ["case 1"]

    (folder / "test_cases.py").write_text(PARAMETRIZED + TWO_IN_ONE.split("\n\n\n", 1)[1], encoding="utf-8")
    done = _run([str(BIN / "unstuck-scenarios"), "run", "--scenarios", "team", "--report", "two"], tmp_path)
    assert done.returncode != 0 and "one @scenario test per module (test_cases, test_other)" in done.stderr
