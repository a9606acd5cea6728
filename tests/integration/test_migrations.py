"""Schema migrations on SQLite and PostgreSQL: head equals the models, upgrades keep rows, old
databases made before Alembic are adopted, newer ones refused, concurrent starts do not race.

A new table or column in csms/db/models.py without a migration fails test_head_matches_the_models.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.ddl.impl import DefaultImpl
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csms.db import schema
from csms.db.engine import make_engine
from csms.db.models import (
    Base,
    ChargePointPassword,
    ChargingSession,
    IdTag,
    PaymentReservation,
    Transaction,
)
from tests.support.old_schema import (
    FIRST,
    check_first_revision_rows,
    migrate_to,
    revision_of,
    store_first_revision_rows,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _csms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms", *args], capture_output=True, text=True, timeout=60)


def test_the_migrations_form_one_line():
    """Two revisions on one down_revision (two people adding one each) must be put in a line."""
    history = schema.history()
    assert history[0].revision == FIRST and history[0].down_revision is None
    for before, after in zip(history, history[1:], strict=False):
        assert after.down_revision == before.revision
    assert schema.head_revision() == history[-1].revision


# SQLite cannot reflect an expression index, so autogenerate skips it there (PostgreSQL compares it).
@pytest.mark.filterwarnings("ignore:.*expression-based index ix_transactions_tag_key_open")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_head_matches_the_models(db_url):
    """Every migration run from an empty database gives exactly the tables, columns, types and indexes
    of csms/db/models.py (which is also what a fresh database gets: create_all, stamped head)."""
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), "head")
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"csms/db/models.py and the migrations differ; add a revision for: {diff}"
    finally:
        engine.dispose()


def test_csms_db_upgrade_keeps_the_rows_of_the_first_revision(db_url):
    migrate_to(db_url, FIRST)
    store_first_revision_rows(db_url)

    done = _csms("db", "upgrade", "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert f"upgraded from revision {FIRST} to {schema.head_revision()}" in done.stdout
    assert revision_of(db_url) == schema.head_revision()

    engine = make_engine(db_url)
    try:
        with Session(engine) as s:
            check_first_revision_rows(s)
        # The columns and tables added since are usable.
        with Session(engine) as s, s.begin():
            s.get(Transaction, 2).meter_seen_at = NOW
            s.get(ChargingSession, "sess-1").fee_waived_reason = "force-ended, --force-end-fee waive"
            s.get(ChargingSession, "sess-2").review_reason = "readings contradict"
            s.get(PaymentReservation, "res-1").provider_cancel_attempts = 2
            s.add(IdTag(id_tag="TAG1", status="Accepted", created_at=NOW, updated_at=NOW))
            s.add(ChargePointPassword(charge_point_id="CP1", password_hash="scrypt$x", updated_at=NOW))
        with Session(engine) as s:
            assert s.get(Transaction, 2).meter_seen_at is not None
            assert s.get(ChargingSession, "sess-2").review_reason == "readings contradict"
            assert s.get(PaymentReservation, "res-1").provider_cancel_attempts == 2
            assert s.get(IdTag, "TAG1").status == "Accepted"
        # The partial unique index of the reservations (a table altered since) still holds.
        with pytest.raises(IntegrityError), Session(engine) as s, s.begin():
            for rid in ("r-a", "r-b"):
                s.add(
                    PaymentReservation(
                        id=rid,
                        station_id="CP1",
                        charge_point_id="CP1",
                        connector_id=1,
                        id_tag="T",
                        tariff=Decimal("0.3"),
                        status="PendingPayment",
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
    finally:
        engine.dispose()

    again = _csms("db", "upgrade", "--db", db_url)
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.mark.parametrize("made_at", ["0001", "0003", "head"])
def test_a_database_made_before_alembic_is_adopted_at_the_revision_its_tables_match(db_url, made_at):
    """create_all of an older csms left tables and no alembic_version: matched, stamped, upgraded."""
    if made_at == "head":
        engine = make_engine(db_url)
        Base.metadata.create_all(engine)  # what csms serve did until now
        engine.dispose()
    else:
        migrate_to(db_url, made_at, keep_version=False)
    assert revision_of(db_url) is None
    if made_at == "0001":
        store_first_revision_rows(db_url)

    engine = make_engine(db_url)
    try:
        outcome = schema.prepare(engine)
        expected = schema.head_revision() if made_at == "head" else made_at
        assert outcome.plan.adopt and outcome.plan.current == expected
        assert outcome.plan.action is (schema.Action.NOTHING if made_at == "head" else schema.Action.UPGRADE)
        with engine.connect() as conn:
            assert schema.current_revision(conn) == schema.head_revision()
            columns = {c["name"] for c in inspect(conn).get_columns("charging_sessions")}
        assert {"review_reason", "fee_waived_reason"} <= columns
        if made_at == "0001":
            with Session(engine) as s:
                check_first_revision_rows(s)
    finally:
        engine.dispose()


def _snapshot(url: str) -> tuple[str | None, dict[str, list[str]], dict[str, list[tuple]]]:
    """The revision, each table's columns (in order) and every row: what an upgrade that failed must
    leave exactly as it found it."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            names = sorted(insp.get_table_names())
            columns = {n: [c["name"] for c in insp.get_columns(n)] for n in names}
            rows = {n: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {n}"))), key=repr) for n in names}
            return schema.current_revision(conn), columns, rows
    finally:
        engine.dispose()


_CRASH_AFTER_ONE_COLUMN = """
import os, sys
from alembic.ddl.impl import DefaultImpl
from csms.db import schema
from csms.db.engine import make_engine
real = DefaultImpl.add_column
def add_one_column_then_die(self, *args, **kw):
    real(self, *args, **kw)
    os._exit(3)  # no rollback, no close: what a kill or a power cut leaves
DefaultImpl.add_column = add_one_column_then_die
schema.prepare(make_engine(sys.argv[1]))
"""


@pytest.mark.parametrize("how", ["error", "crash"])
def test_an_upgrade_that_fails_halfway_leaves_the_database_as_it_was(db_url, monkeypatch, how):
    """An error or a crash in the middle of a migration (here: after the first of 0003's five
    add_column, across three tables) rolls the whole upgrade back, alembic_version included. Without
    transactional DDL on SQLite the first column stayed, the version still said 0002, and every later
    start failed on "duplicate column name"."""
    migrate_to(db_url, FIRST)
    store_first_revision_rows(db_url)
    migrate_to(db_url, "0002")
    before = _snapshot(db_url)
    assert before[0] == "0002" and "meter_seen_at" not in before[1]["transactions"]

    if how == "crash":
        died = subprocess.run(
            [sys.executable, "-c", _CRASH_AFTER_ONE_COLUMN, db_url], capture_output=True, text=True, timeout=60
        )
        assert died.returncode == 3, died.stderr
    else:
        real_add_column = DefaultImpl.add_column

        def add_one_column_then_fail(self, *args, **kw):
            real_add_column(self, *args, **kw)
            raise RuntimeError("simulated error in the middle of a migration")

        monkeypatch.setattr(DefaultImpl, "add_column", add_one_column_then_fail)
        engine = make_engine(db_url)
        try:
            with pytest.raises(RuntimeError, match="simulated error"):
                schema.prepare(engine)
        finally:
            engine.dispose()
        monkeypatch.undo()
    assert _snapshot(db_url) == before  # no column added, still 0002, every row as it was

    engine = make_engine(db_url)
    try:
        assert schema.prepare(engine).plan.action is schema.Action.UPGRADE  # the next start upgrades
        with engine.connect() as conn:
            assert schema.current_revision(conn) == schema.head_revision()
        with Session(engine) as s:
            check_first_revision_rows(s)
    finally:
        engine.dispose()


def test_tables_older_than_the_first_revision_are_refused_not_guessed(db_url):
    migrate_to(db_url, FIRST, keep_version=False)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE audit_events"))
        with pytest.raises(schema.SchemaError, match="do not match even the first revision"):
            schema.prepare(engine)
        assert "charge_point_passwords" not in inspect(engine).get_table_names()  # nothing was done
    finally:
        engine.dispose()


def test_a_database_at_head_without_a_column_of_the_models_is_reported_at_start(db_url, caplog):
    """A migration edited after a database ran it (or a table altered by hand): the version says head,
    the tables disagree. Said at start, not at the first query that fails."""
    migrate_to(db_url, "head")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE charging_sessions DROP COLUMN fee_waived_reason"))
        with caplog.at_level("WARNING", logger="csms.schema"):
            assert schema.prepare(engine).plan.action is schema.Action.NOTHING
        assert "csms.schema_drift" in caplog.text and "charging_sessions: fee_waived_reason" in caplog.text
        caplog.clear()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE charging_sessions ADD COLUMN fee_waived_reason TEXT"))
        schema.prepare(engine)
        assert "csms.schema_drift" not in caplog.text
    finally:
        engine.dispose()


def test_a_database_newer_than_the_code_is_refused_by_csms_db_upgrade(db_url):
    migrate_to(db_url, "head")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    done = _csms("db", "upgrade", "--db", db_url)
    assert done.returncode == 1
    assert "9999" in done.stderr and schema.head_revision() in done.stderr and "newer csms" in done.stderr
    assert revision_of(db_url) == "9999"
    current = _csms("db", "current", "--db", db_url)
    assert current.returncode == 1 and "NEWER" in current.stdout


def test_an_older_database_is_left_alone_when_upgrades_at_start_are_off(db_url):
    migrate_to(db_url, FIRST)
    engine = make_engine(db_url)
    try:
        with pytest.raises(schema.SchemaError, match="csms db upgrade --db"):
            schema.prepare(engine, upgrade_older=False)
    finally:
        engine.dispose()
    assert revision_of(db_url) == FIRST


def test_concurrent_starts_on_one_database_take_turns(db_url):
    """Cluster nodes or test workers starting together: one creates the tables, the others wait for
    the advisory lock (PostgreSQL) or the write lock of BEGIN IMMEDIATE (SQLite) and find them at
    head (without it, they race to CREATE TABLE and fail)."""
    n = 5
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def start(i: int) -> None:
        engine = make_engine(db_url)
        try:
            with engine.connect():
                pass  # connected before the barrier: the starts overlap
            barrier.wait()
            results[i] = schema.prepare(engine).plan.action
        except Exception as exc:  # collected and asserted below
            results[i] = exc
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(str(r) for r in results) == sorted(
        [str(schema.Action.CREATE)] + [str(schema.Action.NOTHING)] * (n - 1)
    ), results
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(text("count(*)")).select_from(text(schema.VERSION_TABLE))).scalar() == 1
    engine.dispose()
