"""`unstuck-sim run --procs N`: one seeded fleet over N processes, the schedule of one process.

The schedule test is pure (no sockets): the shards of three processes, built as
each child builds its own (from the spec the parent sends), hold exactly the
charge points, faults, car visits and start moments of the one-process fleet.
The end-to-end tests run the real CLI: against `csms serve` (every charge point
online from its shard, one merged trace, summed stats), and against the
ocpp-library CSMS for SIGTERM (clean stop, no orphans) and a child killed
(the run fails and says which process).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from simulator import Fleet, FleetSpec, GroupSpec, parse_fault_option, read_trace
from simulator.shard import (
    Shard,
    merge_trace_lines,
    plan_digest,
    plan_fleet,
    stats_to_mapping,
    sum_stats,
    trace_time,
)
from simulator.stats import Stats

from .conftest import FAST_DRIVER
from .libcsms import LibCentral

REPO = Path(__file__).resolve().parents[2]

SPEC = FleetSpec(
    seed=11,
    groups=(
        GroupSpec(prefix="CP", count=7, connectors=2),
        GroupSpec(prefix="DC", count=4, connectors=1, power_kw=(50.0, 150.0)),
    ),
    faults=(
        parse_fault_option("drop_stop_transaction=0.3,available=false"),
        parse_fault_option("reboot=@30+90,cp=CP0003"),
        parse_fault_option("heartbeat_stop=0.5,within=60"),
        parse_fault_option("silent_connector=0.4,connectors=2"),
    ),
    driver=FAST_DRIVER,
    ramp=5.0,
)


def _schedule(fleet: Fleet) -> dict[str, dict[str, object]]:
    return fleet.schedule(sessions=4)


def test_the_schedule_of_three_processes_is_that_of_one():
    one = _schedule(Fleet(SPEC, "ws://127.0.0.1:9/ocpp"))
    sent = FleetSpec.from_mapping(json.loads(json.dumps(SPEC.to_mapping())))  # what a child receives
    fleets = [Fleet(sent, "ws://127.0.0.1:9/ocpp", shard=Shard(k, 3)) for k in range(3)]
    shards = [_schedule(fleet) for fleet in fleets]
    # What the parent checks when a child is ready: it built the shard the parent planned.
    planned = [plan_digest(plan_fleet(SPEC, Shard(k, 3))) for k in range(3)]
    assert [plan_digest(fleet.plans) for fleet in fleets] == planned and len(set(planned)) == 3

    ids = [set(s) for s in shards]
    assert set().union(*ids) == set(one) and sum(map(len, ids)) == len(one) == 11  # a partition
    assert [len(s) for s in shards] == [4, 4, 3]
    merged = {cp: row for s in shards for cp, row in s.items()}
    for cp, row in one.items():
        assert merged[cp] == row, cp
    # The shards keep the whole fleet's ramp: place k starts at k / ramp in whichever process runs it.
    assert merged["DC0004"]["place"] == 10 and merged["DC0004"]["start_at"] == pytest.approx(2.0)
    assert "DC0004" in shards[10 % 3]
    # and the comparison has teeth: faults fired, timed faults and sessions are there to compare
    assert merged["CP0003"]["timed_faults"] and all(row["sessions"] for row in merged.values())
    assert any(row["faults"] for row in merged.values())
    assert len({row["rng_probe"] for row in merged.values()}) == 11


def test_procs_below_one_is_refused(capsys):
    from simulator.cli import main

    assert main(["run", "--csms", "ws://127.0.0.1:9/ocpp", "--procs", "0"]) == 1
    assert "--procs 0: need at least 1 process" in capsys.readouterr().err


def test_a_shard_out_of_range_is_refused():
    from simulator import ConfigError

    with pytest.raises(ConfigError, match="shard 3 of 3"):
        Shard(3, 3)


def test_stats_are_summed_and_traces_merged_in_time_order():
    a, b = Stats(charge_points=2, connected=2, sent=10, received=9), Stats(charge_points=1, connected=1, sent=4)
    a.faults["reboot"] += 1
    b.faults["reboot"] += 2
    b.errors["Heartbeat:timeout"] += 1
    total = sum_stats([stats_to_mapping(a), stats_to_mapping(b)])
    assert (total.charge_points, total.connected, total.sent, total.received) == (3, 3, 14, 9)
    assert total.faults == {"reboot": 3} and total.errors == {"Heartbeat:timeout": 1}

    header = '{"t":0.0,"cp":null,"kind":"header","version":1}\n'
    first = [header, '{"t":0.1,"cp":"CP0001","kind":"identity"}\n', '{"t":2.5,"cp":"CP0001","kind":"out"}\n']
    second = [
        '{"t":0.2,"cp":"CP0002","kind":"identity"}\n',
        '{"t":2.5,"cp":"CP0002","kind":"in"}\n',
        '{"t":3.0,"cp":"CP0002","kind":"o',
    ]  # cut short by a kill
    lines = list(merge_trace_lines([first, second]))
    assert [trace_time(x) for x in lines] == [0.1, 0.2, 2.5, 2.5]  # no header, no cut line
    assert [json.loads(x)["cp"] for x in lines] == ["CP0001", "CP0002", "CP0001", "CP0002"]


# --------------------------------------------------------------------------- end to end, the real CLI

FLEET = """
seed = 5
ramp = 50

[driver]
first_within = 0.3
session = [0.8, 1.2]
idle = [0.2, 0.4]
linger = [0.1, 0.2]

[[group]]
prefix = "CP"
count = 6
connectors = 1
config = { MeterValueSampleInterval = 1 }
"""


def _sim(args: list[str], tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "run", *args],
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, out, err


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        for kid in _children(proc.pid):
            os.kill(kid, signal.SIGKILL)
        proc.kill()
        proc.wait()


@pytest.fixture
def serve(tmp_path):
    try:
        from tests.support.server import start_csms

        proc = start_csms(
            f"sqlite:///{tmp_path / 'csms.db'}", tmp_path, ["--allow-unknown-chargers", "--heartbeat-interval", "1"]
        )
    except (ImportError, RuntimeError, OSError) as exc:
        pytest.skip(f"`csms serve` does not start here: {exc}")
    try:
        yield proc
    finally:
        proc.stop()


async def test_two_processes_against_csms_serve(serve, tmp_path):
    fleet, trace = tmp_path / "fleet.toml", tmp_path / "trace.jsonl"
    fleet.write_text(FLEET)
    proc, out, err = _sim(
        [
            "--csms",
            serve.ocpp,
            "--fleet",
            str(fleet),
            "--procs",
            "2",
            "--duration",
            "8",
            "--trace",
            str(trace),
            "--progress",
            "1",
        ],
        tmp_path,
        "sim",
    )
    try:
        with trio.fail_after(30):  # every charge point online at the CSMS while the run lasts
            while True:
                async with serve.client() as client:
                    rows = (await client.get("/api/charge-points")).json()["data"]
                if sum(1 for row in rows if row["online"]) == 6:
                    break
                assert proc.poll() is None, err.read_text()
                await trio.sleep(0.2)
        assert len(_children(proc.pid)) == 2
        code = await trio.to_thread.run_sync(lambda: proc.wait(timeout=60))
    finally:
        _stop(proc)
    summary, progress = out.read_text(), err.read_text()
    assert code == 0, progress
    assert "connected 6/6" in progress  # the parent's progress line sums the shards
    assert re.search(r"charge points\s+6 \(at most 6 connected at once\)", summary), summary
    assert re.search(r"connects\s+6 \(failed attempts 0, boots 6\)", summary), summary
    assert len(re.findall(r"process [12]/2 \(pid \d+\)\s+3 charge points, peak RSS", summary)) == 2, summary
    assert "count\n(none)" in summary, summary  # no errors in any process
    sent, received = map(int, re.search(r"frames\s+(\d+) sent, (\d+) received", summary).groups())

    records = list(read_trace(trace))
    assert [r["kind"] for r in records].count("header") == 1 and records[0]["run"]["procs"] == 2
    assert records[0]["spec"]["seed"] == 5
    times = [r["t"] for r in records]
    assert times == sorted(times)
    ids = {f"CP{n:04d}" for n in range(1, 7)}
    assert {r["cp"] for r in records if r["kind"] == "identity"} == ids
    assert {r["cp"] for r in records if r["kind"] == "link" and r["event"] == "connected"} == ids
    assert sum(r["kind"] == "out" for r in records) == sent  # stats summed = frames in the merged trace
    assert sum(r["kind"] == "in" for r in records) == received
    assert any(r["kind"] == "tx" and r["event"] == "answered" for r in records)
    assert not list(tmp_path.glob("trace.jsonl.shard*"))  # the shards' own files are merged away


@pytest.fixture
def lib():
    central = LibCentral(heartbeat_interval=1)
    central.start()
    yield central
    central.stop()


def _start_until_connected(lib: LibCentral, tmp_path: Path, name: str, extra: list[str]):
    proc, out, err = _sim(
        [
            "--csms",
            lib.url,
            "--count",
            "4",
            "--no-driver",
            "--procs",
            "2",
            "--ramp",
            "100",
            "--progress",
            "0.3",
            *extra,
        ],
        tmp_path,
        name,
    )
    try:
        _wait_for(lambda: "connected 4/4" in err.read_text() or proc.poll() is not None, 30, "4 connected")
        assert proc.poll() is None, err.read_text()
        kids = _children(proc.pid)
        assert len(kids) == 2
    except BaseException:
        _stop(proc)
        raise
    return proc, out, err, kids


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_every_process_and_keeps_the_trace(lib, tmp_path, signum):
    trace = tmp_path / "term.jsonl"
    proc, out, err, kids = _start_until_connected(lib, tmp_path, "term", ["--trace", str(trace)])
    try:
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
    finally:
        _stop(proc)
    assert code == 130, err.read_text()
    assert not any(_alive(k) for k in kids)  # no orphans
    assert f"{signum.name}: stopping 2 processes" in err.read_text()
    assert "Traceback" not in err.read_text(), err.read_text()
    assert re.search(r"charge points\s+4 \(at most 4 connected at once\)", out.read_text())
    records = list(read_trace(trace))
    assert {r["cp"] for r in records if r["kind"] == "identity"} == {f"CP{n:04d}" for n in range(1, 5)}
    closed = {r["cp"] for r in records if r["kind"] == "link" and r["event"] == "closed"}
    assert closed == {f"CP{n:04d}" for n in range(1, 5)}, "every WebSocket closed cleanly"


def test_a_child_that_dies_fails_the_run(lib, tmp_path):
    proc, out, err, kids = _start_until_connected(lib, tmp_path, "kill", [])
    victim = sorted(kids)[0]
    try:
        os.kill(victim, signal.SIGKILL)
        code = proc.wait(timeout=30)
    finally:
        _stop(proc)
    assert code == 1
    assert re.search(rf"process [12]/2 \(pid {victim}\) was killed by SIGKILL", err.read_text()), err.read_text()
    assert not any(_alive(k) for k in kids)  # the other one was stopped


def test_children_of_a_killed_parent_stop_by_themselves(lib, tmp_path):
    """SIGKILL leaves the parent no say: its children see their stdin close and stop, no orphans."""
    proc, out, err, kids = _start_until_connected(lib, tmp_path, "orphans", [])
    try:
        proc.kill()
        proc.wait()
        _wait_for(lambda: not any(_alive(k) for k in kids), 20, "the children to stop")
    finally:
        _stop(proc)
        for kid in kids:
            if _alive(kid):
                os.kill(kid, signal.SIGKILL)
    assert "Traceback" not in err.read_text(), err.read_text()
