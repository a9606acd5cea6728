"""Smoke test of the cluster benchmark (loadtests.cluster_bench): one short run of two nodes behind HAProxy.

The real figures come from `python -m loadtests.cluster_bench` (minutes, reports/PERFORMANCE.md);
this only checks the pipeline holds together: HAProxy spreads the shared driver's connections over
both nodes, every call is answered, and each process's CPU is found. Needs PostgreSQL
(CSMS_TEST_POSTGRES_URL), haproxy and the shared driver; about 10 s.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from sqlalchemy.engine import make_url

from loadtests.cluster_bench import BENCH_DIR, BenchDatabase, drop_database, run_once

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def bench_db():
    base = os.environ.get("CSMS_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("needs PostgreSQL: set CSMS_TEST_POSTGRES_URL")
    if shutil.which("haproxy") is None:
        pytest.skip("needs haproxy (apt-get install haproxy)")
    if not (BENCH_DIR / "driver.py").exists():
        pytest.skip(f"needs the shared driver at {BENCH_DIR}")
    admin = make_url(base).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    db = BenchDatabase(admin, "clbench_" + uuid.uuid4().hex[:10])
    yield db
    drop_database(db)


def test_two_nodes_behind_haproxy_share_the_driver_load(bench_db, tmp_path):
    row = run_once("two", "mixed", 20, 2.0, tmp_path, bench_db)
    assert row["calls_per_s"] > 0 and row["errors"] == 0, row
    assert row["connections_per_node"] == {"n1": 10, "n2": 10}  # round robin, no stickiness
    assert {"node n1", "node n2", "haproxy", "postgres", "driver", "others"} <= row["cpu_pct"].keys()
    assert row["cpu_pct"]["node n1"] > 0 and row["cpu_pct"]["node n2"] > 0
    assert row["db_commits_per_call"] > 0
