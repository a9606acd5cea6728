"""`unstuck-sim`: run a fleet of faulty charge points, replay a trace, list the faults."""

from __future__ import annotations

import argparse
import dataclasses
import resource
import ssl
import sys
import textwrap
from collections.abc import Sequence
from typing import TextIO

import trio

from .errors import SimulatorError
from .faults import FAULTS, markdown_table, parse_fault_option
from .fieldlog.playcli import add_frame_options, is_frame_log, replay_frames
from .fleet import Fleet
from .fleetspec import FleetSpec, GroupSpec, load_fleet_file
from .procs import ShardedRun, raise_fd_limit, run_sharded
from .replay import ReplayScript, ScriptedTraceError
from .stats import Stats
from .trace import TraceWriter
from .wire import WIRES as OCPP_VERSIONS

__all__ = ["main"]

EXAMPLES = """\
examples:
  # 100 charge points x 2 connectors for 5 minutes, two fault modes, a trace to replay later
  unstuck-sim run --csms ws://127.0.0.1:9000/ocpp --count 100 --connectors 2 --seed 7 \\
      --fault drop_stop_transaction=0.1 --fault silent_connector=0.05 \\
      --duration 300 --trace reports/trace.jsonl

  # fault options and schedules: a StopTransaction dropped without the Available that follows,
  # and CP0003 rebooting at 30 s and 90 s
  unstuck-sim run --csms ws://127.0.0.1:9000/ocpp --count 5 \\
      --fault drop_stop_transaction=0.2,available=false --fault reboot=@30+90,cp=CP0003

  # OCPP 2.0.1 charging stations (TransactionEvent, EVSEs), the same faults and car visits
  unstuck-sim run --csms ws://127.0.0.1:9000/ocpp --count 50 --ocpp 2.0.1 --fault drop_stop_transaction=0.1

  # a mixed fleet from a TOML file (groups, power, faults, driver timings; `ocpp = "2.0.1"` per group)
  unstuck-sim run --csms ws://127.0.0.1:9000/ocpp --fleet fleet.toml --duration 600

  # 20,000 heartbeating charge points: more than one core drives, so four processes share the
  # fleet (the same charge points, faults and sessions as one process; one merged trace)
  unstuck-sim run --csms ws://127.0.0.1:9000/ocpp --count 20000 --no-driver --ramp 500 --procs 4 \\
      --duration 600 --trace reports/big.jsonl

  # play the same charge-point behaviour again (all, or only the charge points of the bug)
  unstuck-sim replay reports/trace.jsonl --only CP0042 --trace reports/again.jsonl

  # play a charger's imported field log (`unstuck-sim import`) against a CSMS at 60x, 03:00-05:00 of its day
  unstuck-sim replay reports/site-x.frames.jsonl --csms-url ws://127.0.0.1:9000/ocpp --from 03:00 --to 05:00

  # the fault table
  unstuck-sim faults

Charge point URL = {csms}/{chargePointId}, subprotocol ocpp1.6 (or ocpp2.0.1 with --ocpp 2.0.1).
"""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="unstuck-sim",
        description="A deterministic fleet of faulty OCPP 1.6J and 2.0.1 charge points.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run a fleet against a CSMS", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run.add_argument("--csms", help="CSMS base URL, e.g. ws://127.0.0.1:9000/ocpp (or `csms` in the fleet file)")
    run.add_argument("--count", type=int, help="charge points (default 10; not with --fleet)")
    run.add_argument("--connectors", type=int, help="connectors per charge point (default 2; not with --fleet)")
    run.add_argument("--prefix", default=None, help="charge point id prefix (default CP: CP0001...)")
    run.add_argument(
        "--ocpp",
        choices=sorted(OCPP_VERSIONS),
        help="the OCPP version every charge point speaks (default 1.6; with --fleet: every group's, "
        "overriding the file's `ocpp`)",
    )
    run.add_argument("--seed", type=int, help="one seed for everything random (default 0)")
    run.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=PROB|@T[,key=value]",
        help="add a fault mode (repeatable); see `unstuck-sim faults`",
    )
    run.add_argument("--fleet", help="TOML fleet file (groups, faults, driver)")
    run.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    run.add_argument("--ramp", type=float, help="charge points started per second (default 100)")
    run.add_argument("--no-driver", action="store_true", help="no random sessions: boot, heartbeat, answer")
    run.add_argument(
        "--procs",
        type=int,
        default=1,
        metavar="N",
        help="split the fleet over N processes (default 1): charge point k runs in process k mod N, "
        "with the schedule one process would give it; one merged trace, summed stats. For a "
        "fleet larger than one core drives: a ramp above ~300 boots/s, more than ~5,000 "
        "charge points with sessions, or tens of thousands heartbeating",
    )
    _common(run)

    replay = sub.add_parser("replay", help="re-run the charge-point behaviour recorded in a trace")
    replay.add_argument(
        "trace_in", metavar="TRACE", help="a trace written by `run --trace`, or a frame log from `unstuck-sim import`"
    )
    replay.add_argument(
        "--csms", "--csms-url", dest="csms", help="CSMS base URL (a version-1 trace: default the one in it)"
    )
    replay.add_argument("--only", help="comma-separated charge point ids to replay (default: all)")
    replay.add_argument("--duration", type=float, help="seconds (default: as long as the recorded run)")
    _common(replay)
    add_frame_options(replay)

    faults = sub.add_parser("faults", help="list the fault modes: what each does on the wire, what it reproduces")
    faults.add_argument("--markdown", action="store_true", help="as the README's Markdown table")
    _add_import(sub)
    return ap


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", help="write a JSONL trace here")
    p.add_argument("--no-frames", action="store_true", help="leave OCPP frames out of the trace")
    p.add_argument(
        "--progress",
        type=float,
        default=None,
        help="seconds between progress lines on stderr (default 1 on a terminal, else 10; 0: none)",
    )
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help="HTTP Basic password of every charge point (the file's first line), for a CSMS that "
        "authenticates charge points (OCPP security profiles 1 and 2); never written to the trace",
    )
    p.add_argument("--ca-file", metavar="PEM", help="trust this CA for a wss:// CSMS (default: the system's CAs)")


def _spec_from_args(args: argparse.Namespace) -> tuple[FleetSpec, dict[str, object]]:
    run_opts: dict[str, object] = {}
    if args.fleet:
        if args.count is not None or args.connectors is not None or args.prefix is not None:
            raise SimulatorError(
                "--count/--connectors/--prefix describe a one-group fleet; with --fleet, set them in the file"
            )
        spec, run_opts = load_fleet_file(args.fleet)
    else:
        spec = FleetSpec(
            groups=(
                GroupSpec(
                    prefix=args.prefix or "CP",
                    count=10 if args.count is None else args.count,
                    connectors=2 if args.connectors is None else args.connectors,
                ),
            )
        )
    changes: dict[str, object] = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.ramp is not None:
        changes["ramp"] = args.ramp
    if args.fault:
        changes["faults"] = spec.faults + tuple(parse_fault_option(f) for f in args.fault)
    if args.no_driver:
        changes["driver"] = None
    if args.ocpp is not None:
        changes["groups"] = tuple(dataclasses.replace(g, ocpp=args.ocpp) for g in spec.groups)
    return spec.with_overrides(**changes), run_opts


async def _progress(fleet: Fleet, every: float, err: TextIO) -> None:
    tty = err.isatty()
    while True:
        await trio.sleep(every)
        if fleet.clock is not None:
            line = fleet.stats.line(fleet.clock.now())
            err.write(("\r" + line + "   ") if tty else (line + "\n"))
            err.flush()


async def _drive(fleet: Fleet, duration: float | None, progress: float, err: TextIO) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fleet.run)
        if progress > 0:
            nursery.start_soon(_progress, fleet, progress, err)
        if duration is not None:
            await trio.sleep(duration)
            nursery.cancel_scope.cancel()


def summary(fleet: Fleet) -> str:
    """The end-of-run table (also what the README shows)."""
    return summary_table(fleet.stats, fleet.elapsed, [("this process", _usage(fleet.elapsed))])


def summary_table(s: Stats, t: float, usage: list[tuple[str, str]]) -> str:
    """The table for stats `s` over `t` seconds, with `usage` rows (CPU and memory) after the counts."""
    rows = [
        ("run time", f"{t:.1f} s"),
        ("charge points", f"{s.charge_points} (at most {s.peak_connected} connected at once)"),
        ("connects", f"{s.connects} (failed attempts {s.connect_failures}, boots {s.boots})"),
        ("transactions", f"{s.sessions} started, {s.sessions_done} ended, {s.active} running"),
        ("energy", f"{s.energy_wh / 1000:.1f} kWh"),
        ("frames", f"{s.sent} sent, {s.received} received"),
        ("queued messages lost", str(s.queued_lost)),
        *usage,
    ]
    width = max(len(k) for k, _ in rows)
    out = [f"{k:<{width}}  {v}" for k, v in rows]
    out.append("")
    out.append(f"{'fault':<32} fired")
    for name in FAULTS:
        if s.faults.get(name):
            out.append(f"{name:<32} {s.faults[name]}")
    if not s.faults:
        out.append("(none)")
    out.append("")
    out.append(f"{'error':<48} count")
    for name, n in sorted(s.errors.items()):
        out.append(f"{name:<48} {n}")
    if not s.errors:
        out.append("(none)")
    return "\n".join(out)


def _usage(seconds: float) -> str:
    """Peak RSS and CPU of this process: the figures the README's scale table quotes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    share = f", {100 * cpu / seconds:.0f}% of one core" if seconds > 0 else ""
    return f"peak RSS {usage.ru_maxrss / 1024:.0f} MB, CPU {cpu:.1f} s{share}"


def _fault_table() -> str:
    lines = []
    for kind in FAULTS.values():
        opts = ", ".join(f"{k}={v!r}" for k, v in kind.params.items()) or "-"
        lines.append(
            f"{kind.name}  [{'per connector' if kind.per_connector else 'per charge point'}; "
            f"decided at: {kind.trigger.value}; options: {opts}]"
        )
        lines.extend(textwrap.wrap(kind.wire, 96, initial_indent="    wire: ", subsequent_indent="          "))
        lines.extend(
            textwrap.wrap(kind.reproduces, 96, initial_indent="    reproduces: ", subsequent_indent="                ")
        )
    return "\n".join(lines)


def _sharded_usage(run: ShardedRun) -> list[tuple[str, str]]:
    """CPU and peak RSS of each shard process, and of the parent (which only relays and merges)."""
    rows = []
    for u in run.usage:
        name = f"process {u['shard']} (pid {u['pid']})"
        if "cpu" in u:
            share = f", {100 * u['cpu'] / run.elapsed:.0f}% of one core" if run.elapsed > 0 else ""
            rows.append(
                (
                    name,
                    f"{u['charge_points']} charge points, peak RSS {u['rss_mb']:.0f} MB, CPU {u['cpu']:.1f} s{share}",
                )
            )
        else:
            rows.append((name, f"{u['charge_points']} charge points, no final report"))
    rows.append(("parent process", _usage(run.elapsed)))
    return rows


def _main_sharded(
    args: argparse.Namespace,
    spec: FleetSpec,
    csms: str,
    duration: float | None,
    password: str | None,
    run_info: dict[str, object],
    progress: float,
) -> int:
    try:
        run = run_sharded(
            spec,
            csms,
            procs=args.procs,
            duration=duration,
            trace=args.trace,
            frames=not args.no_frames,
            password=password,
            ca_file=args.ca_file,
            progress=progress,
            run_info=run_info,
            err=sys.stderr,
        )
    except KeyboardInterrupt:  # before the signal handler was in place; the children were killed
        return 130
    print(summary_table(run.stats, run.elapsed, _sharded_usage(run)))
    if args.trace:
        print(f"\ntrace: {args.trace} (merged from {args.procs} processes)")
    for failure in run.failures:
        print(f"unstuck-sim: {failure}; the run failed", file=sys.stderr)
    return run.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "faults":
        print(markdown_table() if args.markdown else _fault_table())
        return 0
    if args.command == "import":
        return _main_import(args)
    try:
        if args.command == "run":
            spec, run_opts = _spec_from_args(args)
            csms = args.csms or run_opts.get("csms")
            duration = args.duration if args.duration is not None else run_opts.get("duration")
            replay = None
        else:
            if is_frame_log(args.trace_in):  # version 2: the chargers' frames themselves, played by fieldlog.player
                return replay_frames(args)
            if any(getattr(args, k) is not None for k in ("speed", "start", "end", "answers")):
                raise SimulatorError("--speed, --from, --to and --answers are for frame logs (unstuck-sim import)")
            replay = ReplayScript.from_trace(args.trace_in, args.only.split(",") if args.only else None)
            spec, run_opts = replay.spec, replay.run
            csms = args.csms or run_opts.get("csms")
            duration = args.duration if args.duration is not None else (run_opts.get("duration") or replay.end)
        if not csms:
            raise SimulatorError("no CSMS URL: pass --csms ws://HOST:PORT/PATH")
        procs = getattr(args, "procs", 1)
        if procs < 1:
            raise SimulatorError(f"--procs {procs}: need at least 1 process")
        trace = TraceWriter(args.trace, frames=not args.no_frames) if args.trace and procs == 1 else TraceWriter()
        run_info = {"csms": csms, "duration": duration, "argv": list(argv if argv is not None else sys.argv[1:])}
        password = None
        if args.password_file:
            with open(args.password_file, encoding="utf-8") as fh:
                password = fh.readline().rstrip("\r\n")
        context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
        if procs == 1:
            fleet = Fleet(
                spec, str(csms), trace=trace, replay=replay, run_info=run_info, password=password, ssl_context=context
            )
    except ScriptedTraceError as exc:  # nothing to rebuild: the frames can be replayed once imported
        print(f"unstuck-sim: {exc}", file=sys.stderr)
        return 2
    except (SimulatorError, OSError) as exc:
        print(f"unstuck-sim: {exc}", file=sys.stderr)
        return 1
    if procs > 1:
        progress = args.progress if args.progress is not None else (1.0 if sys.stderr.isatty() else 10.0)
        raise_fd_limit()
        return _main_sharded(args, spec, str(csms), float(duration) if duration else None, password, run_info, progress)
    raise_fd_limit()
    progress = args.progress if args.progress is not None else (1.0 if sys.stderr.isatty() else 10.0)
    interrupted = False
    try:
        trio.run(_drive, fleet, float(duration) if duration else None, progress, sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        trace.close()
    if progress > 0 and sys.stderr.isatty():
        sys.stderr.write("\n")
    print(summary(fleet))
    if args.trace:
        print(f"\ntrace: {args.trace}")
    return 130 if interrupted else 0


IMPORT_EXAMPLES = """\
examples:
  # a charger's log as JSON lines ({"time", "chargePointId", "from": "cp"|"csms", "frame"})
  unstuck-sim import site-x.jsonl -o reports/site-x.frames.jsonl

  # bare timestamped frames of one charger, a connection gap inferred after 15 min of silence
  unstuck-sim import cp42.log --format frames --cp ABB-TERRA-0042 --gap-seconds 900 -o reports/cp42.jsonl

  # OCPP.Core's MessageLog table as CSV (lossy: see docs/simulator.md), bad rows skipped and counted
  unstuck-sim import messagelog.csv --format ocpp-core-csv --skip-bad -o reports/site-x.jsonl

  # our own trace of a scenario run, to replay it frame by frame
  unstuck-sim import reports/trace.jsonl --format trace -o reports/trace.frames.jsonl
"""


def _add_import(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`import LOG`: the importers live in simulator/fieldlog (imported when the command runs)."""
    imp = sub.add_parser(
        "import",
        help="turn a charger's field log into a frame log (for replay and explain)",
        description="Turn a field log into a frame log (version-2 trace): frames sorted by time, each charger's "
        "OCPP version inferred from its actions, bad lines named (or skipped with --skip-bad).",
        epilog=IMPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("log", metavar="LOG", help="the field log")
    imp.add_argument(
        "--format",
        choices=("jsonl", "frames", "ocpp-core-csv", "trace"),
        default="jsonl",
        help="jsonl (default): one frame object a line; frames: `TIME [ID] [frame]` lines; ocpp-core-csv: "
        "OCPP.Core's MessageLog table; trace: a version-1 simulator/scenario trace",
    )
    imp.add_argument("-o", "--output", required=True, metavar="TRACE", help="the frame log to write")
    imp.add_argument("--skip-bad", action="store_true", help="skip and count unreadable lines instead of stopping")
    imp.add_argument("--cp", metavar="ID", help="--format frames: the charger of lines that name none")
    imp.add_argument(
        "--gap-seconds",
        type=float,
        metavar="N",
        help="infer a disconnect/connect pair around any silence of one charger longer than N s (default: off)",
    )


def _main_import(args: argparse.Namespace) -> int:
    """Exit code 0, or 2 with `file:line: reason` on stderr when the log cannot be imported."""
    from .fieldlog.importers import ImportOptions, import_log

    options = ImportOptions(format=args.format, skip_bad=args.skip_bad, cp=args.cp, gap_seconds=args.gap_seconds)
    try:
        report = import_log(args.log, args.output, options)
    except (SimulatorError, OSError) as exc:
        print(f"unstuck-sim import: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
