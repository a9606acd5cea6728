"""`unstuck-scenarios`: list the catalogue, run scenarios against a CSMS, write the reports.

`run` is pytest underneath (the catalogue modules are pytest-trio tests, the
plugin gives them their fixtures), so JUnit XML, `-k` and `-x` come free:
anything after `--` goes to pytest unchanged.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .adapters.load import AdapterError, load_adapter_class
from .meta import CATALOGUE_DIR, catalogue
from .profile import ProfileError, load_profile

__all__ = ["main", "build_parser"]

EPILOG = """\
examples:
  unstuck-scenarios list
  unstuck-scenarios run                                # quick profile, embedded CSMS on temporary SQLite
  unstuck-scenarios run unlock_stuck_session --seed 3  # one scenario, another seed
  unstuck-scenarios run --ocpp both                    # every scenario with 1.6 chargers and with 2.0.1 stations
  unstuck-scenarios run chaos_under_load --profile full --db postgresql+psycopg://postgres@127.0.0.1:5432/test
  unstuck-scenarios run unclosed_transaction --csms-arg=--orphan-grace-seconds=0   # watch it fail
  unstuck-scenarios run -- -x -k "unlock"              # pytest options after --
  # a CSMS that is already running: ours (`make serve`: its default timings take minutes to heal) ...
  unstuck-scenarios run --csms-url ws://127.0.0.1:9000/ocpp --api-url http://127.0.0.1:8000 --api-token TOKEN \\
      --csms-profile scenarios/profiles/unstuck-serve.toml
  # ... or yours: an adapter (a file or a module) and a profile of what it promises (as tests/foreign/ does)
  unstuck-scenarios run --csms-url ws://127.0.0.1:9100/ocpp --api-url http://127.0.0.1:9101 --api-token TOKEN \\
      --adapter tests/foreign/plaincsms_adapter.py:PlainCsmsAdapter --csms-profile tests/foreign/plaincsms.toml
  unstuck-scenarios list --scenarios docs/examples/scenarios   # a team's own scenario folder
  unstuck-scenarios run --scenarios docs/examples/scenarios

Reports go to --report DIR (default reports/): report.html, summary.json, junit.xml, traces/*.jsonl.
Exit status 0 when no scenario failed ("not claimed" ones do not fail a run).
"""


EXPLAIN_EPILOG = """\
examples:
  unstuck-sim import site-x.jsonl -o site-x.frames.jsonl     # a field log into a frame log
  unstuck-scenarios explain site-x.frames.jsonl             # embedded CSMS, default timings / speed
  unstuck-scenarios explain site-x.frames.jsonl --at 03:12  # one moment: every connector's verdict and word
  unstuck-scenarios explain site-x.frames.jsonl --from 00:30 --to 01:30   # only that hour of the night
  unstuck-scenarios explain site-x.frames.jsonl --csms-arg=--maintenance-interval-seconds=0   # maintenance off
  unstuck-scenarios explain site-x.frames.jsonl --csms-url ws://127.0.0.1:9000/ocpp \\
      --api-url http://127.0.0.1:8000 --api-token TOKEN

Exit status 0 when it ran (a stuck connector is a finding, not a failure), 2 on bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unstuck-scenarios",
        description="Run a CSMS against a seeded fleet of faulty OCPP 1.6J or 2.0.1 charge points and judge it against "
        "the simulator's ground truth: never falsely free, never falsely busy after recovery, "
        "nothing lost.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="every scenario: name, purpose, seed passage, duration")
    ls.add_argument("--profile", choices=("quick", "full"), default="quick", help="durations of this profile")
    ls.add_argument("--scenarios", default=None, metavar="DIR", help="a folder of scenarios instead of ours")
    run = sub.add_parser(
        "run",
        help="run scenarios (all by default) and write the reports",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    run.add_argument("names", nargs="*", metavar="NAME", help="scenarios to run (see `list`); default all")
    run.add_argument(
        "--scenarios",
        default=None,
        metavar="DIR",
        help="run the scenarios in this folder (a team's own: @scenario-decorated pytest-trio tests) "
        "instead of our catalogue",
    )
    run.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="quick: chaos with 50 charge points, ~2 min in all; full: 200 charge points",
    )
    run.add_argument(
        "--ocpp",
        choices=("1.6", "2.0.1", "both"),
        default=None,
        help="the OCPP version of the simulated chargers; with both, every scenario runs once per version "
        "(default: both in the full profile; in the quick one 1.6, and the chaos scenario in 2.0.1 too)",
    )
    run.add_argument("--seed", type=int, default=7, help="one seed decides fleets, cars and faults (default 7)")
    run.add_argument(
        "--scale",
        type=int,
        default=None,
        metavar="N",
        help="charge points in the chaos scenario (default 50 quick, 200 full)",
    )
    run.add_argument(
        "--chaos-seconds",
        type=float,
        default=None,
        metavar="S",
        help="length of the chaos load phase before traffic ends (default 30 quick, 60 full)",
    )
    run.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=4,
        metavar="N",
        help="scenarios run at once, each worker with its own embedded CSMS (default 4; 1 = one by one)",
    )
    run.add_argument("--report", default="reports", metavar="DIR", help="report folder (default reports/)")
    run.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="database of the embedded CSMS (default: fresh temporary SQLite), e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    run.add_argument("--csms-url", default=None, metavar="WS_URL", help="judge a running CSMS: its OCPP base URL")
    run.add_argument("--api-url", default=None, metavar="HTTP_URL", help="... its REST base URL")
    run.add_argument("--api-token", default=None, metavar="TOKEN", help="... an admin token (or UNSTUCK_API_TOKEN)")
    run.add_argument(
        "--adapter",
        default=None,
        metavar="FILE.py:CLASS",
        help="how to ask another CSMS: path/to/file.py:Class or package.module:Class "
        "(see docs/harness.md, 'Judging another CSMS')",
    )
    run.add_argument(
        "--csms-profile",
        default=None,
        metavar="TOML",
        help="what the CSMS under test promises: its timings and claims (default: ours, "
        "scenarios/profiles/unstuck.toml; see scenarios/profiles/example.toml). What it does not claim "
        "is reported 'not claimed', neither passed nor failed",
    )
    run.add_argument(
        "--csms-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `csms serve` argument for the embedded CSMS (repeatable), e.g. --csms-arg=--orphan-grace-seconds=0",
    )
    run.add_argument(
        "--csms-command",
        default=None,
        metavar="CMD",
        help="the command that starts the embedded CSMS, given `serve ...` after it (default: "
        "'python -m csms'); mutation tests use 'python -m tests.support.mutants NAME --'",
    )
    explain = sub.add_parser(
        "explain",
        help="replay a field log (a frame log) against a CSMS and say, per connector, when and why it was stuck",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXPLAIN_EPILOG,
    )
    from .explain import add_arguments

    add_arguments(explain)
    return p


def _folder(given: str | None) -> Path | None:
    if given is None:
        return None
    folder = Path(given)
    if not folder.is_dir():
        raise SystemExit(f"unstuck-scenarios: --scenarios {given}: no such folder")
    return folder


def _list(profile: str, folder: Path | None) -> int:
    items = _catalogue(folder)
    if not items:
        print(f"no @scenario-decorated tests in {folder or CATALOGUE_DIR}")
        return 1
    width = max(len(i.name) for i in items)
    print(f"{'scenario'.ljust(width)}  {'~time':>6}  purpose  [seed passage] (needs)")
    for i in items:
        needs = f" (needs {', '.join(i.needs)})" if i.needs else ""
        print(f"{i.name.ljust(width)}  {i.duration(profile):5.0f}s  {i.purpose}  [{i.seed}]{needs}")
    total = sum(i.duration(profile) for i in items)
    print(f"\n{len(items)} scenarios, about {total:.0f} s in the {profile} profile (plus start-up).")
    return 0


def check(args: argparse.Namespace) -> None:
    """The profile, the adapter and the folder, checked once before pytest starts: one clear error each."""
    try:
        load_profile(args.csms_profile)
        if args.adapter:
            load_adapter_class(args.adapter)
    except (ProfileError, AdapterError) as exc:
        raise SystemExit(f"unstuck-scenarios: {exc}") from None


def _plugin_installed() -> bool:
    """Installed, pytest loads the plugin through its entry point; `-p` would load it twice."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "scenarios.plugin" for ep in entry_points(group="pytest11"))


def rerun_command(args: argparse.Namespace, rest: list[str], names: list[str]) -> str:
    """This run's command line with `names` in place of the run's own (the token stays out of it)."""
    parts = ["unstuck-scenarios", "run", "--profile", args.profile, "--seed", str(args.seed)]
    for flag, value in (
        ("--scenarios", args.scenarios),
        ("--ocpp", args.ocpp),
        ("--scale", args.scale),
        ("--chaos-seconds", args.chaos_seconds),
        ("--db", args.db),
        ("--csms-url", args.csms_url),
        ("--api-url", args.api_url),
        ("--adapter", args.adapter),
        ("--csms-profile", args.csms_profile),
        ("--csms-command", args.csms_command),
    ):
        if value is not None:
            parts += [flag, str(value)]
    parts += [f"--csms-arg={a}" for a in args.csms_arg]
    line = shlex.join(parts)
    if args.csms_url:  # the token is a secret: the line names where it comes from
        line += ' --api-token "$UNSTUCK_API_TOKEN"'
    line += "".join(f" {n}" if n == "{name}" else f" {shlex.quote(n)}" for n in names)
    return line + (" -- " + shlex.join(rest) if rest else "")


def _catalogue(folder: Path | None) -> list:
    try:
        return catalogue(folder)
    except ValueError as exc:
        raise SystemExit(f"unstuck-scenarios: {exc}") from None


def pytest_args(args: argparse.Namespace, rest: list[str]) -> list[str]:
    folder = _folder(args.scenarios)
    known = {i.name: i for i in _catalogue(folder)}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        where = f" in {folder}" if folder else ""
        raise SystemExit(
            f"unstuck-scenarios: unknown scenario(s) {', '.join(unknown)}{where}; "
            f"`unstuck-scenarios list{' --scenarios ' + str(folder) if folder else ''}` shows the "
            f"{len(known)} there are"
        )
    root = folder.resolve() if folder else CATALOGUE_DIR
    paths = [str(known[n].path) for n in args.names] or [str(root)]
    report = Path(args.report)
    plugin = [] if _plugin_installed() else ["-p", "scenarios.plugin"]
    out = [
        *paths,
        *plugin,
        "-c",
        str(CATALOGUE_DIR.parent / "pytest.ini"),
        "--rootdir",
        str(root if folder else CATALOGUE_DIR.parent),
        "-p",
        "no:cacheprovider",
        # This process imported the scenarios (and faker, with them) to check the names: pytest need not
        # warn that it cannot rewrite their asserts (scenarios judge through the oracle, not bare asserts).
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "-v",
        f"--junitxml={report / 'junit.xml'}",
        "-o",
        "junit_suite_name=unstuck-scenarios",
        "--profile",
        args.profile,
        "--seed",
        str(args.seed),
        "--report-dir",
        str(report),
    ]
    for flag, value in (
        ("--ocpp", args.ocpp),
        ("--scale", args.scale),
        ("--chaos-seconds", args.chaos_seconds),
        ("--db", args.db),
        ("--csms-url", args.csms_url),
        ("--api-url", args.api_url),
        ("--api-token", args.api_token),
        ("--adapter", args.adapter),
        ("--csms-profile", args.csms_profile),
        ("--csms-command", args.csms_command),
    ):
        if value is not None:
            out += [flag, str(value)]
    out += ["--rerun-command", rerun_command(args, rest, ["{name}"])]
    out += ["--rerun-run", rerun_command(args, rest, args.names)]
    jobs = min(args.jobs, len(paths) if args.names else args.jobs)
    if jobs > 1:
        out += ["-n", str(jobs), "--dist", "load"]
    for extra in args.csms_arg:
        out.append(f"--csms-arg={extra}")
    return out + rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.command == "list":
        return _list(args.profile, _folder(args.scenarios))
    if args.command == "explain":
        from .explain import explain_main

        return explain_main(args)
    check(args)
    import pytest

    code = int(pytest.main(pytest_args(args, rest)))
    report = Path(args.report)
    if (report / "report.html").exists():
        print(f"\nHTML report: {(report / 'report.html').resolve()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
