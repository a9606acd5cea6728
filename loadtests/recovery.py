"""Waiting out the recovery window, and ending it early once the CSMS has healed. No IO of its own.

The profile gives the CSMS a window to heal after the traffic stops (a quarter of an
hour for `csms serve`'s defaults). While it runs, the shell looks at the CSMS every
`poll` seconds (three rounds of verdicts and the stored transactions, as for the
final judgement) and the oracle judges that look with the window *elapsed so far*
instead of the profile's. That is a stricter test: every rule that waits for the
window (falsely busy, not offline, unclosed transactions, stale sessions) then holds
the CSMS to having healed already, over every connector idle since the traffic stopped.
Once such a look passes, it is the judgement ("healed after N s of the profile's M s
window"). A look that fails proves nothing yet: the wait goes on, and at the end of
the whole window the CSMS is judged as before, with the profile's window.

Time is a parameter: `wait_and_judge` takes the clock, the sleep and the look, so
tests run a fifteen-minute window without waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scenarios.adapters.base import StoredTransaction
from scenarios.oracle import Judgement, Sample

__all__ = ["Look", "Step", "Progress", "Recovery", "next_step", "elapsed_window", "wait_and_judge"]

SETTLE = 0.2  # s after the window's end before the final look (as the oracle shell always waited)


@dataclass(frozen=True)
class Look:
    """What one look at the CSMS gathered: its verdicts (samples), what it stored, the traces so far."""

    samples: Sequence[Sample]
    stored: Sequence[StoredTransaction]
    records: Sequence[Mapping[str, Any]]
    end: float  # trace time the look finished


@dataclass(frozen=True)
class Step:
    """When to look next, and whether that look is the final one (the whole window has elapsed)."""

    at: float
    final: bool


@dataclass(frozen=True)
class Progress:
    """After a look that did not pass yet: what to tell the person waiting."""

    elapsed: float  # s since the traffic stopped, at the look
    window: float
    findings: dict[str, int]  # kind -> count, with the window elapsed so far
    next_at: float  # trace time of the next look


@dataclass(frozen=True)
class Recovery:
    """How the wait ended: the judgement, the window it was held to, and whether it ended early."""

    judgement: Judgement
    window: float  # the profile's (or --recovery-window)
    judged_window: float  # the window the judgement was held to: `window`, or less if it healed early
    early: bool
    looks: int
    look: Look = field(repr=False)

    @property
    def healed_after(self) -> float | None:
        return self.judged_window if self.early else None


def next_step(now: float, recovery_from: float, window: float, poll: float) -> Step:
    """The next look: `poll` s from now, or the final one at the end of the window (poll 0: only that)."""
    deadline = recovery_from + window + SETTLE
    if poll <= 0 or now + poll >= deadline:
        return Step(max(now, deadline), True)
    return Step(max(now, recovery_from) + poll, False)


def elapsed_window(samples: Sequence[Sample], recovery_from: float) -> float:
    """The window a look can be judged with: until its first sample (every sample is then past it)."""
    if not samples:
        return 0.0
    return max(0.0, min(s.t for s in samples) - recovery_from)


def wait_and_judge(
    *,
    look: Callable[[], Look],
    judge: Callable[[Look, float], Judgement],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    recovery_from: float,
    window: float,
    poll: float,
    progress: Callable[[Progress], None] = lambda _p: None,
) -> Recovery:
    """Look every `poll` s; judge early once a look passes with the window elapsed, else at the window's end.

    `judge(look, w)` is the oracle over that look with recovery window `w` (pure);
    `look()` gathers from the CSMS and the traces (the shell's).
    """
    looks = 0
    while True:
        step = next_step(clock(), recovery_from, window, poll)
        sleep(max(0.0, step.at - clock()))
        seen = look()
        looks += 1
        if step.final:
            return Recovery(judge(seen, window), window, window, False, looks, seen)
        elapsed = elapsed_window(seen.samples, recovery_from)
        j = judge(seen, elapsed)
        if j.passed:
            return Recovery(j, window, elapsed, True, looks, seen)
        progress(Progress(elapsed, window, j.counts(), next_step(clock(), recovery_from, window, poll).at))
