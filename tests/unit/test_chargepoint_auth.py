"""The handshake rules of csms.core.chargepoint_auth: ids, password hashes, Basic credentials, decisions."""

from __future__ import annotations

import base64

import pytest

from csms.core.chargepoint_auth import (
    UNIFORM_REFUSAL,
    Access,
    Admit,
    BadCredentialsError,
    Refuse,
    charge_point_id_problem,
    checks_a_password,
    decide_handshake,
    hash_password,
    parse_basic_auth,
    password_problem,
    verify_password,
)

PASSWORD = "correct-horse-battery"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


@pytest.mark.parametrize("cp_id", ["CP001", "a" * 48, "Q3-UNL0001", "cp.1_x*=+|@"])
def test_valid_charge_point_ids(cp_id):
    assert charge_point_id_problem(cp_id) is None


@pytest.mark.parametrize("cp_id", ["", "a" * 49, "CP\nFORGED", "CP 1", "CP:1", "CP/1", "CP\x00", "CPé", "CP\u2028"])
def test_invalid_charge_point_ids(cp_id):
    assert charge_point_id_problem(cp_id)


def test_hash_is_salted_per_charge_point_and_never_the_password(stored):
    again = hash_password(PASSWORD)
    assert stored != again  # a fresh salt each time
    assert PASSWORD not in stored and stored.startswith("scrypt$16384$8$1$")
    assert verify_password(stored, PASSWORD) and verify_password(again, PASSWORD)


@pytest.mark.parametrize("attempt", ["", "correct-horse-batter", "correct-horse-battery ", "CORRECT-HORSE-BATTERY"])
def test_wrong_passwords_do_not_verify(stored, attempt):
    assert not verify_password(stored, attempt)


@pytest.mark.parametrize("garbage", ["", "plain", "md5$x$y$z$a$b", "scrypt$16384$8$1$!!!$???"])
def test_unreadable_hashes_never_verify(garbage):
    assert not verify_password(garbage, PASSWORD)


def test_password_policy():
    assert password_problem("x" * 15) and password_problem("x" * 41) and password_problem("sixteen chars ok")
    assert password_problem("x" * 16) is None and password_problem("x" * 40) is None


def test_parse_basic_auth():
    assert parse_basic_auth(basic("CP1", "pa:ss")) == ("CP1", "pa:ss")  # a colon in the password is fine
    for bad in ("Bearer abc", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        with pytest.raises(BadCredentialsError):
            parse_basic_auth(bad)


def decide(access, authorization=None, *, lab=False, slots=10):
    return decide_handshake("CP1", access, authorization, lab_mode=lab, registration_slots_left=slots)


@pytest.mark.parametrize("lab", [False, True])
def test_a_password_set_is_needed_lab_mode_or_not(stored, lab):
    access = Access(known=True, password_hash=stored)
    assert decide(access, basic("CP1", PASSWORD), lab=lab) == Admit(authenticated=True)
    missing = decide(access, None, lab=lab)
    assert isinstance(missing, Refuse) and (missing.status, missing.reason) == (401, "missing_credentials")
    assert missing.headers == [(b"WWW-Authenticate", b'Basic realm="OCPP", charset="UTF-8"')]
    for wrong in (basic("CP1", "wrong-password-123"), basic("CP2", PASSWORD), "Bearer x", "Basic %%%"):
        refused = decide(access, wrong, lab=lab)
        assert isinstance(refused, Refuse) and (refused.status, refused.reason) == (401, "bad_credentials")


def test_known_without_password_only_in_lab_mode():
    refused = decide(Access(known=True), None)
    assert isinstance(refused, Refuse) and (refused.status, refused.reason) == (401, "no_password_set")
    assert decide(Access(known=True), None, lab=True) == Admit(authenticated=False)


def test_unknown_ids_and_the_lab_mode_bound():
    refused = decide(Access(known=False), basic("CP1", PASSWORD))
    assert isinstance(refused, Refuse) and (refused.status, refused.reason) == (401, "unknown_charge_point")
    assert decide(Access(known=False), None, lab=True, slots=1) == Admit(authenticated=False, registers=True)
    full = decide(Access(known=False), None, lab=True, slots=0)
    assert isinstance(full, Refuse) and (full.status, full.reason) == (404, "auto_register_limit")


def test_outside_lab_mode_a_stranger_cannot_tell_unknown_from_known():
    """Unknown id, known without a password, missing or wrong credentials: the same status, body and challenge."""
    hashed = Access(known=True, password_hash=hash_password(PASSWORD))
    answers = [
        decide(Access(known=False), basic("CP1", PASSWORD)),
        decide(Access(known=True), None),
        decide(hashed, None),
        decide(hashed, basic("CP1", "wrong-password-0001")),
    ]
    assert all(isinstance(a, Refuse) for a in answers)
    assert {(a.status, a.body, tuple(a.headers)) for a in answers if isinstance(a, Refuse)} == {
        (401, UNIFORM_REFUSAL, ((b"WWW-Authenticate", b'Basic realm="OCPP", charset="UTF-8"'),))
    }
    assert len({a.reason for a in answers if isinstance(a, Refuse)}) == 4  # the log still says which


@pytest.mark.parametrize("access", [Access(known=False), Access(known=True)], ids=["unknown", "no_password"])
def test_outside_lab_mode_credentials_for_an_id_without_a_password_cost_a_password_check(access):
    """A wrong password of a provisioned id costs one scrypt (~60 ms); a refusal without a stored hash answered
    at once, so the time, not the body, told a stranger which ids have a password."""
    checked: list[str] = []

    def check(encoded: str, password: str) -> bool:
        checked.append(password)
        return verify_password(encoded, password)

    def run(authorization: str | None, *, lab: bool = False) -> Admit | Refuse:
        return decide_handshake(
            "CP1", access, authorization, lab_mode=lab, registration_slots_left=10, check_password=check
        )

    refused = run(basic("CP1", "guessed-password-01"))
    assert isinstance(refused, Refuse) and refused.status == 401 and checked == ["guessed-password-01"]
    assert checks_a_password(access, basic("CP1", "x"), lab_mode=False)  # so the server runs it off the event loop
    checked.clear()
    run(None)
    run(basic("CP2", "guessed-password-01"))
    run(basic("CP1", "x"), lab=True)
    assert checked == []  # as cheap as for a provisioned id: no credentials, another user, lab mode
    assert not checks_a_password(access, None, lab_mode=False)
