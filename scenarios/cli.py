"""`unstuck-scenarios`: list the catalogue, run scenarios against a CSMS, write the reports.

`run` is pytest underneath (the catalogue modules are pytest-trio tests, the
plugin gives them their fixtures), so JUnit XML, `-k` and `-x` come free:
anything after `--` goes to pytest unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .meta import CATALOGUE_DIR, catalogue

__all__ = ["main", "build_parser"]

EPILOG = """\
examples:
  unstuck-scenarios list
  unstuck-scenarios run                                # quick profile, embedded CSMS on temporary SQLite
  unstuck-scenarios run unlock_stuck_session --seed 3  # one scenario, another seed
  unstuck-scenarios run chaos_under_load --profile full --db postgresql+psycopg://postgres@127.0.0.1:5432/test
  unstuck-scenarios run --csms-url ws://127.0.0.1:9000/ocpp --api-url http://127.0.0.1:8000 --api-token TOKEN
  unstuck-scenarios run orphaned_transaction --csms-arg=--orphan-grace-seconds=0   # watch it fail
  unstuck-scenarios run -- -x -k "unlock"              # pytest options after --

Reports go to --report DIR (default reports/): report.html, summary.json, junit.xml, traces/*.jsonl.
Exit status 0 only when every scenario passed.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unstuck-scenarios",
        description="Run a CSMS against a seeded fleet of faulty OCPP 1.6J charge points and judge it against "
        "the simulator's ground truth: never falsely free, never falsely busy after recovery, "
        "nothing lost.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="every scenario: name, purpose, seed passage, duration")
    ls.add_argument("--profile", choices=("quick", "full"), default="quick", help="durations of this profile")
    run = sub.add_parser(
        "run",
        help="run scenarios (all by default) and write the reports",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    run.add_argument("names", nargs="*", metavar="NAME", help="scenarios to run (see `list`); default all")
    run.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="quick: chaos with 50 charge points, ~2 min in all; full: 200 charge points",
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
        metavar="MODULE:CLASS",
        help="how to ask another CSMS (see docs/harness.md, 'Judging another CSMS')",
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
    return p


def _list(profile: str) -> int:
    items = catalogue()
    width = max(len(i.name) for i in items)
    print(f"{'scenario'.ljust(width)}  {'~time':>6}  purpose  [seed passage]")
    for i in items:
        print(f"{i.name.ljust(width)}  {i.duration(profile):5.0f}s  {i.purpose}  [{i.seed}]")
    total = sum(i.duration(profile) for i in items)
    print(f"\n{len(items)} scenarios, about {total:.0f} s in the {profile} profile (plus start-up).")
    return 0


def pytest_args(args: argparse.Namespace, rest: list[str]) -> list[str]:
    known = {i.name: i for i in catalogue()}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise SystemExit(
            f"unstuck-scenarios: unknown scenario(s) {', '.join(unknown)}; "
            f"`unstuck-scenarios list` shows the {len(known)} there are"
        )
    paths = [str(known[n].path) for n in args.names] or [str(CATALOGUE_DIR)]
    report = Path(args.report)
    out = [
        *paths,
        "-p",
        "scenarios.plugin",
        "-c",
        str(CATALOGUE_DIR.parent / "pytest.ini"),
        "--rootdir",
        str(CATALOGUE_DIR.parent),
        "-p",
        "no:cacheprovider",
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
        ("--scale", args.scale),
        ("--chaos-seconds", args.chaos_seconds),
        ("--db", args.db),
        ("--csms-url", args.csms_url),
        ("--api-url", args.api_url),
        ("--api-token", args.api_token),
        ("--adapter", args.adapter),
        ("--csms-command", args.csms_command),
    ):
        if value is not None:
            out += [flag, str(value)]
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
        return _list(args.profile)
    import pytest

    code = int(pytest.main(pytest_args(args, rest)))
    report = Path(args.report)
    if (report / "report.html").exists():
        print(f"\nHTML report: {(report / 'report.html').resolve()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
