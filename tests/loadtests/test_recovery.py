"""The oracle's wait after the load, without locust: the profile, the early end, what locust is told.

Time is a parameter: a fake clock runs a sixty-second (or fifteen-minute) recovery window at once.
"""

from __future__ import annotations

import argparse
import tomllib

import pytest

from scenarios.adapters.base import BUSY, FREE, Verdict
from scenarios.oracle import Sample
from scenarios.profile import CLAIMS, load_profile, profile_from_mapping
from simulator.errors import ConfigError
from tests.loadtests import needs_locust

pytestmark = needs_locust

from loadtests.judgement import (  # noqa: E402 - after the skip
    TraceTail,
    failure_rows,
    judge_load,
    summary,
    summary_text,
    verdict_line,
)
from loadtests.options import DEFAULT_CSMS_PROFILE, LoadOptions  # noqa: E402
from loadtests.recovery import Look, Recovery, elapsed_window, next_step, wait_and_judge  # noqa: E402
from loadtests.run import LOAD_TIMINGS, RECOVERY_MARGIN, profile_for, profile_toml  # noqa: E402

RECOVERY_FROM = 10.0  # the traffic stopped (every car left) at t=10

# One charge point online from t=0.1; its connector never had a car: idle all along.
IDLE_CHARGER = [
    {"t": 0.0, "cp": None, "kind": "header", "version": 1},
    {"t": 0.0, "cp": "CP1", "kind": "identity", "connectors": 1},
    {"t": 0.1, "cp": "CP1", "kind": "link", "event": "connected"},
]


class FakeClock:
    def __init__(self, now: float = RECOVERY_FROM) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _csms_heals_at(heals_at: float | None, clock: FakeClock):
    """A look at a CSMS that says busy on the idle connector until `heals_at` (None: for ever)."""

    def look() -> Look:
        t = clock()
        verdict = FREE if heals_at is not None and t >= heals_at else BUSY
        return Look([Sample(t, "CP1", 1, Verdict(verdict), t)], [], IDLE_CHARGER, t)

    return look


def _judge(seen: Look, window: float):
    return judge_load(
        seen.records,
        seen.samples,
        seen.stored,
        recovery_window=window,
        grace=1.5,
        recovery_from=RECOVERY_FROM,
        end=seen.end,
    )


def _wait(heals_at: float | None, *, window: float, poll: float) -> tuple[Recovery, list, FakeClock]:
    clock = FakeClock()
    progress: list = []
    done = wait_and_judge(
        look=_csms_heals_at(heals_at, clock),
        judge=_judge,
        clock=clock,
        sleep=clock.sleep,
        recovery_from=RECOVERY_FROM,
        window=window,
        poll=poll,
        progress=progress.append,
    )
    return done, progress, clock


def test_an_early_look_is_held_to_the_window_elapsed_so_far_not_the_profiles():
    """Busy 5 s after the traffic stopped: within the profile's 60 s window that is allowed, but the early
    end asks more (healed already), so this look does not end the wait."""
    look = Look([Sample(15.0, "CP1", 1, Verdict(BUSY), 15.0)], [], IDLE_CHARGER, 15.0)
    assert _judge(look, 60.0).passed  # the profile's window: not judged yet
    assert elapsed_window(look.samples, RECOVERY_FROM) == 5.0
    early = _judge(look, elapsed_window(look.samples, RECOVERY_FROM))
    assert [v.kind for v in early.violations] == ["falsely_busy"]


def test_the_wait_ends_at_the_first_look_after_the_csms_healed():
    done, progress, clock = _wait(heals_at=40.0, window=60.0, poll=5.0)
    assert done.early and done.judgement.passed
    assert done.healed_after == 30.0 and done.judged_window == 30.0 and done.window == 60.0
    assert done.looks == 6 and clock() == 40.0  # looks at 15, 20, ..., 40: not 70.2
    assert [p.elapsed for p in progress] == [5.0, 10.0, 15.0, 20.0, 25.0]
    assert all(p.findings == {"falsely_busy": 1} and p.window == 60.0 for p in progress)


def test_a_csms_that_never_heals_is_judged_after_the_whole_window_with_it():
    done, progress, clock = _wait(heals_at=None, window=60.0, poll=5.0)
    assert not done.early and done.healed_after is None and done.judged_window == 60.0
    assert [v.kind for v in done.judgement.violations] == ["falsely_busy"]
    assert clock() == pytest.approx(RECOVERY_FROM + 60.0 + 0.2)  # the final look, just past the window
    assert len(progress) == done.looks - 1  # every early look failed and said so


def test_poll_zero_waits_the_whole_window_even_for_a_healed_csms():
    done, progress, clock = _wait(heals_at=0.0, window=902.0, poll=0.0)
    assert done.judgement.passed and not done.early and done.looks == 1 and progress == []
    assert clock() == pytest.approx(RECOVERY_FROM + 902.2)


def test_a_look_is_never_later_than_the_windows_end():
    assert next_step(10.0, 10.0, 60.0, 5.0).at == 15.0 and not next_step(10.0, 10.0, 60.0, 5.0).final
    last = next_step(67.0, 10.0, 60.0, 5.0)  # 72 would be past the end (70.2): the final look comes first
    assert last.final and last.at == pytest.approx(70.2)
    assert next_step(80.0, 10.0, 60.0, 5.0) == next_step(80.0, 10.0, 60.0, 0.0)  # late: at once, final


def test_findings_the_profile_does_not_claim_are_counted_not_failed_and_locust_gets_one_row_per_kind():
    records = [
        *IDLE_CHARGER,
        {"t": 0.1, "cp": "CP2", "kind": "identity", "connectors": 1},
        {"t": 0.2, "cp": "CP2", "kind": "link", "event": "connected"},
    ]
    look = Look([Sample(75.0, cp, 1, Verdict(BUSY), 75.0) for cp in ("CP1", "CP2")], [], records, 75.0)
    j = judge_load(look.records, look.samples, [], recovery_window=60, grace=1.5, recovery_from=10, end=75)
    assert [(k, n) for k, n, _ in failure_rows(j)] == [("falsely_busy", 2)]
    kind, n, message = failure_rows(j, where="reports/oracle_summary.txt")[0]
    assert "reported busy" in message and "2 findings" in message and "reports/oracle_summary.txt" in message

    no_occupancy = frozenset(CLAIMS) - {"occupancy"}
    unclaimed = judge_load(
        look.records, look.samples, [], recovery_window=60, grace=1.5, recovery_from=10, end=75, claims=no_occupancy
    )
    assert unclaimed.passed and unclaimed.unclaimed == {"falsely_busy": 2} and failure_rows(unclaimed) == []
    run = {"recoveryWindow": 60.0, "healedAfter": None, "judgedWindow": 60.0}
    assert summary(unclaimed, run=run)["notClaimed"] == {"falsely_busy": 2}
    line = verdict_line(unclaimed, run=run)
    assert line.startswith("oracle: PASSED (judged after the whole 60 s recovery window)")
    assert "not claimed by the CSMS profile (not judged): falsely_busy=2" in line
    assert verdict_line(unclaimed, run={**run, "healedAfter": 12.4}).startswith(
        "oracle: PASSED (healed after 12 s of the profile's 60 s window)"
    )
    assert summary_text(j, run=run).startswith("oracle: FAILED (judged after the whole 60 s recovery window); 2 ")


def test_the_trace_tail_reads_on_from_where_it_stopped_and_waits_for_a_line_cut_short(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"t": 1}\n{"t": 2}\n{"t": 3')
    tail = TraceTail([path])
    assert [r["t"] for r in tail.read()] == [1, 2]
    with open(path, "a") as f:
        f.write(', "kind": "x"}\n{"t": 4}\n')
    assert [r["t"] for r in tail.read()] == [1, 2, 3, 4]
    assert tail.read() is tail.records and len(tail.records) == 4


def _ns(**kw):
    return argparse.Namespace(**kw)


def test_the_profile_gives_the_window_unless_recovery_window_is_given():
    opts = LoadOptions.from_parsed(_ns())
    assert opts.csms_profile == DEFAULT_CSMS_PROFILE and opts.recovery_window is None and opts.oracle_poll == 5.0
    assert load_profile(opts.csms_profile).recovery_window == 902.0  # `csms serve` with its defaults
    assert LoadOptions.from_parsed(_ns(recovery_window="")).recovery_window is None  # the web UI's blank field
    assert LoadOptions.from_parsed(_ns(recovery_window="20")).recovery_window == 20.0
    with pytest.raises(ConfigError, match="--recovery-window"):
        LoadOptions.from_parsed(_ns(recovery_window="soon"))
    with pytest.raises(ConfigError, match="--oracle-poll"):
        LoadOptions.from_parsed(_ns(oracle_poll=-1))


def test_loadtests_run_judges_its_csms_by_a_profile_of_the_timings_it_starts_it_with():
    profile = profile_for(LOAD_TIMINGS)
    read = profile_from_mapping(tomllib.loads(profile_toml(profile)), source="written")
    assert read.to_json()["timings"] == profile.to_json()["timings"] and read.claims == frozenset(CLAIMS)
    assert read.name == profile.name
    assert read.recovery_window == LOAD_TIMINGS.recovery_window + RECOVERY_MARGIN
    assert read.offline_after == LOAD_TIMINGS.heartbeat_interval * LOAD_TIMINGS.heartbeat_timeout_factor
    assert read.sweep_interval == LOAD_TIMINGS.maintenance_interval
