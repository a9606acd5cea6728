"""What one cluster node's presence round costs with N charge points held by another node.

    .venv/bin/python -m benchmarks.cluster_presence postgresql+psycopg://postgres@127.0.0.1:5432/test

Runs on a database of its own (created and dropped here). For 1,000, 5,000 and 10,000 charge
points (two connectors each) on node "x": the first write of all rows (a connect storm), a full
read (each node does one a minute) and the steady round (lease + the rows changed since the last
read) while 1% of the charge points change a status between rounds.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from csms.cluster import store
from csms.cluster.presence import ConnectorState, Presence, apply_changes
from csms.db.engine import make_engine, normalise_url
from csms.db.models import Base


def main(base: str) -> None:
    base = normalise_url(base)
    name = "presence_" + uuid.uuid4().hex[:8]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(base).set(database=name).render_as_string(hide_password=False))
    try:
        Base.metadata.create_all(engine)
        for n in (1000, 5000, 10000):
            _measure(engine, n)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _measure(engine, n: int) -> None:
    now = datetime.now(UTC)

    def states(second: str) -> dict[int, ConnectorState]:
        return {1: ConnectorState("Available", "NoError", now), 2: ConnectorState(second, "NoError", now)}

    with Session(engine) as s, s.begin():
        s.execute(text("DELETE FROM cluster_presence"))
        s.execute(text("DELETE FROM cluster_nodes"))
        store.renew_lease(s, "x", 3600)
        started = time.perf_counter()
        store.write_presence(s, "x", [Presence(f"CP{i:05d}", "x", now, now, states("Charging")) for i in range(n)], [])
        first_write = time.perf_counter() - started
    time.sleep(2.5)  # beyond the read margin: the steady state, not the storm
    started = time.perf_counter()
    with Session(engine) as s, s.begin():
        snap = store.load_snapshot(s, "me", None)
    view = apply_changes({}, snap.changes, own_node="me", full=True)
    full = time.perf_counter() - started
    rounds, rows = [], 0
    for k in range(7):
        with Session(engine) as s, s.begin():
            store.write_presence(
                s,
                "x",
                [
                    Presence(f"CP{i:05d}", "x", now, now, states("Finishing" if k % 2 else "Charging"))
                    for i in range(0, n, 100)
                ],
                [],
            )
        started = time.perf_counter()
        with Session(engine) as s, s.begin():
            store.renew_lease(s, "me", 5)
            snap = store.load_snapshot(s, "me", snap.now - timedelta(seconds=2))
        view = apply_changes(view, snap.changes, own_node="me")
        rounds.append(time.perf_counter() - started)
        rows = len(snap.changes)
        time.sleep(0.5)
    assert len(view) == n
    print(
        f"{n:>6} charge points on another node: first write {first_write * 1000:.0f} ms, full read "
        f"{full * 1000:.0f} ms, steady round median {sorted(rounds)[3] * 1000:.0f} ms ({rows} rows read)"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg://postgres@127.0.0.1:5432/test")
