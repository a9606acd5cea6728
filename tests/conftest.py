"""Shared fixtures: a database URL per backend and a real `csms serve` subprocess."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import CsmsProcess, start_csms

PG_ENV = "CSMS_TEST_POSTGRES_URL"

# The slow tier (`make test-slow`): whole scenario runs, SIGKILLs, two nodes behind HAProxy, locust,
# schemathesis, and every test's PostgreSQL variant (the fast tier runs it on SQLite). Everything else is
# the fast tier (`make test`). One place says which is which.
SLOW_TIER = frozenset(
    {
        "tests/scenarios/test_mutations_seed000.py",
        "tests/scenarios/test_mutations_seed001.py",
        "tests/scenarios/test_mutations_201.py",
        "tests/scenarios/test_mutations_chaos.py",
        "tests/scenarios/test_quick_profile.py",
        "tests/e2e/test_crash_safety.py",
        "tests/e2e/test_crash_safety_201.py",
        "tests/e2e/test_cluster.py",
        "tests/e2e/test_cluster_failures.py",  # two nodes behind HAProxy, frozen, killed, the database stopped
        "tests/e2e/test_cluster_bench.py",
        "tests/e2e/test_schemathesis.py",
        "tests/e2e/test_database_outage.py",  # a private PostgreSQL stopped and continued
        "tests/loadtests/test_locust_run.py",
        "tests/scenarios/test_team_scenarios.py",  # three runs of a team folder, each with its own CSMS
        "tests/scenarios/test_foreign_libcentral.py",  # the whole catalogue against a foreign CSMS
        "tests/scenarios/test_foreign_plaincsms.py",  # ... and another
        "tests/scenarios/test_foreign_libcentral201.py",  # ... and a 2.0.1 one
        "tests/e2e/test_console_a11y.py",  # axe-core on seven console pages at two widths
    }
)


# Files of minutes (the durations `make test PYTEST_ARGS=--durations=40` shows) go first: pytest-xdist's
# `--dist loadfile` hands files out in collection order, and a long file handed out last keeps one worker
# busy for minutes while the others idle (seen: the slow tier's last two minutes).
# The quick profile (our own CSMS's catalogue with its tight timings) is not among them: it runs in its
# collection place, near the end, when fewer runs share the cores.
LONG_FIRST = (  # the three foreign catalogue runs (4 scenario workers each) spread out, not side by side
    "tests/scenarios/test_foreign_libcentral201.py",
    "tests/e2e/test_crash_safety.py",
    "tests/scenarios/test_mutations_chaos.py",
    "tests/scenarios/test_foreign_libcentral.py",
    "tests/e2e/test_crash_safety_201.py",
    "tests/scenarios/test_explain_corpus.py",
    "tests/scenarios/test_foreign_plaincsms.py",
    "tests/scenarios/test_mutations_seed001.py",
    "tests/simulator/test_fieldlog_import.py",
    "tests/scenarios/test_mutations_seed000.py",
    "tests/simulator/test_fieldlog_player.py",
    "tests/e2e/test_webhooks.py",
    "tests/e2e/test_console_chargers.py",
    "tests/e2e/test_dashboard_browser.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    rank = {path: i for i, path in enumerate(LONG_FIRST)}
    order: dict[int, int] = {}
    for item in items:
        path = Path(str(item.path)).relative_to(root).as_posix()
        params = getattr(item, "callspec", None)
        on_postgres = params is not None and params.params.get("db_url") == "postgres"
        if on_postgres or path in SLOW_TIER:
            item.add_marker(pytest.mark.slow_tier)
        order[id(item)] = rank.get(path, len(LONG_FIRST))
    items.sort(key=lambda item: order[id(item)])  # stable: a file's tests keep their order


def _pg_schema_url(base: str) -> tuple[str, str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database: an SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'csms.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    from sqlalchemy import create_engine, text

    url, schema = _pg_schema_url(base)
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'csms.db'}"


@pytest.fixture
def csms_args() -> list[str]:
    """Extra `csms serve` flags; override in a test module to change them."""
    return ["--allow-unknown-chargers"]


@pytest.fixture
def accept_unknown_id_tags() -> bool:
    """Most tests assume every id tag may charge; id tag tests override this with False."""
    return True


@pytest.fixture
def csms_command() -> list[str] | None:
    """What starts the CSMS instead of `python -m csms`: a mutant (tests.support.mutants.command) in mutant tests."""
    return None


@pytest.fixture
def csms(db_url, tmp_path, csms_args, accept_unknown_id_tags, csms_command) -> Iterator[CsmsProcess]:
    """A real `csms serve` subprocess on free ports, stopped (SIGTERM) after the test."""
    proc = start_csms(db_url, tmp_path, csms_args, accept_unknown_id_tags=accept_unknown_id_tags, command=csms_command)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def database(db_url, nursery):
    """A `csms.db.Database` on a fresh schema, its writer running in the test's nursery."""
    from csms.db.database import Database
    from csms.db.engine import make_engine
    from csms.db.schema import prepare

    engine = make_engine(db_url)
    prepare(engine)
    db = Database(engine)
    await nursery.start(db.run_writer)
    yield db
    engine.dispose()
