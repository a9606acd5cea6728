"""`unstuck-sim replay FRAMES.jsonl`: the frame player from the command line (progress lines, a summary).

`simulator/cli.py` keeps the `replay` subcommand; when TRACE is a version-2 frame log it hands the
parsed arguments here. Exit codes: 0 played without errors, 1 errors occurred, 2 the command
cannot be run as given (a bad option or log), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import sys
from pathlib import Path
from typing import Any, TextIO

import trio

from .frames import FRAMES_VERSION, FrameLogError, read_frame_log
from .playbook import parse_log_time
from .player import Player, PlayOptions, PlayResult

__all__ = ["add_frame_options", "is_frame_log", "replay_frames", "FRAME_ONLY_OPTIONS"]

FRAME_ONLY_OPTIONS = ("speed", "start", "end", "answers")  # dests that only a frame log takes


def add_frame_options(p: argparse.ArgumentParser) -> None:
    """The `replay` options only a frame log takes (a version-1 trace refuses them)."""
    g = p.add_argument_group("frame logs (version 2, from `unstuck-sim import`)")
    g.add_argument("--speed", type=float, help="log seconds per wall second (default 60; 0: as fast as answered)")
    g.add_argument(
        "--from", dest="start", metavar="T", help="start at T: log seconds, a clock time (03:12) or ISO time (UTC)"
    )
    g.add_argument("--to", dest="end", metavar="T", help="stop at T (as --from)")
    g.add_argument("--answers", metavar="JSON", help="file: {action: payload} for CSMS calls the log has no answer to")


def is_frame_log(path: str | Path) -> bool:
    """Whether the file's first line is a version-2 frame log header (False for anything else: the caller decides)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(f.readline() or "null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and first.get("version") == FRAMES_VERSION and first.get("format") == "frames"


def _options(args: argparse.Namespace, epoch: str, ids: list[str]) -> PlayOptions:
    if not args.csms:
        raise ValueError("no CSMS URL: pass --csms-url ws://HOST:PORT/PATH")
    speed = 60.0 if args.speed is None else args.speed
    if speed < 0:
        raise ValueError(f"--speed {speed}: must be 0 (as fast as answered) or above")
    start = None if args.start is None else parse_log_time(args.start, epoch)
    end = None if args.end is None else parse_log_time(args.end, epoch)
    if start is not None and end is not None and end < start:
        raise ValueError(f"--to ({end:g} s) is before --from ({start:g} s)")
    answers: dict[str, Any] | None = None
    if args.answers:
        with open(args.answers, encoding="utf-8") as fh:
            answers = json.load(fh)
        if not isinstance(answers, dict) or not all(isinstance(v, dict) for v in answers.values()):
            raise ValueError(f"{args.answers}: needs a JSON object of action -> payload object")
    password = None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as fh:
            secret = fh.readline().rstrip("\r\n")
        password = dict.fromkeys(ids, secret)
    return PlayOptions(
        csms_url=args.csms,
        speed=math.inf if speed == 0 else speed,
        start=start,
        end=end,
        answers=answers,
        only=frozenset(args.only.split(",")) if args.only else None,
        password=password,
        ssl_context=ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None,
    )


def progress_line(player: Player) -> str:
    r = player.result()
    return f"log t {player.log_time():.0f} s of {r.log_end:.0f}, {r.sent} frames sent, {len(player.errors)} errors"


def summary(result: PlayResult) -> str:
    span = result.log_end - result.log_start
    rate = f" ({span / result.wall_seconds:.0f}x)" if result.wall_seconds > 0 else ""
    rows = [
        (
            "log played",
            f"t {result.log_start:g} to {result.log_end:g} s ({span:g} s) in {result.wall_seconds:.1f} s{rate}",
        ),
        ("frames sent", f"{result.sent} (answered {result.answered})"),
        ("CSMS calls", f"{result.csms_calls} (answered from the log {result.csms_calls_answered_from_log})"),
        ("no answer in the log", ", ".join(f"{a} x{n}" for a, n in sorted(result.unanswered_calls.items())) or "-"),
        ("transactions mapped", str(len(result.mapped_transactions))),
    ]
    out = [f"{k:<20}  {v}" for k, v in rows]
    out += [f"  {cp} {log} -> {csms}" for (cp, log), csms in sorted(result.mapped_transactions.items())]
    out.append(f"{'errors':<20}  {len(result.errors) or '(none)'}")
    out += [f"  {e}" for e in result.errors]
    return "\n".join(out)


async def _play(player: Player, every: float, err: TextIO) -> PlayResult | FrameLogError:
    """The play, and a progress line every `every` seconds; a log the reader cannot read is returned, not raised."""
    result: list[PlayResult | FrameLogError] = []
    async with trio.open_nursery() as nursery:

        async def play(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                result.append(await player.run(task_status=task_status))
            except FrameLogError as exc:
                result.append(exc)
                task_status.started()
            nursery.cancel_scope.cancel()  # the progress lines

        await nursery.start(play)
        while every > 0:
            await trio.sleep(every)
            err.write(progress_line(player) + "\n")
            err.flush()
    return result[0]


def replay_frames(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Play the frame log `args.trace_in` as `unstuck-sim replay` was asked to (to sys.stdout/err by default)."""
    out = out or sys.stdout
    err = err or sys.stderr
    for name, why in (("trace", "--trace"), ("duration", "--duration")):
        if getattr(args, name, None) is not None:
            err.write(f"unstuck-sim: {why} is for version-1 traces; a frame log plays from --from to --to\n")
            return 2
    try:
        header, _ = read_frame_log(args.trace_in)
        options = _options(args, header.epoch, list(header.charge_points))
    except (FrameLogError, OSError, ValueError) as exc:
        err.write(f"unstuck-sim: {exc}\n")
        return 2
    player = Player(header, lambda: read_frame_log(args.trace_in)[1], options)
    every = args.progress if args.progress is not None else (1.0 if err.isatty() else 5.0)
    try:
        result = trio.run(_play, player, every, err)
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        out.write("interrupted\n" + summary(player.result()) + "\n")
        return 130
    if isinstance(result, FrameLogError):  # a line the reader could not read
        err.write(f"unstuck-sim: {result}\n")
        return 2
    out.write(summary(result) + "\n")
    return 1 if result.errors else 0


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, bare or inside the exception group a nursery wraps it in."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return isinstance(exc, KeyboardInterrupt)
