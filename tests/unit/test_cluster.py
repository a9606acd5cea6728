"""The pure rules of cluster mode: leases, whose presence counts, what a node writes, forwarded errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.cluster.forwarding import answer_of, raise_for, result_of
from csms.cluster.node import ClusterConfigError, check_cluster_settings
from csms.cluster.presence import (
    ConnectorState,
    Presence,
    check_node_id,
    connectors_from_json,
    connectors_to_json,
    lease_valid,
    live_presences,
    plan_presence,
)
from ocppj import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
)

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=5)


def _p(cp: str, node: str, at: float = 0.0, seen: float = 0.0, **connectors: str) -> Presence:
    return Presence(
        cp,
        node,
        T0 + timedelta(seconds=at),
        T0 + timedelta(seconds=seen),
        {int(c[1:]): ConnectorState(s, "NoError", T0) for c, s in connectors.items()},
    )


# ------------------------------------------------------------------ leases
def test_a_lease_counts_until_its_last_instant_only():
    until = T0 + timedelta(seconds=5)
    assert lease_valid(until, T0)
    assert lease_valid(until, until - timedelta(microseconds=1))
    assert not lease_valid(until, until)  # the instant itself is already too late
    assert not lease_valid(None, T0)  # a node never seen has no word


def test_a_dead_nodes_charge_points_do_not_count():
    leases = {"a": T0 + timedelta(seconds=5), "b": T0 - timedelta(seconds=1)}
    rows = [_p("CP1", "a", c1="Charging"), _p("CP2", "b", c1="Available"), _p("CP3", "gone")]
    live = live_presences(rows, leases, T0)
    assert set(live) == {"CP1"}  # CP2's node b expired, CP3's node has no lease at all
    assert live_presences(rows, leases, T0 + timedelta(seconds=5)) == {}


def test_a_nodes_own_rows_are_left_to_its_registry():
    leases = {"a": T0 + timedelta(seconds=5), "b": T0 + timedelta(seconds=5)}
    live = live_presences([_p("CP1", "a"), _p("CP2", "b")], leases, T0, own_node="a")
    assert set(live) == {"CP2"}


def test_the_newest_connection_of_a_charge_point_wins():
    leases = {"a": T0 + timedelta(seconds=5), "b": T0 + timedelta(seconds=5)}
    older, newer = _p("CP1", "a", at=1), _p("CP1", "b", at=2)
    assert live_presences([older, newer], leases, T0)["CP1"].node_id == "b"
    assert live_presences([newer, older], leases, T0)["CP1"].node_id == "b"


# ------------------------------------------------------------------ what a node writes
def test_a_new_connection_is_written_and_a_gone_one_deleted():
    plan = plan_presence({"OLD": _p("OLD", "a")}, {"NEW": _p("NEW", "a")}, last_seen_step=STEP)
    assert [p.charge_point_id for p in plan.upserts] == ["NEW"] and plan.deletes == ("OLD",)


def test_nothing_changed_nothing_written():
    same = {"CP1": _p("CP1", "a", seen=1, c1="Available")}
    plan = plan_presence(same, {"CP1": _p("CP1", "a", seen=1, c1="Available")}, last_seen_step=STEP)
    assert not plan and plan.upserts == () and plan.deletes == ()


def test_a_status_change_is_written_at_once():
    before = {"CP1": _p("CP1", "a", c1="Available")}
    plan = plan_presence(before, {"CP1": _p("CP1", "a", c1="Charging")}, last_seen_step=STEP)
    assert [p.connectors[1].status for p in plan.upserts] == ["Charging"]


def test_last_seen_is_batched_not_written_per_frame():
    before = {"CP1": _p("CP1", "a", seen=0)}
    assert not plan_presence(before, {"CP1": _p("CP1", "a", seen=4.9)}, last_seen_step=STEP)
    assert plan_presence(before, {"CP1": _p("CP1", "a", seen=5)}, last_seen_step=STEP).upserts


def test_a_reconnect_is_written_even_with_the_same_statuses():
    before = {"CP1": _p("CP1", "a", at=0, c1="Available")}
    plan = plan_presence(before, {"CP1": _p("CP1", "a", at=3, c1="Available")}, last_seen_step=STEP)
    assert len(plan.upserts) == 1


def test_connector_states_survive_json():
    states = {1: ConnectorState("Charging", "NoError", T0), 2: ConnectorState("Faulted", None, T0)}
    assert connectors_from_json(connectors_to_json(states)) == states
    assert connectors_from_json({"x": {}, "3": {"status": "Available"}}) == {}  # unreadable entries left out
    assert connectors_from_json(None) == {}


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("node_id", ["a", "node-1", "N_2", "x" * 40])
def test_good_node_ids(node_id):
    assert check_node_id(node_id) is None


@pytest.mark.parametrize("node_id", ["", "x" * 41, "a b", "a;DROP", "ä"])
def test_bad_node_ids(node_id):
    assert check_node_id(node_id) is not None


def test_cluster_mode_needs_postgresql():
    check_cluster_settings("a", "postgresql+psycopg://u@h/db")
    check_cluster_settings("a", "postgres://u@h/db")
    with pytest.raises(ClusterConfigError, match="PostgreSQL"):
        check_cluster_settings("a", "sqlite:///x.db")
    with pytest.raises(ClusterConfigError, match="node id"):
        check_cluster_settings("a b", "postgresql://u@h/db")


# ------------------------------------------------------------------ forwarded answers
def test_a_result_comes_back_as_it_was():
    assert raise_for(result_of({"status": "Accepted"}), "UnlockConnector", "CP1", 5) == {"status": "Accepted"}


@pytest.mark.parametrize(
    "exc",
    [
        CallTimeoutError("Reset", "u1", 3.0, "CP1"),
        CallErrorReceived("Reset", "NotSupported", "no", {"k": 1}),
        OcppCallError("FormationViolation", "bad payload"),
        InvalidResponseError("CP1 answered Reset with an invalid payload"),
        ConnectionClosedError("connection to CP1 is closed"),
    ],
)
def test_an_error_on_the_holding_node_is_raised_the_same_on_the_asking_node(exc):
    with pytest.raises(type(exc)) as raised:
        raise_for(answer_of(exc), "Reset", "CP1", 3.0)
    assert str(raised.value) == str(exc)


# ------------------------------------------------------------------ the registry in a cluster
def test_the_registry_answers_for_other_nodes_charge_points_but_acts_on_its_own():
    from csms.ocpp.registry import Registry, RemoteChargePoint

    reg = Registry()
    remote = RemoteChargePoint("CP9", "b", connection=None, connected_at=T0, last_seen=T0)
    assert reg.get("CP9") is None and not reg.is_connected("CP9")  # a single node: as before
    reg.elsewhere = lambda cp_id: remote if cp_id == "CP9" else None
    reg.everyone_else = lambda: [remote]
    assert reg.get("CP9") is remote and reg.is_connected("CP9")
    assert reg.local("CP9") is None  # maintenance never pings, asks or closes another node's socket
    assert list(reg) == [] and len(reg) == 0 and reg.all_live() == [remote]
    with remote.asking_status(1, lambda: T0):  # the holding node marks its own status asks
        pass


def test_a_nodes_view_follows_the_changed_rows():
    from csms.cluster.presence import PresenceChange, apply_changes

    view = apply_changes({}, [PresenceChange(_p("CP1", "a")), PresenceChange(_p("CP2", "b"))], own_node="b", full=True)
    assert set(view) == {"CP1"}  # its own rows are left to its registry
    view = apply_changes(view, [PresenceChange(_p("CP3", "a", c1="Charging"))], own_node="b")
    assert set(view) == {"CP1", "CP3"}  # an incremental read adds to what was known
    view = apply_changes(view, [PresenceChange(_p("CP1", "a"), gone=True)], own_node="b")
    assert set(view) == {"CP3"}  # a tombstone: it left node a
    view = apply_changes(view, [PresenceChange(_p("CP3", "b", at=9))], own_node="b")
    assert view == {}  # it moved here
    view = apply_changes({"OLD": _p("OLD", "a")}, [PresenceChange(_p("CP4", "c"))], own_node="b", full=True)
    assert set(view) == {"CP4"}  # a full read forgets what it no longer finds


async def test_find_asks_the_database_only_for_a_charge_point_in_no_view():
    from csms.ocpp.registry import Registry, RemoteChargePoint

    reg = Registry()
    assert await reg.find("CP9") is None  # a single node: as get
    remote = RemoteChargePoint("CP9", "b", connection=None, connected_at=T0, last_seen=T0)
    asked = []

    async def look_up(cp_id):
        asked.append(cp_id)
        return remote if cp_id == "CP9" else None

    reg.look_up = look_up
    assert await reg.find("CP9") is remote and await reg.find("CP8") is None
    reg.elsewhere = lambda cp_id: remote
    assert await reg.find("CP9") is remote and asked == ["CP9", "CP8"]  # in the view: no database trip
    assert await reg.find("CP9", fresh=True) is remote and asked == ["CP9", "CP8", "CP9"]  # as of now


# ------------------------------------------------------------------ review findings (issue 13)
def test_a_newer_connection_read_from_another_node_closes_the_leftover_here():
    from dataclasses import replace

    from csms.cluster.presence import PresenceChange, replaced_elsewhere

    def seen(p: Presence, at: float) -> Presence:  # as read back: when the database first saw that connection
        return replace(p, first_seen=T0 + timedelta(seconds=at))

    local = {"CP1": T0, "CP2": T0 + timedelta(seconds=10), "CP3": T0, "CP4": T0, "CP6": T0}
    changes = [
        PresenceChange(
            seen(_p("CP1", "b", at=-60), 5)
        ),  # first seen after ours (b's clock is behind): ours is a leftover
        PresenceChange(seen(_p("CP2", "b", at=60), 5)),  # first seen before ours: ours wins (we write it)
        PresenceChange(seen(_p("CP3", "b", at=5), 5), gone=True),  # it left b: nothing to say about ours
        PresenceChange(seen(_p("CP4", "a", at=5), 5)),  # our own row
        PresenceChange(seen(_p("CP5", "b", at=5), 5)),  # not held here
        PresenceChange(_p("CP6", "b", at=5)),  # a row from before first_seen_at: not judged by node clocks
    ]
    assert replaced_elsewhere(changes, local, own_node="a") == ["CP1"]


def test_start_in_flight_and_probe_answer_are_published_and_read_back_small():
    from csms.cluster.presence import signals_from_json

    probe = T0 + timedelta(seconds=3)
    before = _p("CP1", "a", c1="Available")
    starting = Presence("CP1", "a", T0, T0, before.connectors, frozenset({1}))
    probed = Presence("CP1", "a", T0, T0, before.connectors, frozenset(), probe)
    assert plan_presence({"CP1": before}, {"CP1": starting}, last_seen_step=STEP).upserts == (starting,)
    assert plan_presence({"CP1": before}, {"CP1": probed}, last_seen_step=STEP).upserts == (probed,)
    assert set(connectors_to_json(before.connectors)) == {"1"}  # nothing extra when unset
    data = connectors_to_json(before.connectors, starting={1}, probe_answered=probe)
    assert connectors_from_json(data) == before.connectors  # older readers skip the extra keys
    assert signals_from_json(data) == (frozenset({1}), probe)
    assert signals_from_json({"starting": "x", "probe": 3}) == (frozenset(), None)


def test_a_201_stations_version_and_transactions_are_published_and_read_back():
    from csms.cluster.presence import version_from_json

    before = _p("CP1", "a", c1="Occupied")
    after = Presence("CP1", "a", T0, T0, before.connectors, ocpp="2.0.1", station_tx={1: "tx-9f"})
    assert plan_presence({"CP1": before}, {"CP1": after}, last_seen_step=STEP).upserts == (after,)
    data = connectors_to_json(after.connectors, ocpp="2.0.1", station_tx={1: "tx-9f"})
    assert connectors_from_json(data) == before.connectors  # older readers skip the extra keys
    assert version_from_json(data) == ("2.0.1", {1: "tx-9f"})
    assert version_from_json(connectors_to_json(before.connectors)) == ("1.6", {})  # a 1.6 row stays as it was
    assert version_from_json({"ocpp": 3, "stationTx": ["x"]}) == ("1.6", {})
    # A status inferred from a transaction's events says which: another node drops it with that transaction.
    inferred = {1: ConnectorState("Charging", "NoError", T0, transaction_id=7)}
    assert connectors_from_json(connectors_to_json(inferred)) == inferred


async def test_a_forwarded_call_is_built_and_checked_in_the_stations_version():
    from ocpp.v201 import call as v201_call
    from ocpp.v201 import call_result as v201_result

    from csms.cluster.forwarding import RemoteConnection
    from ocppj import V201

    class Holder:
        sent: list[tuple[str, dict]] = []

        async def forward(self, node_id, cp_id, action, payload, timeout):
            self.sent.append((action, payload))
            return result_of({"status": "Unlocked"})

    conn = RemoteConnection(Holder(), "b", "CP1", 5.0, V201)
    answer = await conn.call(v201_call.UnlockConnector(evse_id=1, connector_id=1))
    assert isinstance(answer, v201_result.UnlockConnector) and answer.status == "Unlocked"
    assert Holder.sent == [("UnlockConnector", {"evseId": 1, "connectorId": 1})]
    with pytest.raises(OcppCallError):  # a 1.6 payload fails here, against the 2.0.1 schema, as it would locally
        await conn.call_raw("UnlockConnector", {"connectorId": 1})


def test_a_remote_charge_point_gives_occupancy_the_same_signals_as_a_local_one():
    from csms.ocpp.registry import LiveChargePoint, RemoteChargePoint

    probe = T0 + timedelta(seconds=1)
    remote = RemoteChargePoint("CP1", "b", None, T0, T0, starts_in_flight={1: 1}, reconnect_probe_answered=probe)
    local = LiveChargePoint("CP1", None, T0, T0, 60, reconnect_probe_answered=probe)  # type: ignore[arg-type]
    settle = timedelta(seconds=30)
    assert remote.settle_window(settle) == local.settle_window(settle) == timedelta(seconds=3)
    assert RemoteChargePoint("CP2", "b", None, T0, T0).settle_window(settle) == settle
    assert remote.starts_in_flight.get(1)


def test_a_start_in_flight_is_published_at_once():
    from csms.ocpp.registry import LiveChargePoint

    told = []
    live = LiveChargePoint("CP1", None, T0, T0, 60, on_change=lambda: told.append(1))  # type: ignore[arg-type]
    with live.starting(1):
        assert told == [1]
    assert told == [1, 1] and live.starts_in_flight == {}


async def test_look_up_keeps_the_newer_lease_and_a_slow_database_answers_not_known():
    import types

    import trio

    from csms.cluster.node import ClusterNode, _View
    from csms.cluster.presence import PresenceChange

    node = object.__new__(ClusterNode)
    node.node_id = "a"
    node.ctx = types.SimpleNamespace(settings=types.SimpleNamespace(call_timeout_seconds=5))
    newer, older = T0 + timedelta(seconds=9), T0 + timedelta(seconds=5)
    node._view = _View({}, {"b": newer}, T0, 0.0)
    answer = (PresenceChange(_p("CP1", "b")), older, T0)

    async def db(fn, *args, timeout=None):
        return answer

    node._db = db
    assert (await node.look_up("CP1")).node_id == "b"
    assert node._view.leases["b"] == newer  # an older lease read later does not shorten a newer one
    answer = (PresenceChange(_p("CP1", "b")), T0 + timedelta(seconds=20), T0)
    await node.look_up("CP1")
    assert node._view.leases["b"] == T0 + timedelta(seconds=20)

    async def slow(fn, *args, timeout=None):
        raise trio.TooSlowError

    node._db = slow
    assert await node.look_up("CP2") is None


async def test_a_connection_that_stops_answering_is_given_up(monkeypatch):
    import time
    import types

    import trio

    from csms.cluster import node as node_module

    monkeypatch.setattr(node_module, "_LIVENESS_SECONDS", 0.2)
    node = object.__new__(node_module.ClusterNode)
    hung = types.SimpleNamespace(execute=lambda q: time.sleep(1.0))  # a silently dead TCP peer
    with pytest.raises(OSError, match="did not answer"), trio.fail_after(0.9):
        await node._ping(hung, trio.CapacityLimiter(1), "duty")
    await node._ping(types.SimpleNamespace(execute=lambda q: None), trio.CapacityLimiter(1), "duty")


async def test_idle_session_timeout_is_skipped_on_postgresql_before_14(caplog):
    import types

    import psycopg
    import trio

    from csms.cluster.node import ClusterNode

    asked = []

    def execute(q):
        asked.append(q)
        raise psycopg.errors.UndefinedObject('unrecognized configuration parameter "idle_session_timeout"')

    node = object.__new__(ClusterNode)
    node.node_id, node._idle_timeout_unsupported = "a", False
    conn = types.SimpleNamespace(execute=execute)
    for _ in range(2):
        await node._limit_idle_session(conn, trio.CapacityLimiter(1))
    assert len(asked) == 1  # asked, refused, then not asked again
    assert caplog.text.count("cluster.idle_session_timeout_unsupported") == 1
