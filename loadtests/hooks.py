"""The locust event hooks: options, the run's clock, and the oracle at the end of the test.

At `test_start` the master (or the local runner) picks the run's tag and epoch;
locust hands both to the workers with the other options, and each process starts
its fleet (one trace file). At `test_stop` the master (or the local runner):

1. ends the traffic: every process parks its fleet (cars leave; the charge points
   stay connected), through custom messages in a distributed run;
2. waits the recovery window: the CSMS heals by itself, or does not;
3. asks the CSMS for every connector's verdict (three rounds, a second apart) and
   for the transactions it stored, through the REST API only;
4. has every process flush its trace, reads them all, and lets the scenarios'
   oracle judge (loadtests/judgement.py);
5. writes `oracle_summary.json` and `.txt` into the report folder, prints the
   violations (kind, connector), sets `environment.process_exit_code = 1` if there
   are any, and releases the charge points (orderly WebSocket closes).

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

from scenarios.oracle import Sample

from . import fleet as fleet_mod
from .judgement import SyncRestAdapter, judge_load, read_records, write_summary
from .options import LoadOptions, add_arguments

__all__ = ["install"]

log = logging.getLogger("loadtests")
SAMPLE_ROUNDS = 3
SAMPLE_EVERY = 1.0  # s between the final verdict rounds
WORKER_WAIT = 90.0  # s the master waits for its workers to park or flush
PRINT_LIMIT = 50


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
    except Exception:
        log.exception("the oracle could not judge this run")
        environment.process_exit_code = 2
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

    def clock() -> float:  # the run's clock, as the traces count it
        return time.time() - opts.epoch

    log.info("oracle: the traffic stops; every car leaves")
    parked = _park_everywhere(environment)
    if not parked:
        log.warning("oracle: no charge points ran in this test; nothing to judge")
        return
    recovery_from = max(float(p["parkedAt"]) for p in parked)
    keys = sorted((cp, c) for p in parked for cp, n in p["chargePoints"].items() for c in range(1, int(n) + 1))
    wait = recovery_from + opts.recovery_window - clock()
    log.info(
        "oracle: %d charge points parked; recovery window %.0f s (waiting %.0f s)",
        sum(len(p["chargePoints"]) for p in parked),
        opts.recovery_window,
        max(0.0, wait),
    )
    gevent.sleep(max(0.0, wait) + 0.2)
    adapter = SyncRestAdapter(opts.ocpp_url, opts.api_url, opts.api_token, cp_prefix=opts.run_prefix)
    final = []
    try:
        for k in range(SAMPLE_ROUNDS):
            if k:
                gevent.sleep(SAMPLE_EVERY)
            t = clock()
            verdicts = adapter.verdicts(keys)
            until = clock()
            final += [Sample(t, cp, c, v, until) for (cp, c), v in verdicts.items()]
        end = clock()
        stored = adapter.transactions(opts.run_prefix)
    finally:
        adapter.close()
    _flush_everywhere(environment, len(parked))
    traces = [p["trace"] for p in parked]
    records = read_records(traces)
    judgement = judge_load(
        records,
        final,
        stored,
        recovery_window=opts.recovery_window,
        grace=opts.grace,
        recovery_from=recovery_from,
        end=end,
    )
    run = {
        **opts.to_mapping(),
        "recoveryFrom": round(recovery_from, 3),
        "sampledUntil": round(end, 3),
        "chargePoints": sum(len(p["chargePoints"]) for p in parked),
        "connectorsJudged": len(keys),
        "traces": traces,
        "storedTransactions": len(stored),
    }
    json_path, text_path = write_summary(opts.report_dir, judgement, run=run)
    if judgement.passed:
        log.info(
            "oracle: PASSED (%s); summary %s", ", ".join(f"{k}={v}" for k, v in judgement.checked.items()), json_path
        )
        return
    environment.process_exit_code = 1
    lines = [f"oracle: FAILED with {len(judgement.violations)} violations (summary {text_path}):"]
    lines += [f"  {v.kind:<22} {v.cp}/{v.connector}" for v in judgement.violations[:PRINT_LIMIT]]
    if len(judgement.violations) > PRINT_LIMIT:
        lines.append(f"  ... and {len(judgement.violations) - PRINT_LIMIT} more in {text_path}")
    log.error("\n".join(lines))
