"""`unstuck-sim import`: each field-log format into a frame log, bad input named, big logs streamed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.errors import ConfigError
from simulator.fieldlog import FrameRecord, LinkRecord, read_frame_log
from simulator.fieldlog.importers import (
    CP_ACTIONS,
    CSMS_ACTIONS,
    V16_ACTIONS,
    V201_ACTIONS,
    Bad,
    Entry,
    FieldLogImportError,
    ImportOptions,
    import_log,
    parse_time,
    read_entries,
)

from .libcsms import LibCentral

REPO = Path(__file__).resolve().parents[2]
CP = "ABB-TERRA-0042"
T0 = parse_time("2026-03-02T03:12:05.120Z")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def jline(time: Any, frm: str, frame: Any, cp: str = CP) -> str:
    return json.dumps({"time": time, "chargePointId": cp, "from": frm, "frame": frame})


def entries(path: Path, **opts: Any) -> list[Entry | Bad]:
    return list(read_entries(path, ImportOptions(**opts)))


def frames_of(path: Path) -> tuple[Any, list[FrameRecord | LinkRecord]]:
    header, records = read_frame_log(path)
    return header, list(records)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator.cli", "import", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


# --- pure parsing -------------------------------------------------------------------------------


def test_action_sets_are_the_ocpp_librarys_and_every_action_has_a_direction():
    from ocpp.v16.enums import Action as Action16
    from ocpp.v201.enums import Action as Action201

    assert V16_ACTIONS == {a.value for a in Action16}
    assert V201_ACTIONS == {a.value for a in Action201}
    assert CP_ACTIONS <= V16_ACTIONS | V201_ACTIONS
    assert {"StartTransaction", "TransactionEvent", "StatusNotification", "NotifyReport"} <= CP_ACTIONS
    assert {"RemoteStartTransaction", "RequestStartTransaction", "Reset", "GetVariables"} <= CSMS_ACTIONS


def test_times_iso_with_and_without_zone_and_epoch_numbers():
    assert parse_time("2026-03-02T03:12:05.120Z") == T0
    assert parse_time("2026-03-02T03:12:05.120") == T0  # naive is UTC
    assert parse_time("2026-03-02 04:12:05.120+01:00") == T0
    assert parse_time(T0 / 1e6) == T0  # epoch seconds
    assert parse_time(T0 // 1000) == T0  # epoch milliseconds
    assert parse_time(str(T0 // 1000)) == T0
    for bad in ("yesterday", "", None, -5, float("nan"), True):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_jsonl_frames_links_frame_text_and_ids_kept_exactly(tmp_path):
    log = write(
        tmp_path / "site.jsonl",
        "\n".join(
            [
                json.dumps({"time": "2026-03-02T03:12:04Z", "chargePointId": CP, "event": "connect"}),
                jline("2026-03-02T03:12:05.120Z", "cp", [2, "19", "StatusNotification", {"status": "Charging"}]),
                jline("2026-03-02T03:12:05.320Z", "csms", '[3, "19", {}]'),
                jline(T0 / 1e6 + 1, "cp", [2, "1", "Heartbeat", {}], cp="abb-terra-0042 "),
                "",
            ]
        ),
    )
    got = entries(log)
    assert [type(e) for e in got] == [Entry] * 4
    link, call, answer, other = got
    assert (link.kind, link.event, link.us) == ("link", "connect", T0 - 1_120_000)
    assert (call.kind, call.cp, call.frame) == ("out", CP, [2, "19", "StatusNotification", {"status": "Charging"}])
    assert (answer.kind, answer.frame) == ("in", [3, "19", {}])
    assert other.cp == "abb-terra-0042 "  # never normalised


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("LogId,LogTime,ChargePointId,ConnectorId,Message,Result,ErrorCode", "it looks like CSV"),
        ('2026-03-02T03:12:05Z [2,"1","Heartbeat",{}]', "--format frames?"),
        ('{"time": "2026-03-02T03:12:05Z", "chargePointId": "A", "from": "cp", "frame": [2, "1", "Heart', "cut short"),
        (jline("2026-03-02T03:12:05Z", "cp", '[2, "1", "Heartbeat", {'), "frame is not valid JSON (cut short?)"),
        (jline("2026-03-02T03:12:05Z", "cp", [2, "1", "Heartbeat"]), "a CALL must be [2, id, action, {payload}]"),
        (jline("2026-03-02T03:12:05Z", "cp", [5, "1", {}]), "message type 5"),
        (jline("2026-03-02T03:12:05Z", "charger", [3, "1", {}]), 'not "cp" or "csms"'),
        (jline("soon", "cp", [3, "1", {}]), "neither ISO 8601 nor epoch"),
        ('{"time": 1, "from": "cp", "frame": [3, "1", {}]}', "no chargePointId"),
        ('{"kind": "header", "version": 1, "epoch": "2026-03-02T00:00:00Z"}', "--format trace?"),
    ],
)
def test_jsonl_bad_lines_say_why(tmp_path, line, reason):
    (bad,) = entries(write(tmp_path / "x.jsonl", line + "\n"))
    assert isinstance(bad, Bad) and bad.fatal and bad.line == 1
    assert reason in bad.reason


def test_frames_direction_from_action_and_message_id_and_unmatched_answers_skipped(tmp_path):
    log = write(
        tmp_path / "cp.log",
        """
        2026-03-02T03:12:05.120Z [2,"19","StatusNotification",{"connectorId":2,"status":"Charging"}]
        2026-03-02T03:12:05.320Z [3,"19",{}]
        2026-03-02T03:12:06Z ABB-TERRA-0042 [2,"c1","RemoteStopTransaction",{"transactionId":7}]
        2026-03-02T03:12:06.2Z ABB-TERRA-0042 [3,"c1",{"status":"Accepted"}]
        1772421127.5 [4,"nobody","InternalError","",{}]
        2026-03-02T03:12:08Z [2,"20","FancyVendorThing",{}]
        """,
    )
    got = entries(log, format="frames", cp="ABB-TERRA-0042")
    assert [(e.kind, e.frame[0]) for e in got if isinstance(e, Entry) and e.frame] == [
        ("out", 2),
        ("in", 3),
        ("in", 2),  # the CSMS's action
        ("out", 3),  # so the charger answered
        ("out", 2),  # an unknown action: taken as the charger's
    ]
    (skip,) = [e for e in got if isinstance(e, Bad)]
    assert skip.line == 5 and not skip.fatal and "answers no CALL" in skip.reason


def test_frames_without_a_charger_id_need_cp(tmp_path):
    log = write(tmp_path / "cp.log", '2026-03-02T03:12:05Z [2,"1","Heartbeat",{}]\n')
    with pytest.raises(ConfigError, match=r"cp.log:1: no charger id .* --cp ID"):
        entries(log, format="frames")


OCPP_CORE_16 = """
LogId,LogTime,ChargePointId,ConnectorId,Message,Result,ErrorCode
1,2026-03-02 21:48:13.8670000,ABB-TERRA-0042,,BootNotification,,
2,2026-03-02 21:48:14.1120000,ABB-TERRA-0042,2,StatusNotification,Info= / Status=Preparing / ,NoError
3,2026-03-02 21:50:00.0000000,ABB-TERRA-0042,,Authorize,'04A2B3C4'=>Accepted,
4,2026-03-02 21:50:02.0000000,ABB-TERRA-0042,-1,StartTransaction,Accepted,
5,2026-03-02 21:55:00.0000000,ABB-TERRA-0042,2,MeterValues,Meter (kWh): 12.5 | Charge (kW): 11 | SoC (%): -1,
6,2026-03-02 21:56:00.0000000,ABB-TERRA-0042,,Reset,Accepted,
7,2026-03-02 21:57:00.0000000,ABB-TERRA-0042,,GetConfiguration,,Unknown answer
8,2026-03-02 22:40:00.0000000,ABB-TERRA-0042,2,StatusNotification,Info= / Status=Finishing / ,NoError
9,2026-03-02 22:40:01.0000000,ABB-TERRA-0042,,StopTransaction,Accepted,
10,2026-03-02 22:41:00.0000000,ABB-TERRA-0042,,Heartbeat,,
11,2026-03-02 22:42:00.0000000,ABB-TERRA-0042,,FooBar,"{""a"": 1}",NotSupported
"""


def calls(got: list[Entry | Bad]) -> dict[str, list[Any]]:
    return {e.frame[2]: e.frame for e in got if isinstance(e, Entry) and e.frame and e.frame[0] == 2}


def test_ocpp_core_csv_16_rows_become_calls_and_answers(tmp_path):
    got = entries(write(tmp_path / "messagelog.csv", OCPP_CORE_16), format="ocpp-core-csv")
    c = calls(got)
    assert c["BootNotification"][3] == {"chargePointVendor": "unknown", "chargePointModel": "unknown"}
    status = c["StatusNotification"][3]  # the last one: Finishing
    assert (status["connectorId"], status["status"], status["errorCode"]) == (2, "Finishing", "NoError")
    assert c["Authorize"][3] == {"idTag": "04A2B3C4"}
    start = c["StartTransaction"][3]
    assert (start["connectorId"], start["idTag"], start["meterStart"]) == (2, "04A2B3C4", 0)  # -1: the Preparing one
    meter = c["MeterValues"][3]
    assert meter["transactionId"] == 4 and meter["meterValue"][0]["sampledValue"] == [
        {"value": "12500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
    ]
    assert c["StopTransaction"][3]["transactionId"] == 4 and c["StopTransaction"][3]["meterStop"] == 12500
    assert c["FooBar"][3] == {"a": 1}
    by_id = {(e.frame[1], e.frame[0]): e for e in got if isinstance(e, Entry)}
    assert by_id[("csv-4", 3)].frame[2] == {"idTagInfo": {"status": "Accepted"}, "transactionId": 4}
    reset_call, reset_answer = by_id[("csv-6", 2)], by_id[("csv-6", 3)]
    assert (reset_call.kind, reset_answer.kind, reset_answer.frame[2]) == ("in", "out", {"status": "Accepted"})
    assert by_id[("csv-11", 4)].frame[2] == "NotSupported"
    (skip,) = [e for e in got if isinstance(e, Bad)]
    assert skip.line == 8 and not skip.fatal and "could not match" in skip.reason
    assert all(e.us >= parse_time("2026-03-02T21:48:13.867Z") for e in got if isinstance(e, Entry))


def test_ocpp_core_csv_201_semicolons_and_decimal_commas(tmp_path):
    log = write(
        tmp_path / "ml.csv",
        """
        LogId;LogTime;ChargePointId;ConnectorId;Message;Result;ErrorCode
        1;2026-03-02T21:48:13Z;EVB-7;1;StatusNotification;Status=Occupied;
        2;2026-03-02T21:48:20Z;EVB-7;1;TransactionEvent;StartTx => Accepted | Meter (kWh): 1,5;
        3;2026-03-02T21:58:20Z;EVB-7;1;TransactionEvent;UpdateTx => Meter (kWh): 3,25 | Charge (kW): 7,4;
        4;2026-03-02T22:08:20Z;EVB-7;1;TransactionEvent;EndTx => Accepted | Meter (kWh): 4;
        """,
    )
    got = [e for e in entries(log, format="ocpp-core-csv") if isinstance(e, Entry) and e.kind == "out"]
    status = got[0].frame[3]
    assert status["connectorStatus"] == "Occupied" and status["evseId"] == 1
    events = [e.frame[3] for e in got[1:]]
    assert [(e["eventType"], e["seqNo"]) for e in events] == [("Started", 0), ("Updated", 1), ("Ended", 2)]
    assert {e["transactionInfo"]["transactionId"] for e in events} == {"csv-2"}
    assert events[1]["meterValue"][0]["sampledValue"][0] == {
        "value": 3250.0,
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": "Wh"},
    }


def test_ocpp_core_csv_that_is_not_one_says_so(tmp_path):
    log = write(tmp_path / "x.csv", "time,charger,frame\n1,2,3\n")
    with pytest.raises(FieldLogImportError, match=r"x.csv:1: not an OCPP.Core MessageLog export.*missing LogTime"):
        entries(log, format="ocpp-core-csv")


TRACE_V1 = [
    {"t": 0.0, "cp": None, "kind": "header", "version": 1, "epoch": "2026-03-02T03:12:05.120Z", "spec": {}},
    {"t": 0.01, "cp": "CP0001", "kind": "link", "event": "connected"},
    {"t": 0.02, "cp": "CP0001", "kind": "out", "frame": '[2,"1","BootNotification",{"chargePointVendor":"x"}]'},
    {"t": 0.03, "cp": "CP0001", "kind": "state", "connector": 1, "event": "plug"},
    {"t": 0.04, "cp": "CP0001", "kind": "in", "frame": '[3,"1",{"status":"Accepted"}]'},
    {"t": 0.5, "cp": "CP0001", "kind": "link", "event": "closed", "by": "csms", "code": 1006},
    {"t": 0.6, "cp": "CP0001", "kind": "link", "event": "connect_failed", "why": "refused"},
]


def test_trace_v1_frames_and_links_relative_to_its_epoch(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in TRACE_V1))
    got = entries(trace, format="trace")
    assert [(e.kind, e.event or e.frame[0], e.us - T0) for e in got] == [
        ("link", "connect", 10_000),
        ("out", 2, 20_000),
        ("in", 3, 40_000),
        ("link", "disconnect", 500_000),
    ]
    assert got[-1].why == "closed by csms, code 1006"
    with pytest.raises(FieldLogImportError, match="not a version-1 trace"):
        entries(write(tmp_path / "not.jsonl", jline(1, "cp", [3, "1", {}]) + "\n"), format="trace")


# --- the import: sorting, gaps, round trip ------------------------------------------------------


def test_round_trip_sorted_frames_ids_and_header(tmp_path):
    lines = [
        jline(
            "2026-03-02T03:12:05.120Z", "cp", [2, "19", "StatusNotification", {"connectorId": 2, "status": "Faulted"}]
        ),
        jline("2026-03-02T03:12:05.320Z", "csms", [3, "19", {}]),
        jline("2026-03-02T03:12:01Z", "cp", [2, "1", "BootNotification", {"chargePointVendor": "ABB"}]),  # earlier
        jline("2026-03-02T03:12:01.5Z", "csms", [3, "1", {"status": "Accepted"}]),
        jline("2026-03-02T03:12:02Z", "cp", [2, "t", "TransactionEvent", {}], cp="EVB-Station/7"),
    ] * 3  # the same night pasted three times: equal times keep file order
    log = write(tmp_path / "site.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "out" / "frames.jsonl"
    report = import_log(log, out, ImportOptions(run_bytes=300))  # tiny runs: spilled and merged
    header, records = frames_of(out)
    assert header.charge_points == {CP: "1.6", "EVB-Station/7": "2.0.1"}
    assert header.epoch == "2026-03-02T03:12:01.000Z" and header.frames == 15 and header.skipped == 0
    assert header.source == {"file": "site.jsonl", "format": "jsonl"}
    assert [r.t for r in records] == sorted(r.t for r in records) and records[0].t == 0.0
    expected = sorted(
        ((parse_time(json.loads(x)["time"]) - parse_time("2026-03-02T03:12:01Z")) / 1e6, i, json.loads(x))
        for i, x in enumerate(lines)
    )
    assert [(r.t, r.cp, r.frame) for r in records] == [(t, x["chargePointId"], x["frame"]) for t, _, x in expected]
    assert report.out_of_order == 3 and report.frames == 15


def test_gap_seconds_infers_a_disconnect_and_connect_around_a_silence(tmp_path):
    lines = [jline(T0 / 1e6 + s, "cp", [2, str(s), "Heartbeat", {}]) for s in (0, 300, 600, 4200, 4500)]
    lines += [jline(T0 / 1e6 + s, "cp", [2, str(s), "Heartbeat", {}], cp="OTHER") for s in range(0, 4600, 300)]
    lines.append(json.dumps({"time": T0 / 1e6 + 4400, "chargePointId": "OTHER", "event": "disconnect"}))
    log = write(tmp_path / "site.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "frames.jsonl"
    report = import_log(log, out, ImportOptions(gap_seconds=900))
    _, records = frames_of(out)
    links = [(r.t, r.cp, r.event) for r in records if isinstance(r, LinkRecord)]
    assert links == [(1500.0, CP, "disconnect"), (4200.0, CP, "connect"), (4400.0, "OTHER", "disconnect")]
    assert report.inferred_links == 2
    assert "no frames for 900 s" in next(r.why for r in records if isinstance(r, LinkRecord))
    import_log(log, out)  # off by default
    assert [r.cp for r in frames_of(out)[1] if isinstance(r, LinkRecord)] == ["OTHER"]


def test_trace_of_a_real_simulator_run_converts(tmp_path, capsys):
    central = LibCentral(heartbeat_interval=1)
    central.start()
    try:
        trace = tmp_path / "trace.jsonl"
        code = main(
            ["run", "--csms", central.url, "--count", "2", "--connectors", "1", "--seed", "3", "--no-driver"]
            + ["--duration", "1.2", "--trace", str(trace), "--progress", "0"]
        )
    finally:
        central.stop()
    assert code == 0
    v1 = [json.loads(x) for x in trace.read_text().splitlines()]
    wire = [r for r in v1 if r["kind"] in ("in", "out")]
    out = tmp_path / "frames.jsonl"
    assert main(["import", str(trace), "--format", "trace", "-o", str(out)]) == 0
    assert "2 chargers (CP0001: OCPP 1.6, CP0002: OCPP 1.6)" in capsys.readouterr().out
    header, records = frames_of(out)
    assert header.charge_points == {"CP0001": "1.6", "CP0002": "1.6"} and header.frames == len(wire)
    frames = [r for r in records if isinstance(r, FrameRecord)]
    assert sorted((r.cp, r.direction, json.dumps(r.frame)) for r in frames) == sorted(
        (r["cp"], r["kind"], json.dumps(json.loads(r["frame"]))) for r in wire
    )
    assert {"BootNotification", "StatusNotification"} <= {r.frame[2] for r in frames if r.frame[0] == 2}
    assert [r.event for r in records if isinstance(r, LinkRecord) and r.cp == "CP0001"][:1] == ["connect"]


# --- the command --------------------------------------------------------------------------------


def test_cli_bad_line_exit_2_then_skip_bad_counts_it(tmp_path):
    log = write(
        tmp_path / "site.jsonl",
        "\n".join(
            [
                jline("2026-03-02T03:12:05Z", "cp", [2, "1", "Heartbeat", {}]),
                jline("2026-03-02T03:12:06Z", "cp", [2, "2", "WhatIsThis", {}]),
                jline("2026-03-02T03:12:07Z", "cp", '[2, "3", "StatusNotif'),
            ]
        )
        + "\n",
    )
    out = tmp_path / "frames.jsonl"
    failed = cli(str(log), "-o", str(out))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert f"{log}:3: frame is not valid JSON (cut short?)" in failed.stderr
    assert not out.exists()
    done = cli(str(log), "-o", str(out), "--skip-bad")
    assert done.returncode == 0, done.stderr
    assert "Skipped 1 line: line 3: frame is not valid JSON" in done.stdout
    assert "Unknown actions (kept): 1 CALL (WhatIsThis x1)" in done.stdout
    header, records = frames_of(out)
    assert header.skipped == 1 and header.frames == 2 and len(records) == 2


def test_cli_wrong_format_binary_and_missing_cp_are_named(tmp_path, capsys):
    csv = write(tmp_path / "ml.csv", OCPP_CORE_16)
    binary = tmp_path / "log.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    frames = write(tmp_path / "cp.log", '2026-03-02T03:12:05Z [2,"1","Heartbeat",{}]\n')
    out = str(tmp_path / "out.jsonl")
    for args, message in [
        ([str(csv)], "ml.csv:1: not a JSON line (it looks like CSV: --format ocpp-core-csv?)"),
        ([str(binary)], "log.bin:1: binary data (NUL bytes), not a text log"),
        ([str(binary), "--skip-bad"], "log.bin: no frames in it"),
        ([str(frames), "--format", "frames"], "cp.log:1: no charger id before the frame; name the charger with --cp"),
        ([str(tmp_path / "missing.jsonl")], "missing.jsonl"),
        ([str(csv), "--format", "ocpp-core-csv", "--cp", "X"], "--cp names the charger of `frames` lines"),
    ]:
        assert main(["import", *args, "-o", out]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.startswith("unstuck-sim import: "), (args, err)
    assert main(["import", str(frames), "--format", "frames", "--cp", CP, "-o", out]) == 0
    assert frames_of(Path(out))[0].charge_points == {CP: "1.6"}


def test_cli_ocpp_core_csv_summary(tmp_path, capsys):
    csv = write(tmp_path / "ml.csv", OCPP_CORE_16)
    out = tmp_path / "out.jsonl"
    assert main(["import", str(csv), "--format", "ocpp-core-csv", "-o", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "1 charger (ABB-TERRA-0042: OCPP 1.6), 20 frames" in summary
    assert "Skipped 1 line: line 8: an answer OCPP.Core could not match" in summary
    assert "Unknown actions (kept): 1 CALL (FooBar x1)" in summary
    assert frames_of(out)[0].source == {"file": "ml.csv", "format": "ocpp-core-csv"}


# --- a big log ----------------------------------------------------------------------------------

BIG_BYTES = 200 << 20


def _write_big_log(path: Path) -> int:
    """~200 MB of jsonl from 50 chargers, every 1000th block a minute late (so runs must merge)."""
    payload = {"connectorId": 1, "status": "Charging", "errorCode": "NoError", "info": "x" * 60}
    lines = 0
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        i = 0
        while written < BIG_BYTES:
            block = []
            for k in range(100):
                n = i * 100 + k
                late = -60.0 if i % 1000 == 999 else 0.0
                t = round(T0 / 1e6 + n * 0.01 + late, 3)
                cp = f"CP-{n % 50:04d}"
                block.append(jline(t, "cp", [2, str(n), "StatusNotification", payload], cp=cp))
                block.append(jline(t + 0.001, "csms", [3, str(n), {}], cp=cp))
            text = "\n".join(block) + "\n"
            f.write(text)
            written += len(text)
            lines += len(block)
            i += 1
    return lines


@pytest.mark.slow_tier
def test_200_mb_log_is_imported_in_bounded_memory(tmp_path):
    log = tmp_path / "big.jsonl"
    lines = _write_big_log(log)
    out = tmp_path / "big.frames.jsonl"
    # A fresh parent process: RUSAGE_CHILDREN then holds the import's peak RSS alone.
    measure = textwrap.dedent(
        f"""
        import resource, subprocess, sys, time
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "simulator.cli", "import", {str(log)!r}, "-o", {str(out)!r}],
                              capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(done.returncode, round(time.monotonic() - start, 1), round(peak), repr(done.stdout + done.stderr))
        """
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True, cwd=REPO, check=True)
    code, seconds, peak_mb, output = result.stdout.split(" ", 3)
    print(f"200 MB import: {lines} lines, {seconds} s, peak RSS {peak_mb} MB (test {time.monotonic() - started:.0f} s)")
    assert code == "0", output
    assert int(peak_mb) < 150, f"peak RSS {peak_mb} MB for a {log.stat().st_size >> 20} MB log"
    assert "entries were earlier than the line before them: sorted by time" in output
    header, records = read_frame_log(out)
    assert header.frames == lines and len(header.charge_points) == 50
    last = -1.0
    count = 0
    for r in records:
        assert r.t >= last
        last, count = r.t, count + 1
    assert count == lines
