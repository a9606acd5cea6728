"""What the CSMS under test promises: its timings and what it claims to do, read from a small TOML file.

The oracle holds a CSMS to its own promises, not to ours: a CSMS that keeps no
charging sessions is not failed for unbilled transactions, and one with a
two-minute orphan grace gets a recovery window that long. What a profile does
not claim is reported as "not claimed" (neither passed nor failed).

`scenarios/profiles/unstuck.toml` is our embedded CSMS's (the default);
`example.toml` beside it is annotated for a team writing its own.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

OCPP_VERSIONS = ("1.6", "2.0.1")  # what the simulator's fleets speak (simulator.wire): what a profile may name

__all__ = [
    "CLAIMS",
    "CsmsProfile",
    "NotClaimed",
    "ProfileError",
    "PROFILES_DIR",
    "DEFAULT_PROFILE",
    "load_profile",
]

PROFILES_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = PROFILES_DIR / "unstuck.toml"

CLAIMS: dict[str, str] = {
    "occupancy": "a verdict per connector (free, busy, offline) that heals within the recovery window",
    "transactions": "every transaction the chargers report is stored once and closed with their energy",
    "remote_start": "an app starts and stops charging through the CSMS (RemoteStart/StopTransaction)",
    "unlock_cleanup": "unlocking a connector ends the sessions stuck on it",
    "sessions": "app sessions with a tariff, billed energy x tariff, ended with their transaction",
    "reservations": "a paid reservation holds a connector, and is released by itself when abandoned",
}


class NotClaimed(Exception):
    """A scenario cannot go on: it needs what the CSMS's profile does not claim (reported, not failed)."""


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class CsmsProfile:
    """Timings in seconds; `claims` is a subset of CLAIMS."""

    name: str = "unstuck (embedded, quick timings)"
    offline_after: float = 5.0  # a charger silent this long (no message, no pong) is reported offline
    orphan_grace: float = 2.0  # an open transaction on a connector that reports Available is closed after this
    status_grace: float = 2.0  # a connector whose status is silent or contradicted is asked again after this
    sweep_interval: float = 1.0  # how often its periodic checks run (orphans, reservations, quiet transactions)
    recovery_window: float = 11.0  # after the faults stop, every connector is right within this
    call_timeout: float = 3.0  # how long it waits for a charger's answer (the fleet waits 2 s longer)
    live_evidence: float = 1.5  # an unlock keeps a transaction with a meter sample this recent (0: none)
    reservation_timeout: float = 15.0  # an unpaid reservation is released after this
    status_freshness: float = 12.0  # a stored status counts this long without a live one
    claims: frozenset[str] = field(default_factory=lambda: frozenset(CLAIMS))
    source: str = "built in"
    ocpp: tuple[str, ...] = ("1.6", "2.0.1")  # the OCPP versions it speaks (a file without `ocpp`: 1.6)

    def claims_all(self, *needed: str) -> bool:
        return all(n in self.claims for n in needed)

    def unclaimed(self, *needed: str) -> list[str]:
        return [n for n in needed if n not in self.claims]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in _TIMINGS}
        return {
            "name": self.name,
            "source": self.source,
            "ocpp": list(self.ocpp),
            "timings": out,
            "claims": sorted(self.claims),
        }


_TIMINGS = tuple(f.name for f in fields(CsmsProfile) if f.type in ("float", float))


def load_profile(path: str | Path | None = None) -> CsmsProfile:
    """The profile in `path` (default: our embedded CSMS's); ProfileError with the reason if it is unusable."""
    p = Path(path) if path is not None else DEFAULT_PROFILE
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"CSMS profile {p}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"CSMS profile {p}: not valid TOML ({exc})") from None
    return profile_from_mapping(data, source=str(p))


def profile_from_mapping(data: Mapping[str, Any], *, source: str = "built in") -> CsmsProfile:
    def bad(what: str) -> ProfileError:
        return ProfileError(f"CSMS profile {source}: {what}")

    unknown = set(data) - {"name", "ocpp", "timings", "claims"}
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}; a profile has name, ocpp, [timings] and [claims]")
    ocpp = data.get("ocpp", ["1.6"])
    if not isinstance(ocpp, list) or not ocpp or any(v not in OCPP_VERSIONS for v in ocpp):
        raise bad(f"ocpp = {ocpp!r}: a list of the OCPP versions it speaks, of {', '.join(OCPP_VERSIONS)}")
    if not isinstance(data.get("timings", {}), Mapping):
        raise bad("[timings] must be a table of name = seconds")
    timings = dict(data.get("timings") or {})
    extra = set(timings) - set(_TIMINGS)
    if extra:
        raise bad(f"unknown timing(s) {', '.join(sorted(extra))}; known: {', '.join(_TIMINGS)}")
    values: dict[str, Any] = {}
    for key, value in timings.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise bad(f"timings.{key} must be a number of seconds (0 or more), not {value!r}")
        values[key] = float(value)
    if "recovery_window" not in values:  # the slowest healing path it names, plus time for messages and sweeps
        base = CsmsProfile(**values)
        values["recovery_window"] = (
            max(base.offline_after, base.orphan_grace + base.status_grace) + 2 * base.sweep_interval + 2.0
        )
    if values["recovery_window"] < values.get("offline_after", CsmsProfile.offline_after):
        raise bad(
            f"timings.recovery_window ({values['recovery_window']:g} s) is shorter than offline_after "
            f"({values.get('offline_after', CsmsProfile.offline_after):g} s): no charger could be reported offline "
            "within it; the window is the time the CSMS needs for its slowest promise"
        )
    claims = data.get("claims")
    if claims is None:
        chosen = frozenset(CLAIMS)
    else:
        if not isinstance(claims, Mapping):
            raise bad("[claims] must be a table of name = true/false")
        wrong = set(claims) - set(CLAIMS)
        if wrong:
            raise bad(f"unknown claim(s) {', '.join(sorted(wrong))}; known: {', '.join(CLAIMS)}")
        not_bool = [k for k, v in claims.items() if not isinstance(v, bool)]
        if not_bool:
            raise bad(f"claims.{not_bool[0]} must be true or false")
        chosen = frozenset(k for k, v in claims.items() if v)
    name = data.get("name", Path(source).stem if source != "built in" else CsmsProfile.name)
    if not isinstance(name, str):
        raise bad("name must be a string")
    return CsmsProfile(name=name, claims=chosen, source=source, ocpp=tuple(ocpp), **values)
