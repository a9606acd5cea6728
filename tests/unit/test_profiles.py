"""CSMS profiles: ours agree with the flags they describe, and a bad file is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from csms.cli import build_parser
from scenarios.embedded import Timings
from scenarios.profile import CLAIMS, PROFILES_DIR, ProfileError, load_profile, profile_from_mapping


def test_the_default_profile_is_the_embedded_csms_timings():
    p, t = load_profile(), Timings()
    assert p.source.endswith("unstuck.toml") and p.claims == frozenset(CLAIMS)
    assert p.offline_after == t.offline_after
    assert (p.orphan_grace, p.status_grace) == (t.orphan_grace, t.status_grace)
    assert p.sweep_interval == t.maintenance_interval
    assert p.recovery_window == t.recovery_window
    assert (p.call_timeout, p.live_evidence) == (t.call_timeout, t.live_evidence)
    assert p.reservation_timeout == t.reservation_timeout_minutes * 60
    assert p.status_freshness == t.freshness_minutes * 60


def test_the_serve_profile_is_csms_serve_with_its_defaults():
    p = load_profile(PROFILES_DIR / "unstuck-serve.toml")
    d = build_parser().parse_args(["serve"])
    t = Timings(
        heartbeat_interval=d.heartbeat_interval,
        heartbeat_timeout_factor=d.heartbeat_timeout_factor,
        maintenance_interval=d.maintenance_interval_seconds,
        status_grace=d.status_grace_seconds,
        orphan_grace=d.orphan_grace_seconds,
        quiet_transaction=d.quiet_transaction_seconds,
        call_timeout=d.call_timeout_seconds,
    )
    assert p.offline_after == t.offline_after and p.recovery_window == t.recovery_window
    assert (p.orphan_grace, p.status_grace) == (t.orphan_grace, t.status_grace)
    assert p.sweep_interval == t.maintenance_interval
    assert (p.call_timeout, p.live_evidence) == (d.call_timeout_seconds, d.live_evidence_seconds)
    assert p.reservation_timeout == d.reservation_timeout_minutes * 60
    assert p.status_freshness == d.freshness_minutes * 60


def test_the_example_claims_less_and_derives_its_window():
    p = load_profile(PROFILES_DIR / "example.toml")
    assert p.claims == {"occupancy", "transactions", "remote_start"}
    assert p.unclaimed("sessions", "occupancy") == ["sessions"]
    # max(offline 90, orphan 120 + status 30) + 2 sweeps of 10 + 2
    assert p.recovery_window == 172.0


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"timings": {"orphan_grace": "2 minutes"}}, "timings.orphan_grace must be a number of seconds"),
        ({"timings": {"orphan_grace": -1}}, "timings.orphan_grace must be a number of seconds"),
        ({"timings": {"grace": 1}}, "unknown timing(s) grace"),
        ({"claims": {"billing": True}}, "unknown claim(s) billing"),
        ({"claims": {"sessions": "yes"}}, "claims.sessions must be true or false"),
        ({"claim": {}}, "unknown key(s) claim"),
        ({"timings": 5}, "[timings] must be a table"),
        ({"timings": {"offline_after": 40, "recovery_window": 2}}, "recovery_window (2 s) is shorter than offline"),
    ],
)
def test_a_bad_profile_says_what_is_wrong(data, says):
    with pytest.raises(ProfileError) as err:
        profile_from_mapping(data, source="their.toml")
    assert str(err.value).startswith("CSMS profile their.toml: ") and says in str(err.value)


def test_a_missing_or_broken_file_is_one_clear_error(tmp_path: Path):
    with pytest.raises(ProfileError, match="cannot read it"):
        load_profile(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[timings\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)


def test_claims_left_out_are_not_claimed():
    p = profile_from_mapping({"claims": {"occupancy": True, "sessions": False}})
    assert p.claims == {"occupancy"}
    assert profile_from_mapping({}).claims == frozenset(CLAIMS)  # no [claims]: everything, as ours


def test_a_profile_says_which_ocpp_versions_the_csms_speaks():
    assert load_profile().ocpp == ("1.6", "2.0.1")  # ours: one endpoint, both
    assert profile_from_mapping({}).ocpp == ("1.6",)  # a file that does not say: 1.6, as most central systems
    assert profile_from_mapping({"ocpp": ["2.0.1"]}).ocpp == ("2.0.1",)
    for bad in (["2.1"], "1.6", []):
        with pytest.raises(ProfileError, match="OCPP versions it speaks"):
            profile_from_mapping({"ocpp": bad})
