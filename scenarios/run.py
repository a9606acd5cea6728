"""One scenario's run: its fleet, its observer, its rules, and the judgement at the end.

The pytest plugin hands a `ScenarioRun` to each scenario (as the `fleet`,
`oracle` and `truth` fixtures). A scenario starts its fleet, acts, says when
recovery starts, waits for the recovery window, and asks for the judgement;
everything observed is kept for the reports.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from simulator import DriverSpec, Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option

from .adapters.base import CsmsAdapter, NotSupportedError, Outcome, StartResult, StoredSession
from .meta import ScenarioInfo
from .observe import LiveCounts, Observer
from .oracle import AppStart, Hold, Judgement, Rules, Violation, judge
from .profile import CsmsProfile, NotClaimed
from .report.summary import RunOutcome, scenario_record
from .timeline import Timeline

__all__ = ["RunSettings", "ScenarioRun", "ViolationsFound", "NotClaimed", "NEVER_STARTED"]

# What a CSMS did wrong when the start it accepted never became a transaction on the charger.
NEVER_STARTED = "the CSMS accepted the start, but no transaction began on the charger"

log = logging.getLogger("scenarios.run")


class ViolationsFound(AssertionError):
    """The oracle found violations; the message is the report a person reads."""


@dataclass(frozen=True)
class RunSettings:
    profile: str = "quick"
    seed: int = 7
    scale: int | None = None  # chaos fleet size; None: the profile's
    chaos_seconds: float | None = None  # chaos load phase; None: the profile's
    report_dir: Path = Path("reports")
    sample_interval: float = 0.5
    tag: str = "0000"  # this run's mark in charge point ids, so runs never collide in one CSMS

    @property
    def chaos_charge_points(self) -> int:
        return self.scale if self.scale else (200 if self.profile == "full" else 50)

    @property
    def chaos_load_seconds(self) -> float:
        return self.chaos_seconds if self.chaos_seconds else (60.0 if self.profile == "full" else 30.0)


@dataclass
class ScenarioRun:
    info: ScenarioInfo
    settings: RunSettings
    profile: CsmsProfile
    csms: CsmsAdapter
    nursery: trio.Nursery
    progress: Callable[[str], None] = print
    fleet: Fleet | None = None
    observer: Observer | None = None
    recovery_from: float = 0.0
    holds: list[Hold] = field(default_factory=list)
    tariffs: dict[str, Decimal] = field(default_factory=dict)
    app_starts: list[AppStart] = field(default_factory=list)
    judgement: Judgement | None = None
    rules: Rules | None = None
    timeline: Timeline | None = None
    notes: list[str] = field(default_factory=list)
    variant: str = ""  # a parametrized scenario's case, e.g. "[k2]": its own record, trace and ids
    ocpp: str = "1.6"  # the OCPP version of this case's fleet (a scenario may mix others in its groups)
    answers: list[Violation] = field(default_factory=list)
    ended_at: float | None = None
    _last_progress: float = -1e9

    @property
    def seed_api(self) -> bool:
        """The adapter speaks the seed's REST API (ours does): its exact texts and codes may be checked."""
        return bool(getattr(self.csms, "speaks_seed_api", False))

    # ------------------------------------------------------------ fleet
    @property
    def name(self) -> str:
        return self.info.name + self.variant

    @property
    def prefix(self) -> str:
        """This run's charge point ids start so: unique per run, and per case of a parametrized scenario."""
        case = hashlib.sha1(self.variant.encode()).hexdigest()[:3] if self.variant else ""
        return f"{self.info.code}{self.settings.tag}{case}-"

    @property
    def trace_path(self) -> Path:
        return self.settings.report_dir / "traces" / f"{self.name}.jsonl"

    async def start_fleet(
        self,
        *faults: str,
        count: int = 1,
        connectors: int = 1,
        driver: DriverSpec | None = None,
        config: dict[str, str] | None = None,
        groups: Sequence[GroupSpec] | None = None,
        ramp: float = 200.0,
        online: bool = True,
        mixed: bool = False,
    ) -> Fleet:
        """Build and start this scenario's fleet (ids `{prefix}0001`...) and start watching the CSMS.

        Every group speaks this case's OCPP version, unless `mixed`: then each group's own `ocpp` holds."""
        if self.fleet is not None:
            raise RuntimeError("a scenario runs one fleet; put several groups in it instead")
        cfg = {"MeterValueSampleInterval": "1", **(config or {})}
        if groups is None:
            groups = (GroupSpec(prefix=self.prefix, count=count, connectors=connectors, config=cfg, ocpp=self.ocpp),)
        else:
            groups = tuple(
                replace(
                    g, prefix=self.prefix + g.prefix, config={**cfg, **g.config}, ocpp=g.ocpp if mixed else self.ocpp
                )
                for g in groups
            )
        spec = FleetSpec(
            seed=self.settings.seed,
            groups=tuple(groups),
            faults=tuple(parse_fault_option(f) for f in faults),
            driver=driver,
            ramp=ramp,
            call_timeout=self.profile.call_timeout + 2,
        )
        trace = TraceWriter(self.trace_path, keep=True)
        fleet = self.fleet = Fleet(
            spec,
            self.csms.ocpp_url,
            trace=trace,
            run_info={"scenario": self.name, "profile": self.settings.profile},
        )
        await self.nursery.start(fleet.run)
        if online:
            limit = 30 + len(fleet) / 20
            with trio.move_on_after(limit):
                await fleet.wait_online()
            # A charger that hung (heartbeat_stop) before it ever booted never comes online: its fault, not the CSMS's.
            down = [cp for cp in fleet if not cp.online and not cp.link.muted]
            if down:
                errors = dict(fleet.stats.errors) or "none counted"
                raise RuntimeError(
                    f"{len(down)} of {len(fleet)} charge points were not online at {self.csms.ocpp_url} after "
                    f"{limit:g} s (e.g. {down[0].id}); fleet errors: {errors}; see {self.trace_path} "
                    "(connect_failed records say why: refused, handshake, wrong URL)"
                )
            for cp in fleet:  # the statuses after boot answered, so the first samples judge settled state
                if not cp.link.muted:  # a hung charger (heartbeat_stop) never empties its queue
                    with trio.move_on_after(5):
                        await cp.flush()
        self.observer = Observer(self.csms, fleet, interval=self.settings.sample_interval, on_sample=self._progress)
        await self.nursery.start(self.observer.run)
        return fleet

    def now(self) -> float:
        """Seconds since the fleet started: the clock of the trace and of every sample (frozen once ended)."""
        if self.ended_at is not None:
            return self.ended_at
        return 0.0 if self.fleet is None or self.fleet.clock is None else self.fleet.clock.now()

    # --------------------------------------------------------- recording
    def recovery_starts(self) -> None:
        """From now on connectors must heal within the recovery window (faults have done their work)."""
        self.recovery_from = self.now()

    def hold(
        self, cp: str, connector: int, start: float, end: float | None = None, *, asked: float | None = None
    ) -> None:
        """A reservation the CSMS granted at `start` (asked for at `asked`): the connector must not be reported
        free meanwhile, and busy from `asked` on is no fault."""
        self.holds.append(Hold(cp, connector, start, end if end is not None else float("inf"), asked))

    def session_tariff(self, session_id: str | None, tariff: Decimal) -> None:
        if session_id is not None:
            self.tariffs[session_id] = tariff

    def app_start(
        self, result: StartResult, cp: str, connector: int, id_tag: str, tariff: Decimal, asked_at: float
    ) -> None:
        """Record an app start that got a session (accepted, or timed out: the charger may start anyway),
        so the oracle can hold the CSMS to billing it."""
        timed_out = result.code == Outcome.TIMEOUT or result.status == 504
        if result.session_id is None or not (result.accepted or timed_out):
            return
        self.session_tariff(result.session_id, tariff)
        self.app_starts.append(
            AppStart(
                result.session_id, cp, connector, id_tag, tariff, asked_at, "accepted" if result.accepted else "timeout"
            )
        )

    def expect(self, ok: bool, what: str, *, claim: str | None = None, cp: str = "", connector: int = 0) -> bool:
        """Check an answer the CSMS gave while the scenario acted; a miss is judged as a `wrong_answer`.

        `claim` is what the check holds the CSMS to (scenarios/profile.py:CLAIMS): a CSMS whose profile
        does not claim it is not failed for it. Returns `ok`, so a scenario can take another path.
        """
        if not ok:
            self.answers.append(Violation("wrong_answer", cp, connector, what, t=self.now(), claim=claim))
        return ok

    async def require(self, ok: bool, what: str, *, claim: str | None = None, cp: str = "", connector: int = 0) -> None:
        """`expect`, for an answer the scenario cannot go on without: a miss ends it with the judgement so far."""
        if self.expect(ok, what, claim=claim, cp=cp, connector=connector):
            return
        if claim is not None and claim not in self.profile.claims:
            raise NotClaimed(f"{what} (needs {claim}, which the CSMS profile does not claim)")
        await self.judge()  # raises ViolationsFound: the wrong answer and whatever else is wrong by now
        raise ViolationsFound(f"{self.name}: {what}")  # unreachable unless judge() found nothing to raise

    def note(self, text: str) -> None:
        """A line for the report (what the scenario did, what it measured)."""
        self.notes.append(text)
        self.progress(f"  {self.name}: {text}")

    def _progress(self, counts: LiveCounts) -> None:
        if counts.t - self._last_progress >= 5.0:
            self._last_progress = counts.t
            fleet = self.fleet
            extra = (
                ""
                if fleet is None
                else (f"  sessions {fleet.stats.sessions}  faults {sum(fleet.stats.faults.values())}")
            )
            self.progress(f"  {self.name}: {counts.line()}{extra}")

    # ------------------------------------------------------------ waiting
    async def wait(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def recover(self, window: float | None = None) -> None:
        """Wait out the recovery window (from `recovery_starts`, or now), plus two samples."""
        window = self.profile.recovery_window if window is None else window
        end = max(self.recovery_from, 0.0) + window + 2 * self.settings.sample_interval
        await trio.sleep(max(0.0, end - self.now()))

    async def until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str,
        *,
        blame: str | None = None,
        claim: str | None = None,
        cp: str = "",
        connector: int = 0,
    ) -> None:
        """Poll a condition on the fleet (its truth, its trace) until it holds.

        `blame`: what the CSMS did wrong if it never holds (e.g. it accepted a start and never told the
        charger): the timeout is then judged as that wrong answer, not raised as the harness's error.
        """
        with trio.move_on_after(timeout):
            while not predicate():
                await trio.sleep(0.05)
            return
        if blame is not None:
            await self.require(
                False, f"{blame} (waited {timeout:g} s for {what})", claim=claim, cp=cp, connector=connector
            )
        raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for {what}")

    # ----------------------------------------------------------- judging
    def truth(self) -> Timeline:
        """Ground truth so far, rebuilt from the trace."""
        assert self.fleet is not None, "start the fleet first"
        return Timeline.from_records(
            self.fleet.trace.records or (), end=self.now(), connectors={cp.id: len(cp.connectors) for cp in self.fleet}
        )

    async def judge(
        self,
        *,
        window: float | None = None,
        check_stored: bool = True,
        check_busy: bool = True,
        check_free: bool = True,
        grace: float = 1.5,
        excuse_blinded: bool = True,
        raise_on_violation: bool = True,
    ) -> Judgement:
        """One more sample, what the CSMS stored, then the oracle. Raises ViolationsFound on a violation."""
        assert self.fleet is not None and self.observer is not None, "start the fleet first"
        await self.observer.sample_once()
        stored = await self.csms.transactions(self.prefix) if check_stored else None
        sessions = await self._app_sessions(stored) if check_stored else None
        self.rules = Rules(
            recovery_window=self.profile.recovery_window if window is None else window,
            grace=grace,
            recovery_from=self.recovery_from,
            holds=tuple(self.holds),
            check_busy=check_busy,
            check_free=check_free,
            check_stored=check_stored,
            excuse_blinded=excuse_blinded,
            tariffs=dict(self.tariffs),
            app_starts=tuple(self.app_starts),
            sessions=sessions,
            claims=self.profile.claims,
            answers=tuple(self.answers),
        )
        self.timeline = self.truth()
        self.fleet.trace.flush()
        self.judgement = judge(self.observer.samples, self.timeline, stored, self.rules)
        if raise_on_violation and not self.judgement.passed:
            raise ViolationsFound(self.report_text())
        return self.judgement

    async def _app_sessions(self, stored) -> dict[str, StoredSession] | None:
        """The app starts' sessions that no stored transaction bills, as the CSMS keeps them (None: it cannot say)."""
        linked = {t.session.session_id for t in stored or () if t.session is not None}
        out: dict[str, StoredSession] = {}
        try:
            for a in self.app_starts:
                if a.session_id not in linked and a.session_id not in out:
                    out[a.session_id] = await self.csms.session(a.session_id)
        except NotSupportedError:
            return None
        return out

    def report_text(self) -> str:
        j = self.judgement
        if j is None:
            return "not judged"
        if j.passed:
            return f"{self.name}: no violation ({_checked(j.checked)})"
        head = f"{self.name}: {len(j.violations)} violation(s) ({_checked(j.checked)}); trace {self.trace_path}"
        return "\n".join([head, *(v.describe() for v in j.violations)])

    def outcome(self) -> RunOutcome:
        """What the reports need from this run, as plain data."""
        info, settings, fleet = self.info, self.settings, self.fleet
        base = RunOutcome(
            self.name, info.purpose, info.seed, settings.profile, settings.seed, tuple(self.notes), self.judgement
        )
        if fleet is None:
            return base
        return replace(
            base,
            trace_path=self.trace_path,
            fleet={
                "chargePoints": len(fleet),
                "connectors": sum(len(cp.connectors) for cp in fleet),
                "sessions": fleet.stats.sessions,
                "faults": dict(fleet.stats.faults),
                "errors": dict(fleet.stats.errors),
            },
            timeline=self.timeline or self.truth(),
            samples=tuple(self.observer.samples) if self.observer is not None else (),
            recovery_from=self.recovery_from,
            window=self.rules.recovery_window if self.rules else self.profile.recovery_window,
        )

    def record(self) -> dict[str, Any]:
        """The run's summary.json record; call it from trio (it reads the fleet's clock), then the run is over."""
        if self.ended_at is None:
            self.ended_at = self.now()
        if self.fleet is not None:
            self.fleet.trace.flush()
        out = scenario_record(self.outcome())
        if self.judgement is None and self.answers:  # it ended before judging: its wrong answers still count
            claimed = [v for v in self.answers if v.claimed_by is None or v.claimed_by in self.profile.claims]
            out["violations"] = [v.to_json() for v in claimed]
            if len(claimed) < len(self.answers):
                out["unclaimed"] = {"wrong_answer": len(self.answers) - len(claimed)}
        if self.judgement is not None and self.judgement.unclaimed:
            out["unclaimed"] = dict(self.judgement.unclaimed)
        return out


def _checked(checked: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in checked.items())
