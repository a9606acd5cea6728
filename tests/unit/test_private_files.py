"""What an attacker on the same host or in the log could read: the SQLite file is private, tokens never logged."""

from __future__ import annotations

import logging
import os
import stat

from csms.db.engine import make_engine, make_migration_engine
from csms.logs import setup_logging


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path):
    for make in (make_engine, make_migration_engine):
        path = tmp_path / f"{make.__name__}.db"
        engine = make(f"sqlite:///{path}")
        assert engine is not None
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
            conn.commit()
            # SQLite gives the WAL and shared-memory files the database file's mode: they hold its pages too.
            files = [f for f in (path, tmp_path / f"{path.name}-wal", tmp_path / f"{path.name}-shm") if f.exists()]
            modes = {f.name: stat.S_IMODE(os.stat(f).st_mode) for f in files}
        engine.dispose()
        assert modes == {f.name: 0o600 for f in files}, make
        if make is make_engine:  # WAL mode: all three files were there
            assert len(modes) == 3, modes


def test_an_existing_database_keeps_its_mode(tmp_path):
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_debug_logging_leaves_the_header_printing_libraries_quiet():
    root = logging.getLogger()
    saved = (
        root.level,
        list(root.handlers),
        {n: logging.getLogger(n).level for n in ("hpack", "h2", "h11", "httpcore", "httpx")},
    )
    try:
        setup_logging("DEBUG")
        assert logging.getLogger().level == logging.DEBUG
        for name in ("hpack", "h2", "h11", "httpcore", "httpx"):
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
