"""The cluster's SQL against PostgreSQL (csms.cluster.store): leases, presence rows, tombstones, calls."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from csms.cluster import store
from csms.cluster.presence import ConnectorState, Presence, apply_changes
from csms.db.engine import create_schema, make_engine

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]


@pytest.fixture
def pg(db_url):  # a schema of its own (tests/conftest.py); cluster mode is PostgreSQL only
    engine = make_engine(db_url)
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _tx(engine, fn, *args):
    with Session(engine) as s, s.begin():
        return fn(s, *args)


NOW = datetime.now(UTC)


def _p(cp: str, node: str, status: str = "Available", at: datetime = NOW) -> Presence:
    return Presence(cp, node, at, at, {1: ConnectorState(status, "NoError", at)})


def test_other_nodes_rows_are_read_whole_then_by_change(pg):
    assert _tx(pg, store.renew_lease, "a", 5.0) is True  # a new node: nothing of it counted before
    assert _tx(pg, store.renew_lease, "a", 5.0) is False
    _tx(pg, store.write_presence, "a", [_p("CP1", "a"), _p("CP2", "a")], [])
    snap = _tx(pg, store.load_snapshot, "b", None)
    view = apply_changes({}, snap.changes, own_node="b", full=True)
    assert set(view) == {"CP1", "CP2"} and view["CP1"].connectors[1].status == "Available"
    assert snap.leases["a"] > snap.now
    _tx(pg, store.write_presence, "a", [_p("CP1", "a", "Charging")], ["CP2"])  # a status, a disconnect
    changed = _tx(pg, store.load_snapshot, "b", snap.now - timedelta(seconds=2))
    view = apply_changes(view, changed.changes, own_node="b")
    assert set(view) == {"CP1"} and view["CP1"].connectors[1].status == "Charging"
    assert _tx(pg, store.load_snapshot, "a", None).changes == []  # a node does not read its own rows


def test_a_newer_connection_elsewhere_wins_and_the_old_node_hears_it(pg):
    for node in ("a", "b"):
        _tx(pg, store.renew_lease, node, 5.0)
    _tx(pg, store.write_presence, "a", [_p("CP1", "a", at=NOW)], [])
    assert _tx(pg, store.write_presence, "b", [_p("CP1", "b", at=NOW + timedelta(seconds=1))], []) == set()
    # Node a, not yet aware, refreshes its older connection: refused, and told so.
    assert _tx(pg, store.write_presence, "a", [_p("CP1", "a", "Charging", at=NOW)], []) == {"CP1"}
    # Its later disconnect does not bury node b's row either.
    _tx(pg, store.write_presence, "a", [], ["CP1"])
    view = apply_changes({}, _tx(pg, store.load_snapshot, "c", None).changes, own_node="c", full=True)
    assert view["CP1"].node_id == "b"


def test_a_lapsed_lease_is_reported_and_its_buried_rows_come_back_when_written_again(pg):
    _tx(pg, store.renew_lease, "a", 0.2)
    _tx(pg, store.write_presence, "a", [_p("CP1", "a")], [])
    time.sleep(0.3)
    buried, _ = _tx(pg, store.sweep)  # the duty holder, once a's lease ran out
    assert buried == 1
    assert _tx(pg, store.load_snapshot, "b", None).changes == []
    assert _tx(pg, store.renew_lease, "a", 5.0) is True  # node a learns it lapsed ...
    _tx(pg, store.write_presence, "a", [_p("CP1", "a")], [])  # ... and writes every connection again
    assert [c.presence.charge_point_id for c in _tx(pg, store.load_snapshot, "b", None).changes] == ["CP1"]


def test_a_forwarded_call_is_claimed_once_and_answered(pg):
    _tx(pg, store.send_call, "c1", "b", "a", "CP1", "Reset", {"type": "Soft"}, 5.0)
    assert _tx(pg, store.unclaimed_calls, "a") == ["c1"]
    claimed = _tx(pg, store.claim_call, "c1", "a")
    assert claimed is not None and claimed.action == "Reset" and claimed.payload == {"type": "Soft"}
    assert 0 < claimed.seconds_left <= 5.0
    assert _tx(pg, store.claim_call, "c1", "a") is None  # a repeated NOTIFY finds it taken
    assert _tx(pg, store.claim_call, "c1", "z") is None  # another node cannot take it
    assert _tx(pg, store.load_answer, "c1") is None
    _tx(pg, store.answer_call, "c1", "b", {"result": {"status": "Accepted"}})
    assert _tx(pg, store.load_answer, "c1") == {"result": {"status": "Accepted"}}


def test_one_charge_points_row_with_its_lease(pg):
    assert _tx(pg, store.load_presence, "CP1") is None
    _tx(pg, store.renew_lease, "a", 5.0)
    _tx(pg, store.write_presence, "a", [_p("CP1", "a", "Charging")], [])
    change, lease_until, now = _tx(pg, store.load_presence, "CP1")
    assert not change.gone and change.presence.node_id == "a" and change.presence.connectors[1].status == "Charging"
    assert now < lease_until


def test_a_start_in_flight_and_a_probe_answer_reach_the_other_nodes(pg):
    _tx(pg, store.renew_lease, "a", 5.0)
    p = _p("CP1", "a")
    _tx(pg, store.write_presence, "a", [Presence("CP1", "a", NOW, NOW, p.connectors, frozenset({1}), NOW)], [])
    (change,) = _tx(pg, store.load_snapshot, "b", None).changes
    assert change.presence.starting == {1} and change.presence.probe_answered == NOW
    change, _, _ = _tx(pg, store.load_presence, "CP1")
    assert change.presence.starting == {1} and change.presence.probe_answered == NOW


def test_the_old_node_learns_of_a_newer_connection_from_its_read_alone(pg):
    from csms.cluster.presence import replaced_elsewhere

    for node in ("a", "b"):
        _tx(pg, store.renew_lease, node, 5.0)
    _tx(pg, store.write_presence, "a", [_p("CP1", "a", at=NOW)], [])
    _tx(pg, store.write_presence, "b", [_p("CP1", "b", at=NOW + timedelta(seconds=1))], [])
    # Node a's socket is half-open and never changes, so it writes nothing: its read tells it.
    changes = _tx(pg, store.load_snapshot, "a", NOW - timedelta(seconds=5)).changes
    assert replaced_elsewhere(changes, {"CP1": NOW}, own_node="a") == ["CP1"]
