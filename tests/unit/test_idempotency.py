"""The Idempotency-Key rules (csms.core.idempotency), without a server or a database."""

from __future__ import annotations

import pytest

from csms.core.idempotency import Claim, Outcome, check_key, decide, fingerprint, kept_answer, stored_key

START = b'{"chargingStationId": "CP1", "connectorId": 1}'


def test_the_first_request_runs_the_same_again_replays_or_waits_another_is_refused():
    mine = fingerprint("POST", "/api/ChargingSession/start-charging-session?", "Bearer a", START)
    assert decide(None, mine) is Outcome.RUN
    assert decide(Claim(mine, done=False), mine) is Outcome.IN_PROGRESS
    assert decide(Claim(mine, done=True), mine) is Outcome.REPLAY
    other = fingerprint("POST", "/api/ChargingSession/start-charging-session?", "Bearer a", START + b" ")
    assert decide(Claim(other, done=True), mine) is Outcome.MISMATCH


@pytest.mark.parametrize(
    ("change"),
    [
        ("PUT", "/api/ChargingSession/start-charging-session?", "Bearer a", START),
        ("POST", "/api/ChargingSession/stop-charging-session?", "Bearer a", START),
        ("POST", "/api/ChargingSession/start-charging-session?x=1", "Bearer a", START),
        ("POST", "/api/ChargingSession/start-charging-session?", "Bearer b", START),  # another caller
        ("POST", "/api/ChargingSession/start-charging-session?", "Bearer a", b"{}"),
    ],
)
def test_any_part_of_the_request_makes_it_another(change):
    same = fingerprint("POST", "/api/ChargingSession/start-charging-session?", "Bearer a", START)
    assert fingerprint(*change) != same


def test_parts_do_not_run_into_each_other():
    assert fingerprint("POST", "/a", "b", b"c") != fingerprint("POST", "/ab", "", b"c")


@pytest.mark.parametrize(
    ("key", "ok"),
    [("0f8fad5b-d9cb-469f-a165-70867728950e", True), ("k", True), ("x" * 200, True), ("", False), ("x" * 201, False)]
    + [("with space", False), ("tab\there", False), ("ümlaut", False)],
)
def test_a_key_is_1_to_200_visible_ascii_characters(key, ok):
    assert (check_key(key) is None) is ok


@pytest.mark.parametrize("status", [200, 409, 400, 504, 500, 503])
def test_answers_of_a_command_that_ran_or_may_have_settle_the_key(status):
    """503 too: the database can fail after the charger was asked (a start's own bookkeeping after Accepted)."""
    assert kept_answer(status)


@pytest.mark.parametrize("status", [401, 403, 429])
def test_answers_of_a_command_that_did_not_run_give_the_key_back(status):
    assert not kept_answer(status)


def test_each_callers_keys_are_its_own():
    assert stored_key("token-a", "k1") != stored_key("token-b", "k1") and stored_key("token-a", "k1").endswith(":k1")
