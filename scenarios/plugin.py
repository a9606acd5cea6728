"""The pytest plugin behind `unstuck-scenarios`: options, fixtures, progress, reports.

A scenario is an ordinary pytest-trio test with four fixtures:
- `csms`: the `CsmsAdapter` (ours over REST, or the one named by `--adapter`);
- `fleet`: `await fleet(*faults, count=, connectors=, driver=, config=)` starts this
  scenario's simulated charge points (ids `{code}{run tag}-0001`...) and starts sampling verdicts;
- `oracle`: the `ScenarioRun` (`recovery_starts()`, `recover()`, `hold()`, `await judge()`);
- `truth`: a function returning the ground-truth `Timeline` so far.

Installed with the package, pytest loads it by itself (the `pytest11` entry point `unstuck`), so
`pytest --csms-url ... their_scenarios/` works with these fixtures; it marks scenarios as trio tests.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .adapters.base import CsmsAdapter, NotSupportedError
from .adapters.load import AdapterError, load_adapter_class
from .embedded import CsmsEndpoint, Timings, start_embedded
from .meta import OCPP_VERSIONS, ScenarioInfo, info_of
from .profile import CsmsProfile, NotClaimed, ProfileError, load_profile

if TYPE_CHECKING:  # the run (and the simulator, faker) load when a scenario runs, not in every pytest start
    from .run import RunSettings, ScenarioRun

RECORD = pytest.StashKey[dict]()
BUILT = pytest.StashKey[dict]()  # the run's part of the record, built in the oracle fixture's teardown (in trio)
NOT_CLAIMED = "not claimed"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("unstuck scenarios")
    g.addoption(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="quick (chaos with 50 charge points) or full (200)",
    )
    g.addoption(
        "--ocpp",
        choices=("1.6", "2.0.1", "both"),
        default=None,
        help="the OCPP version of the fleets, each one a case of every scenario that can speak it "
        "(default: both in the full profile; 1.6 in the quick one, and 2.0.1 too where a scenario asks)",
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
    g.addoption(
        "--adapter", default=None, help="path/to/file.py:Class or package.module:Class of another CSMS's adapter"
    )
    g.addoption(
        "--csms-profile",
        default=None,
        help="TOML file of what the CSMS under test promises: timings and claims "
        "(default: scenarios/profiles/unstuck.toml, our embedded CSMS's)",
    )
    # Set by `unstuck-scenarios run`: its command line with `{name}` where a scenario's name goes (reruns one
    # scenario), and the whole run's own line.
    g.addoption("--rerun-command", default=None, help=argparse.SUPPRESS)
    g.addoption("--rerun-run", default=None, help=argparse.SUPPRESS)


def pytest_configure(config: pytest.Config) -> None:
    """Check the profile and the adapter once, before anything runs: one clear error, not one per scenario."""
    config.addinivalue_line("markers", "scenario: a catalogue scenario")
    config._scenario_records = []  # type: ignore[attr-defined]
    config._scenario_started = time.time()  # type: ignore[attr-defined]
    try:
        config._scenario_profile = load_profile(config.getoption("csms_profile"))  # type: ignore[attr-defined]
        spec = config.getoption("adapter")
        config._scenario_adapter = load_adapter_class(spec) if spec else None  # type: ignore[attr-defined]
    except (ProfileError, AdapterError) as exc:
        raise pytest.UsageError(str(exc)) from None
    opt = config.getoption
    if opt("csms_url") and not (opt("api_url") and opt("api_token")):
        raise pytest.UsageError("--csms-url needs --api-url and --api-token (or UNSTUCK_API_TOKEN)")
    # This run's records go in a folder of their own (the controller names it; xdist workers are told).
    config._scenario_run_id = (  # type: ignore[attr-defined]
        config.workerinput["unstuck_run_id"] if _is_worker(config) else secrets.token_hex(4)  # type: ignore[attr-defined]
    )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker writes its records where the controller will read them."""
    node.workerinput["unstuck_run_id"] = node.config._scenario_run_id


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scenarios are trio tests whatever the team's pytest configuration says (no trio_mode needed).

    A module holds one scenario (its name is the module's): a second would overwrite its records.
    """
    functions: dict[str, set[str]] = {}
    for item in items:
        if _info(item) is not None:
            functions.setdefault(str(item.path), set()).add(getattr(item, "originalname", item.name))
    crowded = {path: names for path, names in functions.items() if len(names) > 1}
    if crowded:
        path, names = next(iter(crowded.items()))
        raise pytest.UsageError(
            f"{path}: one @scenario test per module ({', '.join(sorted(names))}); put each in a file of its own "
            "(parametrize one for cases)"
        )
    for item in items:
        fn = getattr(item, "obj", None)
        if _info(item) is not None and inspect.iscoroutinefunction(fn) and item.get_closest_marker("trio") is None:
            item.add_marker(pytest.mark.trio)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One case per OCPP version a scenario runs in; a version it cannot speak is a skip that says so.
    A scenario in 1.6 alone keeps its plain name (and its reports' and reruns')."""
    info = info_of(metafunc.function)
    if info is None or "ocpp_version" not in metafunc.fixturenames:
        return
    versions = _versions(metafunc.config, info)
    if versions == ["1.6"] and "1.6" in info.ocpp:
        return
    params = [
        pytest.param(
            v,
            id=f"ocpp{v}",
            marks=()
            if v in info.ocpp
            else pytest.mark.skip(reason=f"{info.name} runs in OCPP {' and '.join(info.ocpp)} only"),
        )
        for v in versions
    ]
    metafunc.parametrize("ocpp_version", params)


def _versions(config: pytest.Config, info: ScenarioInfo) -> list[str]:
    chosen = config.getoption("ocpp")
    if chosen == "both" or (chosen is None and config.getoption("profile") == "full"):
        return list(OCPP_VERSIONS)
    if chosen is None:
        return list(info.quick_ocpp)
    return [chosen]


def _is_worker(config: pytest.Config) -> bool:
    """Under pytest-xdist (`--jobs`), each worker runs some scenarios; the controller writes the reports."""
    return hasattr(config, "workerinput")


def _records_dir(config: pytest.Config) -> Path:
    return Path(config.getoption("report_dir")) / f".records-{config._scenario_run_id}"  # type: ignore[attr-defined]


def _profile(config: pytest.Config) -> CsmsProfile:
    return config._scenario_profile  # type: ignore[attr-defined,no-any-return]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def run_settings(pytestconfig: pytest.Config) -> RunSettings:
    from .run import RunSettings

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
    if opt("csms_url"):  # with --api-url and --api-token (pytest_configure checked)
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
    from .adapters.unstuck_rest import UnstuckRestAdapter  # httpx: loaded when a scenario runs

    cls = pytestconfig._scenario_adapter or UnstuckRestAdapter  # type: ignore[attr-defined]
    adapter = cls(csms_endpoint.ocpp_url, csms_endpoint.api_url, csms_endpoint.token)
    try:
        yield adapter
    finally:
        await adapter.aclose()


@pytest.fixture
def ocpp_version() -> str:
    """The OCPP version of this case's fleet (pytest_generate_tests parametrizes it)."""
    return "1.6"


@pytest.fixture
async def oracle(
    request: pytest.FixtureRequest,
    csms: CsmsAdapter,
    csms_endpoint: CsmsEndpoint,
    run_settings: RunSettings,
    ocpp_version: str,
    nursery,
) -> AsyncIterator[ScenarioRun]:
    info = _info(request.node)
    if info is None:
        raise pytest.UsageError(f"{request.node.nodeid} is not decorated with @scenario(...)")
    profile = _profile(request.config)
    if ocpp_version not in profile.ocpp:
        raise NotClaimed(f"OCPP {ocpp_version}: the CSMS profile ({profile.name}) speaks {', '.join(profile.ocpp)}")
    missing = profile.unclaimed(*info.needs)
    if missing:
        raise NotClaimed(f"needs {', '.join(missing)}, which the CSMS profile ({profile.name}) does not claim")
    from .run import ScenarioRun

    run = ScenarioRun(
        info,
        run_settings,
        profile,
        csms,
        nursery,
        progress=lambda line: _say(request.config, line),
        variant=_variant(request.node),
        ocpp=ocpp_version,
    )
    try:
        yield run
    finally:
        # Built here, in trio and before the fleet stops, so a scenario that failed before its
        # judgement still reports the truth and the verdicts it has.
        try:
            request.node.stash[BUILT] = {**run.record(), "csmsUnderTest": await _describe(csms, csms_endpoint)}
        except Exception as exc:  # a broken report must not hide the verdict
            request.node.stash[BUILT] = {"reportError": repr(exc)}
        nursery.cancel_scope.cancel()  # the fleet and the observer end with the scenario


async def _describe(csms: CsmsAdapter, endpoint: CsmsEndpoint) -> dict[str, Any]:
    """Who was judged: where, and what the adapter can say of it (name, version), if it can."""
    out: dict[str, Any] = {"ocppUrl": endpoint.ocpp_url, "apiUrl": endpoint.api_url, "embedded": endpoint.embedded}
    describe = getattr(csms, "describe", None)
    if describe is not None:
        try:
            out.update(await describe())
        except Exception as exc:
            out["describeError"] = repr(exc)
    return out


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
    if _info(item) is None:  # not a scenario: none of this plugin's business
        return
    if rep.when in ("setup", "call") and call.excinfo is not None:
        missing = _not_claimed(call.excinfo.value)
        if missing is not None:  # the CSMS does not claim (or its adapter cannot answer) what this scenario asks
            rep.outcome = "skipped"
            rep.longrepr = (str(item.path), 0, f"{NOT_CLAIMED}: {missing}")
    record = item.stash.get(RECORD, None)
    if record is None:
        info = _info(item)
        record = {
            "name": (info.name if info else item.name) + _variant(item),
            "ocpp": _ocpp_of(item),
            "nodeid": item.nodeid,
            "outcome": "passed",
            "duration": 0.0,
            "error": None,
            "violations": [],
        }
        item.stash[RECORD] = record
    record["duration"] = round(record["duration"] + rep.duration, 2)
    if rep.failed:
        record["outcome"] = "failed" if rep.when == "call" else "error"
        record["error"] = _error_text(rep) if record["error"] is None else record["error"]
    elif rep.skipped and record["outcome"] == "passed":
        text = _error_text(rep)
        record["outcome"] = "not_claimed" if NOT_CLAIMED in text else "skipped"
        record["error"] = text
    if rep.when == "teardown":
        record.update(item.stash.get(BUILT, {}))
        record["rerun"] = _rerun(item.config, item)
        # One file per scenario: workers of a parallel run share nothing else with the controller.
        out = _records_dir(item.config)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{record['name']}.json").write_text(json.dumps(record, default=str), encoding="utf-8")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _is_worker(session.config):
        return
    folder = _records_dir(session.config)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    shutil.rmtree(folder, ignore_errors=True)
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
        "csms": _csms_line(session.config, records),
        "db": None if opt("csms_url") else (opt("db") or "sqlite (temporary)"),
        "csmsProfile": _profile(session.config).to_json(),
        "adapter": opt("adapter") or "unstuck REST (ours)",
        "csmsArgs": list(opt("csms_arg")),
        "csmsCommand": opt("csms_command"),
        "rerun": _rerun(session.config, None),
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
    tr.write_line(f"{'scenario'.ljust(width)}  {'result':11}  {'time':>6}  violations  sessions  faults")
    for r in records:
        fleet = r.get("fleet") or {}
        outcome = r["outcome"].replace("_", " ").upper()
        tr.write_line(
            f"{r['name'].ljust(width)}  {outcome:11}  {r['duration']:5.1f}s  "
            f"{len(r.get('violations') or ()):>10}  {fleet.get('sessions', 0):>8}  "
            f"{sum((fleet.get('faults') or {}).values()):>6}"
        )
    from .report.summary import by_ocpp

    versions = by_ocpp(records)
    if len(versions) > 1 or set(versions) - {"1.6"}:
        tr.write_line("by OCPP version: " + "; ".join(f"{v}: {dict(c)}" for v, c in versions.items()))
    unclaimed = sum(sum((r.get("unclaimed") or {}).values()) for r in records)
    not_claimed = sum(r["outcome"] == "not_claimed" for r in records)
    if unclaimed or not_claimed:
        tr.write_line(
            f"not claimed by the CSMS profile: {not_claimed} scenario(s), {unclaimed} finding(s) in others "
            f"({_profile(config).name}: {_profile(config).source})"
        )
    report_dir = Path(config.getoption("report_dir"))
    written = [report_dir / f for f in ("report.html", "summary.json", "junit.xml") if (report_dir / f).exists()]
    traces = f"  traces in {report_dir / 'traces'}" if (report_dir / "traces").is_dir() else ""
    tr.write_line(f"reports: {'  '.join(map(str, written))}{traces}")


def _not_claimed(exc: BaseException) -> str | None:
    """Why `exc` means "not claimed" (trio wraps task errors in exception groups), if it does."""
    if isinstance(exc, NotClaimed):
        return str(exc)
    if isinstance(exc, NotSupportedError):
        return f"the adapter cannot answer: {exc}"
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _not_claimed(inner)
            if found is not None:
                return found
    return None


def _error_text(rep: pytest.TestReport) -> str:
    """The whole text (a skip's reason alone): a report cut mid-word helps nobody."""
    if rep.skipped and isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    return str(rep.longrepr)


def _ocpp_of(item: Any) -> str:
    """The OCPP version of a scenario's case (pytest_generate_tests made it a parameter when not 1.6 alone)."""
    spec = getattr(item, "callspec", None)
    return str(spec.params.get("ocpp_version", "1.6")) if spec is not None else "1.6"


def _variant(item: Any) -> str:
    """A parametrized scenario's case, as pytest names it ("" for a plain one)."""
    spec = getattr(item, "callspec", None)
    return f"[{spec.id}]" if spec is not None else ""


def _rerun(config: pytest.Config, item: pytest.Item | None) -> str:
    """The command that reruns this scenario (None: the whole run) exactly: every flag, seed and profile;
    the API token as an environment variable (a report is no place for it)."""
    opt = config.getoption
    if opt("rerun_command"):  # from unstuck-scenarios run
        if item is None:
            return str(opt("rerun_run") or opt("rerun_command").replace(" {name}", ""))
        name = shlex.quote(_info(item).name)  # type: ignore[union-attr]
        spec = getattr(item, "callspec", None)
        if spec is not None and "ocpp_version" in spec.params:  # this case's version, not every version's
            name = f"--ocpp {spec.params['ocpp_version']} {name}"
        return str(opt("rerun_command")).replace("{name}", name)
    raw = list(config.invocation_params.args)
    positional = set(config.args)
    args, hide = [], False
    for a in raw:
        if hide:
            args.append("$UNSTUCK_API_TOKEN")
            hide = False
        elif a == "--api-token":
            args.append(a)
            hide = True
        elif a.startswith("--api-token="):
            args.append("--api-token=$UNSTUCK_API_TOKEN")
        elif item is None or a not in positional:
            args.append(a)
    if item is not None:
        args.append(f"{item.path}::{item.name}")
    line = shlex.join([sys.executable, "-m", "pytest", *args])
    return line.replace("'$UNSTUCK_API_TOKEN'", '"$UNSTUCK_API_TOKEN"').replace(
        "'--api-token=$UNSTUCK_API_TOKEN'", '--api-token="$UNSTUCK_API_TOKEN"'
    )


def _csms_line(config: pytest.Config, records: list[dict[str, Any]]) -> str:
    """The CSMS under test in a few words: where it ran and what it says it is."""
    opt = config.getoption
    described = next((r["csmsUnderTest"] for r in records if r.get("csmsUnderTest")), {})
    where = opt("csms_url") or "embedded csms serve"
    said = " ".join(str(described[k]) for k in ("name", "version") if described.get(k))
    return f"{where} ({said})" if said else where


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
