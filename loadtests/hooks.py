"""The locust event hooks: options, the run's clock, and the oracle at the end of the test.

At `test_start` the master (or the local runner) picks the run's tag and epoch;
locust hands both to the workers with the other options, and each process starts
its fleet (one trace file). At `test_stop` the master (or the local runner):

1. ends the traffic: every process parks its fleet (cars leave; the charge points
   stay connected), through custom messages in a distributed run;
2. waits out the recovery window of the CSMS profile (`--csms-profile`, or
   `--recovery-window`): the CSMS heals by itself, or does not. Every `--oracle-poll`
   seconds it looks (three rounds of every connector's verdict, a second apart, and
   the stored transactions, through the REST API only; every process flushes its
   trace) and the scenarios' oracle judges that look with the window elapsed so far
   (loadtests/recovery.py); the first look that passes is the judgement, else the
   look after the whole window is;
3. writes `oracle_summary.json` and `.txt` into the report folder; if the oracle
   failed, reports each violation to locust as a failed request (type "oracle",
   named by its kind: locust's failures, its CSV and HTML reports), prints them
   (kind, connector) and sets `environment.process_exit_code = 1`; findings the
   profile does not claim are counted as not claimed, neither passed nor failed;
4. releases the charge points (orderly WebSocket closes).

The web UI shows "judging (recovery window N s)" meanwhile (loadtests/webui.py).
The traces must be readable by the master: one machine, or a shared report folder.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from scenarios.oracle import Judgement, Sample
from scenarios.profile import load_profile

from . import fleet as fleet_mod
from . import webui
from .judgement import SyncRestAdapter, TraceTail, failure_rows, judge_load, verdict_line, write_summary
from .options import LoadOptions, add_arguments
from .recovery import Look, Progress, wait_and_judge

__all__ = ["install"]

log = logging.getLogger("loadtests")
SAMPLE_ROUNDS = 3
SAMPLE_EVERY = 1.0  # s between the final verdict rounds
WORKER_WAIT = 90.0  # s the master waits for its workers to park or flush
PRINT_LIMIT = 50
PROGRESS_EVERY = 30.0  # s between the log's countdown lines while the findings stay the same


def install(events: Any) -> None:
    """Register the hooks on locust's `events` (the locustfile calls this once)."""
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(_on_quitting)


def _options(environment: Environment) -> LoadOptions:
    return LoadOptions.from_parsed(environment.parsed_options)


def _on_init(environment: Environment, **_kw: Any) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the oracle's REST questions, one INFO line each
    if environment.parsed_options is None:
        return
    opts = _options(environment)  # a bad --fault fails here, at start-up, with the simulator's message
    if not environment.host:
        environment.host = opts.api_url  # ApiUser's base URL
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        load_profile(opts.csms_profile)  # and a bad --csms-profile here, with the file and the field
        webui.install(environment)
    if isinstance(runner, WorkerRunner):
        runner.register_message("unstuck_park", _worker_park, concurrent=True)
        runner.register_message("unstuck_flush", _worker_flush)
        runner.register_message("unstuck_release", _worker_release)
    elif isinstance(runner, MasterRunner):
        environment.unstuck_replies = _Replies()  # type: ignore[attr-defined]
        runner.register_message("unstuck_parked", environment.unstuck_replies.on_parked)  # type: ignore[attr-defined]
        runner.register_message("unstuck_flushed", environment.unstuck_replies.on_flushed)  # type: ignore[attr-defined]


def _on_test_start(environment: Environment, **_kw: Any) -> None:
    if environment.parsed_options is None:
        return
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        environment.parsed_options.unstuck_run = secrets.token_hex(2)
        environment.parsed_options.unstuck_epoch = time.time()
        webui.status(environment).reset()
    if isinstance(runner, MasterRunner):
        environment.unstuck_replies.clear()  # type: ignore[attr-defined]
        environment.unstuck_judged = False  # type: ignore[attr-defined]
        return
    environment.unstuck_judged = False  # type: ignore[attr-defined]
    proc = f"w{runner.worker_index}" if isinstance(runner, WorkerRunner) else "L"
    opts = _options(environment)
    fleet_mod.start(opts, proc, _request_hook(environment))
    log.info(
        "unstuck run %s: charge points %s*, trace %s",
        opts.run,
        opts.run_prefix + proc,
        fleet_mod.trace_path(opts, proc),
    )


def _request_hook(environment: Environment) -> Callable[[str, str, float, int, BaseException | None], None]:
    fire = environment.events.request.fire

    def hook(request_type: str, name: str, ms: float, length: int, exc: BaseException | None) -> None:
        fire(request_type=request_type, name=name, response_time=ms, response_length=length, exception=exc, context={})

    return hook


def _on_test_stop(environment: Environment, **_kw: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        fleet = fleet_mod.current()
        if fleet is not None:
            fleet.park()  # the master judges (and then releases) the charge points
        return
    if getattr(environment, "unstuck_judged", True):
        return
    environment.unstuck_judged = True  # type: ignore[attr-defined]
    try:
        _conclude(environment)
    except Exception as exc:
        log.exception("the oracle could not judge this run")
        environment.process_exit_code = 2
        shown = webui.status(environment)
        shown.phase, shown.line = webui.ERROR, f"the oracle could not judge this run: {exc!r} (see the log)"
        _report_to_locust(environment, [("error", 1, f"the oracle could not judge this run: {exc!r}")])
    finally:
        if isinstance(runner, MasterRunner):
            runner.send_message("unstuck_release")
        else:
            fleet_mod.close_current()


def _on_quitting(environment: Environment, **_kw: Any) -> None:
    fleet_mod.close_current()


# ------------------------------------------------------------------------------ distributed
class _Replies:
    """The master's view of its workers' answers to park and flush."""

    def __init__(self) -> None:
        self.parked: dict[str, dict[str, Any]] = {}
        self.flushed: set[str] = set()
        self.changed = Event()

    def clear(self) -> None:
        self.parked.clear()
        self.flushed.clear()

    def on_parked(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        self.parked[msg.node_id] = msg.data or {}
        self.changed.set()

    def on_flushed(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        self.flushed.add(msg.node_id)
        self.changed.set()

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            self.changed.wait(min(left, 1.0))
        return True


def _worker_park(environment: Environment, msg: Any, **_kw: Any) -> None:
    fleet = fleet_mod.current()
    data = fleet.park() if fleet is not None else {"trace": None, "parkedAt": None, "chargePoints": {}}
    environment.runner.send_message("unstuck_parked", data)


def _worker_flush(environment: Environment, msg: Any, **_kw: Any) -> None:
    fleet = fleet_mod.current()
    if fleet is not None:
        fleet.trace.flush()
    environment.runner.send_message("unstuck_flushed", {})


def _worker_release(environment: Environment, msg: Any, **_kw: Any) -> None:
    gevent.spawn(fleet_mod.close_current)


def _park_everywhere(environment: Environment) -> list[dict[str, Any]]:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        fleet = fleet_mod.current()
        return [fleet.park()] if fleet is not None else []
    replies: _Replies = environment.unstuck_replies  # type: ignore[attr-defined]
    workers = {c.id for c in runner.clients.all}
    runner.send_message("unstuck_park")
    if not replies.wait(lambda: workers <= set(replies.parked), WORKER_WAIT):
        log.warning("workers that did not park in %.0f s: %s", WORKER_WAIT, sorted(workers - set(replies.parked)))
    return [d for d in replies.parked.values() if d.get("trace")]


def _flush_everywhere(environment: Environment, expected: int) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        fleet = fleet_mod.current()
        if fleet is not None:
            fleet.trace.flush()
        return
    replies: _Replies = environment.unstuck_replies  # type: ignore[attr-defined]
    replies.flushed.clear()
    runner.send_message("unstuck_flush")
    if not replies.wait(lambda: len(replies.flushed) >= expected, WORKER_WAIT):
        log.warning(
            "only %d of %d workers flushed their traces; judging what is on disk", len(replies.flushed), expected
        )


# ------------------------------------------------------------------------------ the judgement
def _conclude(environment: Environment) -> None:
    opts = _options(environment)
    profile = load_profile(opts.csms_profile)
    window = opts.recovery_window if opts.recovery_window is not None else profile.recovery_window
    shown = webui.status(environment)

    def clock() -> float:  # the run's clock, as the traces count it
        return time.time() - opts.epoch

    shown.judging(window, "the traffic stops; every car leaves")
    log.info("oracle: the traffic stops; every car leaves")
    parked = _park_everywhere(environment)
    if not parked:
        log.warning("oracle: no charge points ran in this test; nothing to judge")
        shown.phase, shown.line = webui.IDLE, "no charge points ran in this test; nothing to judge"
        return
    recovery_from = max(float(p["parkedAt"]) for p in parked)
    keys = sorted((cp, c) for p in parked for cp, n in p["chargePoints"].items() for c in range(1, int(n) + 1))
    traces = [p["trace"] for p in parked]
    tail = TraceTail(traces)
    poll = opts.oracle_poll
    shown.judging(window, f"{sum(len(p['chargePoints']) for p in parked)} charge points parked")
    log.info(
        "oracle: judging (recovery window %.0f s, %s) against CSMS profile %r (%s); %d charge points parked; %s",
        window,
        "--recovery-window" if opts.recovery_window is not None else "the profile's",
        profile.name,
        profile.source,
        sum(len(p["chargePoints"]) for p in parked),
        f"a look every {poll:g} s, judged as soon as the CSMS has healed"
        if poll > 0
        else f"judged at the end of the window, in {max(0.0, recovery_from + window - clock()):.0f} s",
    )
    adapter = SyncRestAdapter(opts.ocpp_url, opts.api_url, opts.api_token, cp_prefix=opts.run_prefix)

    def look() -> Look:
        samples = []
        for k in range(SAMPLE_ROUNDS):
            if k:
                gevent.sleep(SAMPLE_EVERY)
            t = clock()
            verdicts = adapter.verdicts(keys)
            until = clock()
            samples += [Sample(t, cp, c, v, until) for (cp, c), v in verdicts.items()]
        end = clock()
        stored = adapter.transactions(opts.run_prefix)
        _flush_everywhere(environment, len(parked))
        return Look(samples, stored, tuple(tail.read()), end)

    def judge(seen: Look, recovery_window: float) -> Judgement:
        return judge_load(
            seen.records,
            seen.samples,
            seen.stored,
            recovery_window=recovery_window,
            grace=opts.grace,
            recovery_from=recovery_from,
            end=seen.end,
            claims=profile.claims,
        )

    progress = _Progress(shown, recovery_from)
    try:
        done = wait_and_judge(
            look=look,
            judge=judge,
            clock=clock,
            sleep=gevent.sleep,
            recovery_from=recovery_from,
            window=window,
            poll=poll,
            progress=progress,
        )
    finally:
        adapter.close()
    judgement = done.judgement
    run = {
        **opts.to_mapping(),
        "profileName": profile.name,
        "profile": profile.to_json(),
        "recoveryWindow": window,
        "judgedWindow": round(done.judged_window, 3),
        "healedAfter": None if done.healed_after is None else round(done.healed_after, 3),
        "looks": done.looks,
        "recoveryFrom": round(recovery_from, 3),
        "sampledUntil": round(done.look.end, 3),
        "chargePoints": sum(len(p["chargePoints"]) for p in parked),
        "connectorsJudged": len(keys),
        "traces": traces,
        "storedTransactions": len(done.look.stored),
    }
    json_path, text_path = write_summary(opts.report_dir, judgement, run=run)
    line = verdict_line(judgement, run=run)
    shown.phase, shown.line = (webui.PASSED if judgement.passed else webui.FAILED), line
    if judgement.passed:
        log.info(
            "%s; checked %s; summary %s", line, ", ".join(f"{k}={v}" for k, v in judgement.checked.items()), json_path
        )
        return
    environment.process_exit_code = 1
    _report_to_locust(environment, failure_rows(judgement, where=str(text_path)))
    lines = [f"{line} (summary {text_path}):"]
    lines += [f"  {v.kind:<22} {v.cp}/{v.connector}" for v in judgement.violations[:PRINT_LIMIT]]
    if len(judgement.violations) > PRINT_LIMIT:
        lines.append(f"  ... and {len(judgement.violations) - PRINT_LIMIT} more in {text_path}")
    log.error("\n".join(lines))


class _Progress:
    """A line in the log (and the web UI) after each look that did not pass: when the findings change,
    and at least every PROGRESS_EVERY s, so a long window shows a countdown, not a flood."""

    def __init__(self, shown: webui.OracleStatus, recovery_from: float) -> None:
        self.shown = shown
        self.recovery_from = recovery_from
        self.last: tuple[float, str] = (-1e9, "")

    def __call__(self, p: Progress) -> None:
        found = ", ".join(f"{k}={n}" for k, n in sorted(p.findings.items()))
        text = (
            f"{p.elapsed:.0f} s of {p.window:.0f} s, {max(0.0, p.window - p.elapsed):.0f} s left; "
            f"not healed yet ({found}); next look at +{p.next_at - self.recovery_from:.0f} s"
        )
        self.shown.line = f"not healed yet ({found})"
        at, before = self.last
        if found != before or p.elapsed - at >= PROGRESS_EVERY:
            log.info("oracle: judging (recovery window %.0f s): %s", p.window, text)
            self.last = (p.elapsed, found)


def _report_to_locust(environment: Environment, rows: list[tuple[str, int, str]]) -> None:
    """Each (kind, count, message) as `count` failed requests of type "oracle" named by the kind: locust's
    failures table, `--csv`'s `*_failures.csv`, the HTML report and the failure ratio all count them."""
    fire = environment.events.request.fire
    for kind, count, message in rows:
        failure = OracleViolationError(message)
        for _ in range(count):
            fire(
                request_type="oracle",
                name=kind,
                response_time=0,
                response_length=0,
                exception=failure,
                context={},
            )
    if getattr(environment.parsed_options, "csv_prefix", None):
        # locust's CSV writer rewrites `*_failures.csv` every CSV_STATS_INTERVAL_SEC and only closes the
        # file at exit: give it one turn, or the oracle's rows miss the file.
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.5)


class OracleViolationError(Exception):
    """A violation the oracle found, as a locust failure; shown by its message alone."""

    def __repr__(self) -> str:
        return str(self)
