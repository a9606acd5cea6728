"""The one throttle of password guesses (csms.core.throttle): the chargers' handshake and the dashboard's sign-in."""

from __future__ import annotations

from csms.core.throttle import AttemptThrottle


def _throttle() -> AttemptThrottle:
    return AttemptThrottle(window=60, per_name_and_address=5, per_address=30, per_name=30)


def test_a_stranger_failing_on_purpose_cannot_lock_out_the_address_that_last_succeeded():
    t = _throttle()
    t.begin("CP1", "10.0.0.7", 0)
    t.succeeded("CP1", "10.0.0.7", 0)
    for i in range(30):  # a spread-out guess of CP1's password, from 30 addresses
        assert t.wait("CP1", f"10.1.0.{i}", 1) == 0
        t.begin("CP1", f"10.1.0.{i}", 1)
    assert t.wait("CP1", "10.9.9.9", 2) == 59  # any other address is held for the id ...
    assert t.trusted("CP1", "10.0.0.7") and t.trusted("cp1", "10.0.0.7") and not t.trusted("CP1", "10.9.9.9")
    assert t.wait("CP1", "10.0.0.7", 2) == 0  # ... but the charger, back from its address, is checked
    assert t.wait("CP1", "10.9.9.9", 61) == 0  # the guesses aged out


def test_the_trusted_address_keeps_its_own_limits():
    t = _throttle()
    t.begin("CP1", "10.0.0.7", 0)
    t.succeeded("CP1", "10.0.0.7", 0)
    for _ in range(5):
        t.begin("CP1", "10.0.0.7", 1)  # a guesser behind the charger's own NAT
    assert t.wait("CP1", "10.0.0.7", 2) == 59
    for i in range(30):
        t.begin(f"X{i}", "10.0.0.8", 3)
    assert t.wait("CP1", "10.0.0.8", 3) == 60  # one address trying many ids


def test_attempts_count_from_their_start_and_a_success_takes_back_only_its_own():
    t = _throttle()
    for _ in range(5):  # five at once, none answered yet: the sixth waits
        t.begin("CP2", "10.0.0.1", 10)
    assert t.wait("CP2", "10.0.0.1", 10) == 60
    for i in range(26):  # a stranger's guesses on CP2 from elsewhere
        t.begin("CP2", f"10.2.0.{i}", 10)
    t.succeeded("CP2", "10.0.0.1", 10)
    assert t.wait("CP2", "10.0.0.1", 10) == 0  # its own guesses from there forgiven
    assert t.wait("CP2", "10.3.0.1", 10) == 60  # the strangers' are not: 30 of 30 still count
    t.begin("CP3", "10.0.0.1", 11)
    assert t.wait("CP3", "10.0.0.1", 11) == 0  # and the address's bucket gave the success back: 5 of 30


def test_memory_stays_bounded_whatever_a_guesser_invents():
    t = _throttle()
    for i in range(40_000):
        t.begin(f"ID{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", i)
        t.succeeded(f"ID{i}", "10.0.0.1", i)
    assert len(t._attempts) <= 30_001 and len(t._last_good) <= 30_001
    assert t.trusted("ID39999", "10.0.0.1")  # the newest are kept


def test_without_a_name_bucket_guesses_from_many_addresses_lock_no_one_out():
    t = AttemptThrottle(window=60, per_name_and_address=5, per_address=30, per_name=None)
    for i in range(100):  # a spread-out guess of CP1's password, after the charger lost its trusted address
        t.begin("CP1", f"10.1.0.{i}", 1)
    assert t.wait("CP1", "10.9.9.9", 2) == 0  # the charger, back from a new address, is checked
    for _ in range(5):
        t.begin("CP1", "10.1.0.1", 2)
    assert t.wait("CP1", "10.1.0.1", 3) > 0  # the one id from the one address still is held


def test_an_attempt_never_checked_is_withdrawn_from_every_bucket():
    t = _throttle()
    for _ in range(5):
        t.begin("CP1", "10.0.0.7", 1)
        t.withdraw("CP1", "10.0.0.7", 1)  # cut off while waiting for a worker
    assert t.wait("CP1", "10.0.0.7", 2) == 0
    assert not t._attempts


def test_the_token_throttle_keeps_only_the_address_bucket():
    from csms.core.web_access import TokenThrottle

    t = TokenThrottle()
    for i in range(50):
        t.begin("", f"10.0.0.{i}", 1)
    assert all(key.startswith("a:") for key in t._attempts)  # no fleet-wide bucket of every failure
    assert t.wait("", "10.0.0.99", 2) == 0
