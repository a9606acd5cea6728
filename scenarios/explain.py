"""`unstuck-scenarios explain FRAMELOG`: replay a field log against a CSMS and say why a connector was stuck.

The imperative shell around `explain_rules`: it starts (or is given) a CSMS, plays the log's chargers
with `simulator.fieldlog.player.Player`, samples the CSMS's verdict for every connector the log names
while it plays (wall time mapped to log time with `player.log_time()`), reads the embedded CSMS's
audit trail afterwards, and hands all of it, as plain data, to the pure rules. Then it prints the
findings in words and writes the same HTML report the scenarios write.

The embedded CSMS runs with the production defaults of `csms serve`, every duration divided by the
replay speed (a 120 s orphan grace is 2 s at 60x): what it heals, and when in log time, is what a
default deployment would have done that night. `--csms-arg` overrides any of them.

`--from`/`--to` explain one window of the log (as `unstuck-sim replay --from/--to`). The charger's word
before the window is read from the whole log (the rules judge the window against what the charger had
said since, however long before); the CSMS is told, just before the window, what of it still held
(`explain_rules.window_prelude`: the last boot, open transactions, last statuses, offline or not), at
once and not at its log times. What the CSMS did before the window (a heal, a status gone stale) is not
reproduced: its clocks start at the window.

The log's app and operator actions (`playbook.app_actions`: a remote start or stop, an unlock) are
re-enacted: at their log time the CSMS under test is asked the same through its adapter (a start with
the logged connector and idTag at REENACT_TARIFF), so it sends its own call to the replayed charger,
which answers as the log did. Its verdict is sampled just before and just after, and the adapter's
answer is kept (a refusal, a timeout, NotSupportedError: in words, never a traceback). `--no-reenact`
plays the charger's side only.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from simulator.fieldlog.frames import FrameLogError, FrameLogHeader, FrameRecord, LinkRecord, read_frame_log
from simulator.fieldlog.playbook import APP_CALLS, AppAction, app_actions
from simulator.fieldlog.playbook import parse_log_time as replay_log_time

from .adapters.base import CsmsAdapter, NotSupportedError
from .embedded import Timings, start_embedded
from .explain_rules import (
    ACCEPTED,
    FAILED,
    NOT_SUPPORTED,
    REFUSED,
    SKIPPED,
    Ask,
    AuditMark,
    ChargerLog,
    Finding,
    Reenacted,
    VerdictSample,
    band_state,
    clock,
    describe_finding,
    explained_window,
    find_findings,
    moment_at,
    parse_log_time,
    read_charger_log,
    reenactment_words,
    what_to_ask,
    window_prelude,
)

if TYPE_CHECKING:
    from simulator.fieldlog.player import Player

__all__ = ["explain_main", "add_arguments", "scaled_serve_args", "ExplainRun", "report_record"]

SAMPLE_LOG_SECONDS = 15.0  # a verdict per connector every 15 s of log (0.25 s of wall at 60x)
PRELUDE_WALL_SECONDS = 1.0  # with --from: the prelude is played this long (wall) before the window
# A re-enacted app start's price per kWh: the scenarios' (an admin token may set it; the log has none).
REENACT_TARIFF = Decimal("0.35")
REENACT_WALL_TIMEOUT = 60.0  # s of wall an adapter call may take before it is given up (said, not raised)
# `csms serve` defaults (csms/config.py) that are durations, in seconds, with the flag and its unit.
_DEFAULTS: tuple[tuple[str, float, float], ...] = (
    # flag, default seconds, floor seconds (wall): below it the CSMS would spin or a loopback call time out
    ("--maintenance-interval-seconds", 60.0, 0.25),
    ("--status-grace-seconds", 30.0, 0.2),
    ("--orphan-grace-seconds", 120.0, 0.2),
    ("--quiet-transaction-seconds", 600.0, 1.0),
    ("--start-timeout-seconds", 180.0, 1.0),
    ("--reconnect-settle-seconds", 10.0, 0.1),
    ("--live-evidence-seconds", 120.0, 0.5),
)
_MINUTES: tuple[tuple[str, float], ...] = (
    ("--freshness-minutes", 30.0),
    ("--reservation-timeout-minutes", 60.0),
    ("--status-release-minutes", 240.0),
)


def scaled_serve_args(speed: float) -> list[str]:
    """`csms serve` timings at their defaults divided by `speed` (the log plays that much faster)."""
    out = [
        "--heartbeat-interval",
        str(max(1, round(300 / speed))),
        "--heartbeat-timeout-factor",
        "2.5",
        "--call-timeout-seconds",
        "10",  # the player answers at once: a network timeout, not a log duration
    ]
    for flag, seconds, floor in _DEFAULTS:
        out += [flag, f"{max(floor, seconds / speed):g}"]
    for flag, minutes in _MINUTES:
        out += [flag, f"{minutes / speed:g}"]
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("framelog", metavar="FRAMELOG", help="a frame log (`unstuck-sim import` makes one from a field log)")
    p.add_argument("--speed", type=float, default=60.0, help="log seconds per wall second (default 60)")
    p.add_argument(
        "--at", default=None, metavar="TIME", help='answer for one moment: "03:12", an ISO time or log seconds'
    )
    p.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="T",
        help="explain from T on (as `unstuck-sim replay --from`: log seconds, a clock time of the log's day like "
        "03:12, or an ISO time); the CSMS is first told what the charger said before T that still held",
    )
    p.add_argument("--to", dest="end", default=None, metavar="T", help="explain up to T (as --from)")
    p.add_argument(
        "-o",
        "--output",
        default="reports/explain.html",
        metavar="HTML",
        help="the report (default reports/explain.html; its data beside it, .json)",
    )
    p.add_argument("--csms-url", default=None, metavar="WS_URL", help="a running CSMS: its OCPP base URL")
    p.add_argument("--api-url", default=None, metavar="HTTP_URL", help="... its REST base URL")
    p.add_argument("--api-token", default=None, metavar="TOKEN", help="... an admin token (or UNSTUCK_API_TOKEN)")
    p.add_argument("--adapter", default=None, metavar="FILE.py:CLASS", help="how to ask another CSMS (see `run`)")
    p.add_argument(
        "--db", default=None, metavar="URL", help="database of the embedded CSMS (default: temporary SQLite)"
    )
    p.add_argument(
        "--csms-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `csms serve` argument for the embedded CSMS (repeatable), e.g. "
        "--csms-arg=--maintenance-interval-seconds=0 (maintenance off)",
    )
    p.add_argument("--csms-command", default=None, metavar="CMD", help="the command that starts the embedded CSMS")
    p.add_argument(
        "--no-reenact",
        dest="reenact",
        action="store_false",
        help="do not re-enact the log's app and operator actions: by default each RemoteStartTransaction / "
        "RequestStartTransaction, RemoteStopTransaction / RequestStopTransaction and UnlockConnector the log's "
        "CSMS sent is asked of the CSMS under test through its API at the same log time (a start with the "
        "logged connector and idTag), so it sends its own call, which the replayed charger answers as the log did",
    )


class BadInput(Exception):
    """What the user gave cannot be explained: exit 2 with this message."""


@dataclass
class ExplainRun:
    """Everything one explain gathered, as plain data: the rules and the report read only this."""

    path: Path
    header: FrameLogHeader
    log: ChargerLog
    window: tuple[float, float] | None = None  # --from/--to as log seconds, when a window was asked
    told: int = 0  # frames of the prelude (what the CSMS was told at the window's start)
    span: tuple[float, float] = (0.0, 0.0)  # the whole log's first and last t
    samples: list[VerdictSample] = field(default_factory=list)
    audit: list[AuditMark] = field(default_factory=list)
    play: dict[str, Any] = field(default_factory=dict)
    csms: str = ""
    csms_args: list[str] = field(default_factory=list)
    wall: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    audited: bool = False
    actions: list[AppAction] = field(default_factory=list)  # the log's app and operator calls, in the window
    reenact: bool = True
    reenacted: list[Reenacted] = field(default_factory=list)


# ------------------------------------------------------------------ the shell
def explain_main(args: argparse.Namespace) -> int:
    try:
        run = _explain(args)
    except BadInput as exc:
        print(f"unstuck-scenarios explain: {exc}", file=sys.stderr)
        return 2
    at = None
    if args.at is not None:
        at = parse_log_time(args.at, run.header.epoch)
    print(summary_text(run, at))
    out = Path(args.output)
    write_report(run, out, rerun=_rerun(args))
    print(f"\nHTML report: {out.resolve()}")
    return 0


def _explain(args: argparse.Namespace) -> ExplainRun:
    path = Path(args.framelog)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    if not args.speed > 0:
        raise BadInput(f"--speed {args.speed}: must be above 0")
    try:
        header, records = read_frame_log(path)
        log = read_charger_log(records, connectors=None)
    except FrameLogError as exc:
        raise BadInput(str(exc)) from None
    span = (log.start, log.end)
    window = _window(args, header, log)
    if window is not None:  # the charger's word from the whole log up to the window's end, judged in the window
        log = read_charger_log((r for r in read_frame_log(path)[1] if r.t <= window[1]), connectors=None)
        # judged up to the window's last record: after it the player hangs up (that is not the night's)
        log.start = window[0]
        if log.end < window[0]:
            raise BadInput(
                f"no record of the log falls between --from and --to ({clock(window[0], header.epoch)} to "
                f"{clock(window[1], header.epoch)}): nothing to play; widen the window"
            )
    if args.at is not None:
        try:
            at = parse_log_time(args.at, header.epoch)
        except ValueError as exc:
            raise BadInput(f"--at {exc}") from None
        if window is not None and not window[0] <= at <= window[1]:
            raise BadInput(f"--at {args.at}: outside the window explained (--from/--to)")
    keys = sorted(log.words)
    if not keys:
        raise BadInput(f"{path}: the log names no connector (no StatusNotification or transaction on one)")
    run = ExplainRun(path, header, log, window=window, span=span, reenact=args.reenact)
    run.actions = app_actions(
        read_frame_log(path)[1], start=None if window is None else window[0], end=None if window is None else window[1]
    )
    play_from: float | None = None
    prelude: list[FrameRecord | LinkRecord] = []
    if window is not None:
        play_from = window[0] - PRELUDE_WALL_SECONDS * args.speed
        prelude = window_prelude(read_frame_log(path)[1], window[0], play_from)
        run.told = sum(1 for r in prelude if isinstance(r, FrameRecord) and r.direction == "out")

    def records_fn() -> Iterable[FrameRecord | LinkRecord]:
        if window is None:
            return read_frame_log(path)[1]
        return _windowed(path, prelude, window[0])

    if args.csms_url:
        if not args.api_url:
            raise BadInput("--csms-url needs --api-url (and --api-token) to ask the CSMS its verdicts")
        adapter = _adapter(args)
        run.csms = args.csms_url
        trio.run(_play_and_sample, run, header, records_fn, adapter, args.speed, args.csms_url, play_from)
    else:
        with tempfile.TemporaryDirectory(prefix="unstuck-explain-") as tmp:
            work = Path(tmp)
            db_url = args.db or f"sqlite:///{work / 'csms.db'}"
            extra = [*scaled_serve_args(args.speed), *_split_args(args.csms_arg)]
            command = args.csms_command.split() if args.csms_command else None
            try:
                csms = start_embedded(db_url, work, timings=_NO_TIMINGS, extra=extra, command=command)
            except RuntimeError as exc:
                raise BadInput(f"the embedded CSMS did not start (check --csms-arg):\n{exc}") from None
            run.csms, run.csms_args = f"embedded csms serve ({'SQLite' if args.db is None else args.db})", extra
            try:
                from .adapters.unstuck_rest import UnstuckRestAdapter

                adapter = UnstuckRestAdapter(csms.endpoint.ocpp_url, csms.endpoint.api_url, csms.endpoint.token)
                wall_map = trio.run(
                    _play_and_sample, run, header, records_fn, adapter, args.speed, csms.endpoint.ocpp_url, play_from
                )
            finally:
                csms.stop()
            if db_url.startswith("sqlite:///"):
                run.audit = [_mark(r, wall_map) for r in read_audit(Path(db_url[len("sqlite:///") :]))]
                run.audited = True
    # The player hangs up after the log's last record: what the CSMS says of that is not the night's.
    run.samples = [s for s in run.samples if s.t < log.end]
    run.findings = find_findings(log, run.samples, run.audit)
    return run


def _window(args: argparse.Namespace, header: FrameLogHeader, log: ChargerLog) -> tuple[float, float] | None:
    """--from/--to as log seconds (the replay's parser), clipped to the log; None when neither was given."""
    if args.start is None and args.end is None:
        return None
    given: list[float | None] = []
    for flag, text in (("--from", args.start), ("--to", args.end)):
        try:
            given.append(None if text is None else replay_log_time(text, header.epoch))
        except ValueError as exc:
            raise BadInput(f"{flag} {exc}") from None
    try:
        return explained_window(given[0], given[1], log.start, log.end)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _windowed(path: Path, prelude: list[FrameRecord | LinkRecord], start: float) -> Iterable[FrameRecord | LinkRecord]:
    """The prelude, then the log's records from `start` on (streamed; the file closed when the player stops)."""
    records = read_frame_log(path)[1]
    try:
        yield from prelude
        for rec in records:
            if rec.t >= start:
                yield rec
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


class _NoTimings(Timings):
    """The scenarios' quick timings are replaced by `scaled_serve_args`: none of their flags are passed."""

    def serve_args(self) -> list[str]:
        return []


_NO_TIMINGS = _NoTimings()


def _split_args(given: Sequence[str]) -> list[str]:
    """`--csms-arg=--flag=value` and `--csms-arg --flag --csms-arg value` both work."""
    out: list[str] = []
    for a in given:
        out += a.split("=", 1) if a.startswith("--") and "=" in a else [a]
    return out


def _adapter(args: argparse.Namespace) -> CsmsAdapter:
    import os

    from .adapters.load import AdapterError, load_adapter_class

    token = args.api_token or os.environ.get("UNSTUCK_API_TOKEN", "")
    if args.adapter:
        try:
            cls = load_adapter_class(args.adapter)
        except AdapterError as exc:
            raise BadInput(str(exc)) from None
        return cls(args.csms_url, args.api_url, token)  # type: ignore[no-any-return]
    from .adapters.unstuck_rest import UnstuckRestAdapter

    return UnstuckRestAdapter(args.csms_url, args.api_url, token)


WallMap = list[tuple[float, float]]  # (unix wall time, log t), increasing


async def _play_and_sample(
    run: ExplainRun,
    header: FrameLogHeader,
    records: Callable[[], Iterable[FrameRecord | LinkRecord]],
    adapter: CsmsAdapter,
    speed: float,
    ocpp_url: str,
    play_from: float | None = None,
) -> WallMap:
    """Play the log and sample every connector's verdict until the play ends; returns the wall -> log map.

    With a window, the play starts at `play_from` (the prelude's time) and ends at the window's end; the
    verdicts are sampled from the window's start once the prelude's frames are sent."""
    from simulator.fieldlog.player import Player, PlayOptions

    end = run.window[1] if run.window is not None else None
    player = Player(header, records, PlayOptions(csms_url=ocpp_url, speed=speed, start=play_from, end=end))
    keys = sorted(run.log.words)
    wall_map: WallMap = []
    interval = min(1.0, max(0.1, SAMPLE_LOG_SECONDS / speed))
    done = trio.Event()
    result: list[Any] = []

    async def play(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            result.append(await player.run(task_status=task_status))
        finally:
            done.set()

    async def sample() -> None:
        t = player.log_time()
        wall_map.append((time.time(), t))
        try:
            verdicts = await adapter.verdicts(keys)
        except Exception as exc:  # a CSMS that cannot answer now: a gap in the timeline, said in the report
            run.play.setdefault("sampleErrors", []).append(f"{clock(t, header.epoch)}: {exc}")
            return
        run.samples.extend(VerdictSample(t, cp, c, v) for (cp, c), v in verdicts.items())

    started = time.monotonic()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(play)
            if run.reenact and run.actions:
                nursery.start_soon(_reenact, run, player, adapter, sample, done)
            while not done.is_set():
                with trio.move_on_after(interval):
                    await done.wait()
                if not done.is_set() and player.log_time() > run.log.start and _told(player, run):
                    await sample()
    finally:
        await adapter.aclose()
    run.wall = time.monotonic() - started
    if result:
        r = result[0]
        run.play = {
            **run.play,
            "sent": r.sent,
            "answered": r.answered,
            "csmsCalls": r.csms_calls,
            "csmsCallsAnsweredFromLog": r.csms_calls_answered_from_log,
            "errors": list(r.errors),
            "wallSeconds": round(r.wall_seconds, 1),
        }
    return wall_map


async def _reenact(
    run: ExplainRun, player: Player, adapter: CsmsAdapter, sample: Callable[[], Awaitable[None]], done: trio.Event
) -> None:
    """Ask the CSMS under test, at each logged app action's log time, to do what the log's CSMS was asked, and
    sample its verdict as soon as it answered. Every answer is kept in words (`run.reenacted`). An action not
    due when the play ends is not asked; one being asked then is let finish (its call is bounded)."""
    sessions: dict[tuple[str, int], str] = {}
    for action in run.actions:
        if not await _due(player, action.t, done):
            return
        ask = what_to_ask(action, sessions)
        asked_at = player.log_time()
        if ask.skip is not None:
            run.reenacted.append(Reenacted(action, asked_at, None, SKIPPED, ask.skip))
            continue
        outcome, said, session = await _ask(adapter, ask)  # the verdict before it: the last regular sample
        answered_at = player.log_time()
        run.reenacted.append(Reenacted(action, asked_at, answered_at, outcome, said, session))
        if outcome == ACCEPTED and session is not None and ask.connector is not None:
            sessions[(ask.cp, ask.connector)] = session
        await sample()


async def _due(player: Player, t: float, done: trio.Event) -> bool:
    """Sleep until log time `t` is due; False when the play ends first."""

    async def until_done() -> None:
        await done.wait()
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_done)
        await player.sleep_until(t)
        nursery.cancel_scope.cancel()
        return True
    return False


async def _ask(adapter: CsmsAdapter, ask: Ask) -> tuple[str, str, str | None]:
    """One adapter call: (outcome, the answer in words, a started session's id). Never raises but Cancelled."""
    what = ask.method
    try:
        with trio.fail_after(REENACT_WALL_TIMEOUT):
            if ask.method == "start":
                assert ask.connector is not None and ask.id_tag is not None  # what_to_ask skips a start without
                r = await adapter.start(ask.cp, ask.connector, ask.id_tag, REENACT_TARIFF)
                return (
                    ACCEPTED if r.accepted else REFUSED,
                    _start_words(r),
                    r.session_id if r.accepted else None,
                )
            if ask.method == "stop":
                assert ask.session_id is not None
                ok = await adapter.stop(ask.session_id)
                return (ACCEPTED if ok else REFUSED, f"the CSMS {'accepted' if ok else 'refused'} the stop", None)
            assert ask.connector is not None
            u = await adapter.unlock(ask.cp, ask.connector)
            status = f"HTTP {u.status} " if u.status is not None else ""
            words = f"{status}{'Unlocked' if u.unlocked else 'not unlocked'}{': ' + u.message if u.message else ''}"
            return (ACCEPTED if u.unlocked else REFUSED, words, None)
    except NotSupportedError as exc:
        return NOT_SUPPORTED, f"this CSMS's adapter cannot {what} ({exc or 'NotSupportedError'})", None
    except trio.TooSlowError:
        return FAILED, f"the CSMS did not answer the {what} within {REENACT_WALL_TIMEOUT:g} s of wall", None
    except Exception as exc:  # a CSMS that cannot answer (a timeout, a refused connection): said, the play goes on
        return FAILED, f"the {what} failed: {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}", None


def _start_words(r: Any) -> str:
    """A StartResult in words: the HTTP status, the outcome code and the CSMS's message."""
    bits = [f"HTTP {r.status}" if r.status is not None else "", "accepted" if r.accepted else (r.code or "refused")]
    text = " ".join(b for b in bits if b)
    if r.accepted:
        return text + (f", session {r.session_id}" if r.session_id else "")
    return text + (f": {r.message}" if r.message else "")


def _told(player: Any, run: ExplainRun) -> bool:
    """The prelude is sent (a window's first verdicts judge what the CSMS was told), or it is late: go on."""
    return player.sent >= run.told or player.log_time() > run.log.start + 300.0


def read_audit(db_file: Path) -> list[tuple[datetime, str, str | None, int | None, str | None, dict[str, Any] | None]]:
    """The embedded CSMS's audit rows that can heal or ask (maintenance.*, session.*), in time order."""
    if not db_file.exists():
        return []
    with sqlite3.connect(db_file) as db:
        rows = db.execute(
            "SELECT at, action, charge_point_id, connector_id, subject, details FROM audit_events "
            "WHERE action LIKE 'maintenance.%' OR action LIKE 'session.%' OR action LIKE 'connector.%' ORDER BY id"
        ).fetchall()
    out = []
    for at, action, cp, connector, subject, details in rows:
        when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        out.append((when, action, cp, connector, subject, json.loads(details) if isinstance(details, str) else details))
    return out


def log_time_of(wall: float, wall_map: WallMap) -> float:
    """A wall-clock time (unix seconds) as log time, interpolated on the samples' (wall, log) pairs."""
    if not wall_map:
        return 0.0
    if wall <= wall_map[0][0]:
        return wall_map[0][1]
    for (w0, t0), (w1, t1) in zip(wall_map, wall_map[1:], strict=False):
        if w0 <= wall <= w1:
            return t0 + (t1 - t0) * ((wall - w0) / (w1 - w0) if w1 > w0 else 0.0)
    return wall_map[-1][1]


def _mark(row: tuple[datetime, str, str | None, int | None, str | None, Any], wall_map: WallMap) -> AuditMark:
    at, action, cp, connector, subject, details = row
    return AuditMark(log_time_of(at.timestamp(), wall_map), action, cp, connector, subject, details)


def _rerun(args: argparse.Namespace) -> str:
    import shlex

    parts = ["unstuck-scenarios", "explain", str(args.framelog), "--speed", f"{args.speed:g}"]
    for flag, value in (
        ("--from", args.start),
        ("--to", args.end),
        ("--csms-url", args.csms_url),
        ("--api-url", args.api_url),
        ("--adapter", args.adapter),
        ("--db", args.db),
    ):
        if value:
            parts += [flag, value]
    parts += [f"--csms-arg={a}" for a in args.csms_arg]
    if not args.reenact:
        parts.append("--no-reenact")
    return shlex.join(parts)


# ------------------------------------------------------------------ words
def summary_text(run: ExplainRun, at: float | None = None) -> str:
    """The plain-text answer: per connector what went wrong and what healed it, or one moment with --at."""
    epoch = run.header.epoch
    lines = [
        f"{run.path.name}: {len(run.header.charge_points)} charger(s), {len(run.log.words)} connector(s), "
        f"{window_text(run)} (log time, UTC), played against {run.csms}",
    ]
    if run.window is not None:
        lines.append(
            f"  what the charger said before {clock(run.window[0], epoch)} is read from the log; the CSMS was told "
            f"what of it still held ({run.told} frame(s): last boot, open transactions, last statuses) at once "
            "just before the window, not at its log times"
        )
    if at is not None:
        lines.append(f"\nAt {clock(at, epoch)} (t = {at:.0f} s):")
        for m in moment_at(run.log, run.samples, at, run.log.words):
            verdict = (
                "no verdict sampled yet"
                if m.verdict is None
                else (f"the CSMS said {m.verdict.verdict} ({', '.join(m.verdict.reasons) or 'no reasons'})")
            )
            link = "" if m.connected else " [charger offline per the log]"
            lines.append(f"  {m.cp} connector {m.connector}: {verdict}; the charger said {m.word.text()}{link}")
        return "\n".join(lines)
    by_key: dict[tuple[str, int], list[Finding]] = {}
    for f in run.findings:
        by_key.setdefault((f.cp, f.connector), []).append(f)
    for key in sorted(run.log.words):
        found = by_key.get(key, [])
        if not found:
            whole = "throughout" if run.window is None else "throughout the window"
            lines.append(f"\n{key[0]} connector {key[1]}: the CSMS agreed with the charger {whole}.")
            continue
        for f in found:
            lines.append("\n" + describe_finding(f, epoch, end=_end_words(run)))
    for text in reenactment_lines(run):
        lines.append(f"  app action: {text}")
    for e in _csms_calls(run):
        lines.append(f"  note: at {clock(e.t, epoch)} {e.text} (the replay sends none of the log's CSMS calls)")
    if not run.audited:
        lines.append("\n(no audit trail read: a CSMS not started here; what healed is read from its reasons)")
    errors = run.play.get("errors") or []
    if errors:
        lines.append(f"\nthe replay reported {len(errors)} problem(s), first: {errors[0]}")
    return "\n".join(lines)


_CHARGER_EVENTS = frozenset({"start", "stop", "boot", "connect", "disconnect", "available_open"})


def _csms_calls(run: ExplainRun) -> list[Any]:
    """The log's own CSMS calls that are not an app's (Reset, TriggerMessage, ...) and the charger's answers, in the
    window: the app's are `reenactment_lines`."""
    return [
        e
        for e in run.log.events
        if e.name not in _CHARGER_EVENTS and e.name not in APP_CALLS and run.log.start <= e.t <= run.log.end
    ]


def reenactment_lines(run: ExplainRun) -> list[str]:
    """Each app or operator action of the log in words: re-enacted (what the CSMS answered, what it then held),
    or why not (--no-reenact, the play ended first)."""
    out = []
    done = {id(r.action): r for r in run.reenacted}
    for a in run.actions:
        r = done.get(id(a))
        if r is None:
            why = "--no-reenact" if not run.reenact else "the play ended before its time"
            r = Reenacted(a, a.t, None, SKIPPED, why)
        out.append(reenactment_words(r, run.log, run.samples, run.findings, run.header.epoch, end=_end_words(run)))
    return out


def window_text(run: ExplainRun) -> str:
    """The span explained, in the log's clock: the whole log, or the window of it."""
    epoch = run.header.epoch
    if run.window is None:
        return f"{clock(run.log.start, epoch)} to {clock(run.log.end, epoch)}"
    span = f"{clock(run.window[0], epoch)} to {clock(run.window[1], epoch)}"
    return f"explained {span} (--from/--to) of a log from {clock(run.span[0], epoch)} to {clock(run.span[1], epoch)}"


def _end_words(run: ExplainRun) -> str:
    return "the window's end" if run.window is not None else "the log's end"


# ------------------------------------------------------------------ the report
def report_record(run: ExplainRun, rerun: str = "") -> dict[str, Any]:
    """One explained log as a scenario record of summary.json (scenarios/report/summary.py), drawn by html.py."""
    epoch = run.header.epoch
    start = run.log.start if run.window is not None else 0.0  # a window's timeline starts at the window
    end = max(run.log.end, max((s.t for s in run.samples), default=0.0))
    segs = _verdict_segments(run.samples, end)
    rows = []
    stuck = {(f.cp, f.connector) for f in run.findings}
    for key in sorted(run.log.words):
        words = run.log.words[key]
        truth = []
        for k, w in enumerate(words):
            a, b = max(w.t, start), min(words[k + 1].t if k + 1 < len(words) else end, end)
            if b > a:
                truth.append([round(a - start, 1), round(b - start, 1), band_state(w)])
        if words and words[0].t > run.log.start:
            truth.insert(0, [round(run.log.start - start, 1), round(min(words[0].t, end) - start, 1), "silent"])
        events = [
            e
            for e in run.log.events
            if e.cp == key[0] and e.connector in (None, key[1]) and run.log.start <= e.t <= end
        ]
        rows.append(
            {
                "cp": key[0],
                "connector": key[1],
                "truth": truth,
                "verdict": [[round(a - start, 1), round(b - start, 1), v] for a, b, v in segs.get(key, [])],
                "offline": [
                    [round(max(a, start) - start, 1), round(b - start, 1)]
                    for a, b in _offline(run.log.links.get(key[0], []), end)
                    if b > start
                ],
                "faults": [[round(e.t - start, 1), e.name] for e in events if e.name not in ("connect",)]
                + [
                    [round(r.asked_at - start, 1), f"{r.action.action} re-enacted: {r.outcome}"]
                    for r in run.reenacted
                    if r.action.cp == key[0] and r.action.connector in (None, key[1]) and r.outcome != SKIPPED
                ],
                "violations": sorted({f.kind for f in run.findings if (f.cp, f.connector) == key}),
            }
        )
    violations = [_violation(f, run, epoch, start) for f in run.findings]
    whole = "throughout the log" if run.window is None else "throughout the window"
    notes = [describe_finding(f, epoch, end=_end_words(run)) for f in run.findings] or [
        f"The CSMS agreed with the charger on every connector {whole}."
    ]
    if run.window is not None:
        notes.insert(
            0,
            f"Explained {window_text(run)}. Before the window the CSMS was told, at once, what the charger had "
            f"said that still held ({run.told} frame(s): its last boot, open transactions, last statuses).",
        )
    notes += [f"App action: {text}" for text in reenactment_lines(run)]
    notes += [
        f"{clock(e.t, epoch)} {e.cp}: {e.text} (not replayed: the player is the charger)" for e in _csms_calls(run)
    ]
    return {
        "name": run.path.name,
        "purpose": "a field log replayed: what the charger said against what the CSMS said, and why"
        + ("" if run.window is None else f" ({window_text(run)}, log time, UTC)"),
        "outcome": "stuck" if stuck else "clear",
        "duration": round(run.wall, 1),
        "notes": notes,
        "violations": violations,
        "checked": {"connectors": len(rows), "verdicts sampled": len(run.samples)},
        "fleet": {"chargePoints": len(run.header.charge_points), "connectors": len(rows)},
        "trace": str(run.path),
        "rerun": rerun,
        "explained": {"from": round(run.log.start, 1), "to": round(run.log.end, 1), "window": run.window is not None},
        "reenacted": [
            {
                "at": clock(r.action.t, epoch),
                "cp": r.action.cp,
                "connector": r.action.connector,
                "action": r.action.action,
                "idTag": r.action.id_tag,
                "loggedAnswer": r.action.answer,
                "askedAt": clock(r.asked_at, epoch),
                "outcome": r.outcome,
                "said": r.said,
                "sessionId": r.session_id,
            }
            for r in run.reenacted
        ],
        "timeline": {
            "end": round(end - start, 1),
            "start": round(run.log.start - start, 1),
            "epoch": _later(epoch, start),
            "recoveryFrom": None,
            "window": None,
            "truthLabel": "charger",
            "connectors": rows,
            "falselyBusy": [],
        },
    }


def _later(epoch: str, seconds: float) -> str:
    """The epoch moved on by `seconds`: a window's timeline reads its own clock from its start."""
    if not seconds:
        return epoch
    from datetime import timedelta

    when = datetime.fromisoformat(epoch.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _violation(f: Finding, run: ExplainRun, epoch: str, start: float = 0.0) -> dict[str, Any]:
    events = [e for e in run.log.events if e.cp == f.cp and e.connector in (None, f.connector) and e.t <= f.until]
    return {
        "kind": f.kind,
        "cp": f.cp,
        "connector": f.connector,
        "t": round(f.since - start, 1),  # on the timeline (a window's from its start)
        "lastT": round(f.until - start, 1),
        "count": 2,
        "when": f"{clock(f.since, epoch)} – {clock(f.until, epoch)}",
        "message": describe_finding(f, epoch, end=_end_words(run)),
        "verdict": {"verdict": f.verdict.verdict, "reasons": list(f.verdict.reasons), "signals": f.verdict.signals},
        "truthLabel": "What the charger said",
        "truth": {
            "state": f.word.state.replace("_", " "),
            "last status": f.word.status or "none",
            "open transaction": f.word.transaction or "none",
            "since": clock(f.word.t, epoch),
            "by": f.word.said,
            "healed": f"{clock(f.until, epoch)}: {f.healed_by}" if f.healed else f"no: {f.healed_by}",
        },
        "faultsLabel": "The log around it",
        "faults": [
            {
                "t": round(e.t, 1),
                "name": e.name,
                "connector": e.connector,
                "at": clock(e.t, epoch),
                "params": e.text,
            }
            for e in events[-12:]
        ],
    }


def _verdict_segments(samples: Sequence[VerdictSample], end: float) -> dict[tuple[str, int], list[list[Any]]]:
    out: dict[tuple[str, int], list[list[Any]]] = {}
    for s in sorted(samples, key=lambda s: s.t):
        segs = out.setdefault((s.cp, s.connector), [])
        if segs and segs[-1][2] == s.verdict.verdict:
            continue
        if segs:
            segs[-1][1] = round(s.t, 1)
        segs.append([round(s.t, 1), None, s.verdict.verdict])
    for segs in out.values():
        segs[-1][1] = round(max(end, segs[-1][0]), 1)
    return out


def _offline(links: list[tuple[float, bool]], end: float) -> list[list[float]]:
    out, down = [], None
    for t, up in links:
        if not up and down is None:
            down = t
        elif up and down is not None:
            out.append([round(down, 1), round(t, 1)])
            down = None
    if down is not None:
        out.append([round(down, 1), round(end, 1)])
    return out


def write_report(run: ExplainRun, out: Path, *, rerun: str = "") -> None:
    """summary.json-shaped data beside the HTML, and the HTML the scenarios' report draws."""
    from .report.html import write_html

    record = report_record(run, rerun)
    stuck = record["outcome"] == "stuck"
    stuck_keys = {(f.cp, f.connector) for f in run.findings}
    data = {
        "version": 1,
        "title": "unstuck explain" + ("" if run.window is None else f" · {window_text(run)}"),
        "overall": "STUCK" if stuck else "CLEAR",
        "csms": run.csms,
        "csmsArgs": run.csms_args,
        "startedAt": time.time(),
        "duration": round(run.wall, 1),
        "countsText": f"{len(stuck_keys)} of {len(run.log.words)} connector(s) stuck"
        + (f", {len(run.findings)} finding(s)" if run.findings else ""),
        "scenarios": [record],
        "passed": 0 if stuck else 1,
        "failed": 1 if stuck else 0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".json")
    src.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    write_html(out, src)
