"""`csms serve`'s start-up schema check on a real subprocess, SQLite and PostgreSQL: an older
database is upgraded with its rows intact (and served), a newer one refused naming both revisions,
and with --schema-upgrade refuse an older one is left alone with the command to run."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from csms.db import schema
from csms.db.engine import make_engine
from tests.support.old_schema import (
    FIRST,
    check_first_revision_rows,
    migrate_to,
    revision_of,
    store_first_revision_rows,
)
from tests.support.server import start_csms

# The rows are from March 2026: keep the start-up maintenance from releasing their old statuses, so
# that what is checked afterwards is what the upgrade did.
QUIET = ["--status-release-minutes", "0", "--reservation-timeout-minutes", "0"]


async def test_serve_upgrades_an_older_database_and_serves_its_rows(db_url, tmp_path):
    migrate_to(db_url, FIRST)
    store_first_revision_rows(db_url)
    proc = start_csms(db_url, tmp_path, QUIET)
    try:
        async with proc.client() as http:
            r = await http.get("/api/transactions")
            assert r.status_code == 200, r.text
            by_id = {t["transactionId"]: t for t in r.json()["data"]}
            assert set(by_id) == {1, 2}
            assert (by_id[1]["meterStop"], by_id[1]["session"]["fee"], by_id[1]["session"]["review"]) == (
                5000,
                "1.20",
                False,
            )
            assert by_id[2]["stopTime"] is None and by_id[2]["latestMeterWh"] == 7_000_002_500
            r = await http.get("/api/stations")
            assert [s["id"] for s in r.json()["data"]] == ["CP1"]
    finally:
        assert proc.stop() == 0
    head = schema.head_revision()
    assert f"csms.schema_upgraded action=upgrade from={FIRST} to={head}" in proc.log()
    assert revision_of(db_url) == head
    engine = make_engine(db_url)
    try:
        with Session(engine) as s:
            check_first_revision_rows(s)
    finally:
        engine.dispose()


async def test_serve_refuses_a_database_newer_than_the_code(db_url, tmp_path):
    migrate_to(db_url, "head")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(RuntimeError) as failed:
        start_csms(db_url, tmp_path, [])
    log = str(failed.value)
    assert "csms.schema_refused" in log and "revision 9999" in log
    assert f"its newest is {schema.head_revision()}" in log
    assert "Traceback" not in log  # a message for a person, not a crash
    assert revision_of(db_url) == "9999"


async def test_serve_with_schema_upgrade_refuse_leaves_an_older_database_alone(db_url, tmp_path):
    migrate_to(db_url, FIRST)
    with pytest.raises(RuntimeError) as failed:
        start_csms(db_url, tmp_path, ["--schema-upgrade", "refuse"])
    log = str(failed.value)
    assert f"schema revision {FIRST}" in log and "csms db upgrade --db" in log
    assert revision_of(db_url) == FIRST
