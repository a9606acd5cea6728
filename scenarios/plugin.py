"""The pytest plugin behind `unstuck-scenarios`: options, fixtures, progress, reports.

A scenario is an ordinary pytest-trio test with four fixtures:
- `csms`: the `CsmsAdapter` (ours over REST, or the one named by `--adapter`);
- `fleet`: `await fleet(*faults, count=, connectors=, driver=, config=)` starts this
  scenario's simulated charge points (ids `{code}{run tag}-0001`...) and starts sampling verdicts;
- `oracle`: the `ScenarioRun` (`recovery_starts()`, `recover()`, `hold()`, `await judge()`);
- `truth`: a function returning the ground-truth `Timeline` so far.

Load it with `-p scenarios.plugin`; `unstuck-scenarios run` does.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .adapters.base import CsmsAdapter, NotSupportedError
from .adapters.unstuck_rest import UnstuckRestAdapter
from .embedded import CsmsEndpoint, Timings, start_embedded
from .meta import info_of
from .run import RunSettings, ScenarioRun

RECORD = pytest.StashKey[dict]()
RUN = pytest.StashKey[ScenarioRun]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("unstuck scenarios")
    g.addoption(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="quick (chaos with 50 charge points) or full (200)",
    )
    g.addoption("--seed", type=int, default=7, help="one seed decides every fleet and fault (default 7)")
    g.addoption("--scale", type=int, default=None, help="charge points in the chaos scenario (default: the profile's)")
    g.addoption(
        "--chaos-seconds", type=float, default=None, help="length of the chaos load phase (default 30 quick, 60 full)"
    )
    g.addoption("--report-dir", default="reports", help="where JUnit, JSON, HTML and traces go (default reports/)")
    g.addoption("--db", default=None, help="database of the embedded CSMS (default: a fresh temporary SQLite file)")
    g.addoption("--csms-url", default=None, help="OCPP URL of a running CSMS (ws://host:port/ocpp): no embedded one")
    g.addoption("--api-url", default=None, help="REST URL of that CSMS")
    g.addoption("--api-token", default=os.environ.get("UNSTUCK_API_TOKEN"), help="admin token of that CSMS")
    g.addoption("--csms-arg", action="append", default=[], help="extra `csms serve` argument for the embedded CSMS")
    g.addoption("--csms-command", default=None, help="command starting the embedded CSMS (default: python -m csms)")
    g.addoption("--adapter", default=None, help="package.module:Class of another CSMS's adapter")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario: a catalogue scenario")
    config._scenario_records = []  # type: ignore[attr-defined]
    config._scenario_started = time.time()  # type: ignore[attr-defined]
    if not _is_worker(config):  # the records of an earlier run in the same folder are not this run's
        shutil.rmtree(_records_dir(config), ignore_errors=True)


def _is_worker(config: pytest.Config) -> bool:
    """Under pytest-xdist (`--jobs`), each worker runs some scenarios; the controller writes the reports."""
    return hasattr(config, "workerinput")


def _records_dir(config: pytest.Config) -> Path:
    return Path(config.getoption("report_dir")) / "records"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def run_settings(pytestconfig: pytest.Config) -> RunSettings:
    opt = pytestconfig.getoption
    return RunSettings(
        profile=opt("profile"),
        seed=opt("seed"),
        scale=opt("scale"),
        chaos_seconds=opt("chaos_seconds"),
        report_dir=Path(opt("report_dir")),
        tag=secrets.token_hex(2),
    )


@pytest.fixture(scope="session")
def csms_endpoint(
    pytestconfig: pytest.Config, run_settings: RunSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CsmsEndpoint]:
    """The CSMS under test: the one given by --csms-url, else an embedded `csms serve`."""
    opt = pytestconfig.getoption
    if opt("csms_url"):
        if not opt("api_url") or not opt("api_token"):
            raise pytest.UsageError("--csms-url needs --api-url and --api-token (or UNSTUCK_API_TOKEN)")
        yield CsmsEndpoint(opt("csms_url"), opt("api_url"), opt("api_token"))
        return
    workdir = tmp_path_factory.mktemp("csms")
    db = opt("db") or f"sqlite:///{workdir / 'csms.db'}"
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid")
    command = shlex.split(opt("csms_command")) if opt("csms_command") else None
    embedded = start_embedded(
        db,
        run_settings.report_dir,
        timings=Timings(),
        extra=opt("csms_arg"),
        command=command,
        name=f"csms-{worker}" if worker else "csms",
    )
    _say(
        pytestconfig,
        f"embedded CSMS: {embedded.endpoint.ocpp_url} + {embedded.endpoint.api_url} on {db} "
        f"(log {embedded.endpoint.log_path})",
    )
    try:
        yield embedded.endpoint
    finally:
        embedded.stop()


@pytest.fixture
async def csms(
    pytestconfig: pytest.Config, csms_endpoint: CsmsEndpoint, run_settings: RunSettings
) -> AsyncIterator[CsmsAdapter]:
    spec = pytestconfig.getoption("adapter")
    if spec:
        module, _, name = spec.partition(":")
        cls = getattr(importlib.import_module(module), name)
        adapter = cls(csms_endpoint.ocpp_url, csms_endpoint.api_url, csms_endpoint.token)
    else:
        adapter = UnstuckRestAdapter(csms_endpoint.ocpp_url, csms_endpoint.api_url, csms_endpoint.token)
    try:
        yield adapter
    finally:
        await adapter.aclose()


@pytest.fixture
async def oracle(
    request: pytest.FixtureRequest, csms: CsmsAdapter, csms_endpoint: CsmsEndpoint, run_settings: RunSettings, nursery
) -> AsyncIterator[ScenarioRun]:
    info = _info(request.node)
    if info is None:
        raise pytest.UsageError(f"{request.node.nodeid} is not decorated with @scenario(...)")
    run = ScenarioRun(
        info, run_settings, csms_endpoint.timings, csms, nursery, progress=lambda line: _say(request.config, line)
    )
    request.node.stash[RUN] = run
    yield run
    nursery.cancel_scope.cancel()  # the fleet and the observer end with the scenario


@pytest.fixture
def fleet(oracle: ScenarioRun):
    return oracle.start_fleet


@pytest.fixture
def truth(oracle: ScenarioRun):
    return oracle.truth


# ------------------------------------------------------------------ reports
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and call.excinfo is not None:
        missing = _not_supported(call.excinfo.value)
        if missing is not None:  # the CSMS behind the adapter cannot answer this scenario's question
            rep.outcome = "skipped"
            rep.longrepr = (str(item.path), 0, f"Skipped: the CSMS cannot answer: {missing}")
    run = item.stash.get(RUN, None)
    record = item.stash.get(RECORD, None)
    if record is None:
        info = _info(item)
        record = {
            "name": info.name if info else item.name,
            "nodeid": item.nodeid,
            "outcome": "passed",
            "duration": 0.0,
            "error": None,
        }
        item.stash[RECORD] = record
    record["duration"] = round(record["duration"] + rep.duration, 2)
    if rep.failed:
        record["outcome"] = "failed" if rep.when == "call" else "error"
        record["error"] = str(rep.longrepr)[-6000:] if record["error"] is None else record["error"]
    elif rep.skipped and record["outcome"] == "passed":
        record["outcome"] = "skipped"
        record["error"] = str(rep.longrepr)[-1000:]
    if rep.when == "teardown":
        if run is not None:
            try:
                record.update(run.record())
            except Exception as exc:  # a broken report must not hide the verdict
                record["reportError"] = repr(exc)
        # One file per scenario: workers of a parallel run share nothing else with the controller.
        out = _records_dir(item.config)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{record['name']}.json").write_text(json.dumps(record, default=str), encoding="utf-8")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _is_worker(session.config):
        return
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(_records_dir(session.config).glob("*.json"))]
    session.config._scenario_records = records  # type: ignore[attr-defined]
    if not records:
        return
    from .report.html import write_html
    from .report.summary import write_summary

    opt = session.config.getoption
    report_dir = Path(opt("report_dir"))
    info = {
        "profile": opt("profile"),
        "seed": opt("seed"),
        "scale": opt("scale"),
        "startedAt": session.config._scenario_started,  # type: ignore[attr-defined]
        "duration": round(time.time() - session.config._scenario_started, 1),  # type: ignore[attr-defined]
        "csms": opt("csms_url") or "embedded",
        "db": opt("db") or "sqlite (temporary)",
    }
    write_summary(report_dir / "summary.json", info, records)
    write_html(report_dir / "report.html", report_dir / "summary.json")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    records = getattr(config, "_scenario_records", None)
    if not records:
        return
    tr = terminalreporter
    tr.section("unstuck scenarios")
    width = max(len(r["name"]) for r in records)
    tr.write_line(f"{'scenario'.ljust(width)}  {'result':7}  {'time':>6}  violations  sessions  faults")
    for r in records:
        fleet = r.get("fleet") or {}
        tr.write_line(
            f"{r['name'].ljust(width)}  {r['outcome'].upper():7}  {r['duration']:5.1f}s  "
            f"{len(r.get('violations') or ()):>10}  {fleet.get('sessions', 0):>8}  "
            f"{sum((fleet.get('faults') or {}).values()):>6}"
        )
    report_dir = Path(config.getoption("report_dir"))
    tr.write_line(
        f"reports: {report_dir / 'report.html'}  {report_dir / 'summary.json'}  "
        f"{report_dir / 'junit.xml'}  traces in {report_dir / 'traces'}"
    )


def _not_supported(exc: BaseException) -> NotSupportedError | None:
    """The NotSupportedError inside `exc` (trio wraps task errors in exception groups), if any."""
    if isinstance(exc, NotSupportedError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _not_supported(inner)
            if found is not None:
                return found
    return None


def _info(item: pytest.Item):
    """The @scenario metadata of a test (pytest-trio wraps the function, the module keeps it)."""
    fn = getattr(getattr(item, "module", None), getattr(item, "originalname", item.name), None)
    return info_of(fn) or info_of(getattr(item, "function", None))


def _say(config: pytest.Config, line: str) -> None:
    """A progress line on the terminal, even while pytest captures the test's output."""
    if _is_worker(config):  # an xdist worker's stderr is the terminal's
        print(f"[{config.workerinput['workerid']}] {line}", file=sys.__stderr__, flush=True)  # type: ignore[attr-defined]
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        print(line)
        return
    if capman is not None:
        with capman.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)
