"""The pure bounds on what one charge point may cost: connector ids, and its message-rate bucket across connections."""

from __future__ import annotations

from csms.core.connector_limit import CODE, connector_problem
from ocppj.connection import TokenBucket, TokenBuckets


def test_connector_ids_0_to_the_limit_pass_and_others_say_which_field_and_how_to_raise_it():
    assert connector_problem(10, connectorId=0) is None
    assert connector_problem(10, connectorId=10, evseId=10) is None
    assert connector_problem(10, **{"evse.id": None, "evse.connectorId": None}) is None  # absent fields
    why = connector_problem(10, evseId=1, connectorId=11)
    assert why is not None and why.startswith("connectorId 11 is outside 0..10")
    assert "--max-connectors-per-charger" in why
    assert connector_problem(10, connectorId=-1) is not None
    assert connector_problem(10, connectorId=2**31 - 1) is not None
    assert CODE == "PropertyConstraintViolation"  # an invalid value, in OCPP-J 1.6 and 2.0.1 alike


def test_a_peer_gets_the_same_bucket_back_so_reconnecting_buys_no_new_burst():
    buckets = TokenBuckets(size=10)
    first = buckets.get("CP1", rate=1.0, burst=3, now=0.0)
    assert [first.take(0.0) for _ in range(4)] == [True, True, True, False]
    again = buckets.get("CP1", rate=1.0, burst=3, now=0.5)
    assert again is first and not again.take(0.5)
    assert again.take(1.0)  # refilled by the rate only
    assert buckets.get("CP2", rate=1.0, burst=3, now=1.0) is not first


def test_past_its_size_the_store_forgets_refilled_buckets_first_then_the_least_recently_handed_out():
    buckets = TokenBuckets(size=3)
    a = buckets.get("A", 1.0, 5, 0.0)
    buckets.get("B", 1.0, 5, 0.0)
    c = buckets.get("C", 1.0, 5, 0.0)
    for bucket in (a, c):
        for _ in range(5):
            bucket.take(0.0)
    buckets.get("A", 1.0, 5, 1.0)  # handed out again: A is now the most recent
    d = buckets.get("D", 1.0, 5, 1.0)
    assert len(buckets) == 3
    assert buckets.get("A", 1.0, 5, 1.0) is a and buckets.get("C", 1.0, 5, 1.0) is c  # B was full: forgotten
    d.take(1.0)
    buckets.get("E", 1.0, 5, 1.0)  # none full now: the one handed out longest ago (D) goes
    assert len(buckets) == 3
    assert buckets.get("A", 1.0, 5, 1.0) is a and buckets.get("C", 1.0, 5, 1.0) is c
    assert buckets.get("D", 1.0, 5, 1.0) is not d


def test_a_bucket_is_full_once_the_rate_has_refilled_its_burst():
    bucket = TokenBucket(rate=2.0, burst=4, now=0.0)
    assert bucket.full(0.0)
    assert bucket.take(0.0) and not bucket.full(0.0)
    assert not bucket.full(0.4) and bucket.full(0.5)
