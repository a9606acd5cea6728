"""The cluster's SQL against PostgreSQL (csms.cluster.store): leases, presence rows, tombstones, calls."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from csms.cluster import store
from csms.cluster.presence import ConnectorState, Presence, apply_changes
from csms.db.engine import make_engine
from csms.db.schema import prepare
from ocppj import V16

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]


@pytest.fixture
def pg(db_url):  # a schema of its own (tests/conftest.py); cluster mode is PostgreSQL only
    engine = make_engine(db_url)
    prepare(engine)
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
    seen = _tx(pg, store.write_presence, "a", [_p("CP1", "a", at=NOW)], []).first_seen["CP1"]
    assert _tx(pg, store.write_presence, "b", [_p("CP1", "b", at=NOW + timedelta(seconds=1))], []).lost == set()
    # Node a, not yet aware, refreshes its older connection (as first seen): refused, and told so.
    again = replace(_p("CP1", "a", "Charging", at=NOW), first_seen=seen)
    assert _tx(pg, store.write_presence, "a", [again], []).lost == {"CP1"}
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
    seen = _tx(pg, store.write_presence, "a", [_p("CP1", "a", at=NOW)], []).first_seen["CP1"]
    _tx(pg, store.write_presence, "b", [_p("CP1", "b", at=NOW + timedelta(seconds=1))], [])
    # Node a's socket is half-open and never changes, so it writes nothing: its read tells it.
    changes = _tx(pg, store.load_snapshot, "a", NOW - timedelta(seconds=5)).changes
    assert replaced_elsewhere(changes, {"CP1": seen}, own_node="a") == ["CP1"]


def test_the_newer_connection_wins_by_the_databases_clock_whatever_the_nodes_clocks_say(pg):
    """Node a's clock runs a minute ahead: its old connection's connected_at is later than that of the charger's
    newer connection on node b. The database saw b's later, so b's row stands and a learns its socket is a
    leftover (before: b's write was refused, and b closed the charger's live socket)."""
    from csms.cluster.presence import replaced_elsewhere

    for node in ("a", "b"):
        _tx(pg, store.renew_lease, node, 5.0)
    seen = _tx(pg, store.write_presence, "a", [_p("CP1", "a", at=NOW + timedelta(seconds=60))], []).first_seen["CP1"]
    newer = _tx(pg, store.write_presence, "b", [_p("CP1", "b", at=NOW + timedelta(seconds=1))], [])
    assert newer.lost == set() and newer.first_seen["CP1"] > seen
    old = replace(_p("CP1", "a", "Charging", at=NOW + timedelta(seconds=60)), first_seen=seen)
    assert _tx(pg, store.write_presence, "a", [old], []).lost == {"CP1"}
    changes = _tx(pg, store.load_snapshot, "a", NOW - timedelta(seconds=5)).changes
    assert replaced_elsewhere(changes, {"CP1": seen}, own_node="a") == ["CP1"]
    # Node b refreshing its own connection keeps the time the database first saw it, also when b did not learn
    # it (its read after the write failed) and sends none.
    again = _p("CP1", "b", "Charging", at=NOW + timedelta(seconds=1))
    assert _tx(pg, store.write_presence, "b", [again], []).first_seen == newer.first_seen


def test_a_connection_written_late_is_dated_by_its_age_not_by_its_write(pg):
    """Node a took a connection 10 s ago but could not write it (a stall); the charger gave up and connected to
    node b 5 s ago, which wrote at once. a's late first write says its connection is 10 s old: older than b's,
    so it is refused and a closes its leftover (dated by the write, it would have won, and b closed the live one)."""
    for node in ("a", "b"):
        _tx(pg, store.renew_lease, node, 5.0)
    b_clock, a_clock = NOW, NOW + timedelta(seconds=300)  # a's clock runs five minutes ahead: it cancels out
    b = _tx(pg, _write_at, "b", _p("CP1", "b", at=b_clock - timedelta(seconds=5)), b_clock)
    a = _tx(pg, _write_at, "a", _p("CP1", "a", at=a_clock - timedelta(seconds=10)), a_clock)
    assert b.lost == set() and a.lost == {"CP1"}


def _write_at(s, node, presence, now):
    return store.write_presence(s, node, [presence], [], now=now)


async def test_a_node_closes_its_half_open_socket_when_its_read_shows_a_newer_connection(pg, db_url):
    """The node's round wires the rule: its own row unchanged (a half-open socket writes nothing), it still
    learns from reading node b's newer row, detaches its connection and closes the socket."""
    import types

    import trio

    from csms.cluster.node import ClusterNode
    from csms.ocpp.registry import LiveChargePoint, Registry

    closed = []

    class Ws:
        async def aclose(self, code, reason):
            closed.append((code, reason))

    settings = types.SimpleNamespace(
        cluster_refresh_seconds=0.5, cluster_lease_seconds=5.0, db_url=db_url, call_timeout_seconds=5
    )
    ctx = types.SimpleNamespace(
        settings=settings,
        registry=Registry(),
        accepted_charge_points=set(),
        known_charge_points=set(),
        db=types.SimpleNamespace(sessions=lambda: Session(pg)),
        clock=types.SimpleNamespace(now=lambda: datetime.now(UTC)),
    )
    node = ClusterNode(ctx, "a")
    ctx.registry.on_change = node._mark_changed
    connected = datetime.now(UTC)
    live = LiveChargePoint("CP1", types.SimpleNamespace(ws=Ws(), version=V16), connected, connected, 60)
    ctx.registry.attach(live)
    async with trio.open_nursery() as nursery:
        node._nursery = nursery
        await node._round()  # published, held here
        assert ctx.registry.local("CP1") is live
        _tx(pg, store.renew_lease, "b", 5.0)
        _tx(pg, store.write_presence, "b", [_p("CP1", "b", at=connected + timedelta(seconds=1))], [])
        # A burst of REST look-ups holds every per-request worker: the lease renewal does not wait for them.
        for i in range(node._db_limiter.total_tokens):
            await node._db_limiter.acquire_on_behalf_of(f"request{i}")
        with trio.fail_after(5):
            await node._round()  # nothing of a's changed: only the read can tell
    assert ctx.registry.local("CP1") is None and closed == [(1000, "replaced by a connection on another node")]


def test_the_clusters_own_connections_carry_tcp_keepalives(db_url):
    import psycopg

    from csms.cluster.node import _KEEPALIVES
    from csms.db.engine import normalise_url

    url = make_url(normalise_url(db_url)).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, **_KEEPALIVES) as conn:
        options = {o.keyword.decode(): o.val for o in conn.pgconn.info}
    assert options["keepalives_idle"] == b"10" and options["tcp_user_timeout"] == b"15000"
