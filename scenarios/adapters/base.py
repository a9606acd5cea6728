"""How the harness asks a CSMS: one small interface, plain data in and out.

The scenarios and the oracle never import a CSMS. They speak OCPP to it through
the simulator, and ask it what it believes through a `CsmsAdapter`: the verdict
of a connector, start, stop, unlock, and what it stored. `unstuck_rest.py` is
the adapter for our CSMS's public REST API; a team with another CSMS writes one
class with the same methods (see docs/harness.md, "Judging another CSMS").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "FREE",
    "BUSY",
    "OFFLINE",
    "UNKNOWN",
    "Outcome",
    "Verdict",
    "StartResult",
    "UnlockResult",
    "StoredSession",
    "StoredTransaction",
    "CsmsAdapter",
    "NotSupportedError",
]

FREE, BUSY, OFFLINE, UNKNOWN = "free", "busy", "offline", "unknown"


class Outcome(StrEnum):
    """Why a start, stop or reservation was not accepted: the `code` an adapter puts in a StartResult.

    The catalogue judges these, never a CSMS's own texts; an adapter maps its CSMS's answers onto them
    (docs/harness.md has the table). A refusal that fits none is OTHER, with the CSMS's words in `message`.
    """

    CONNECTOR_BUSY = "ConnectorBusy"  # refused: the CSMS holds the connector in use or reserved
    CHARGER_OFFLINE = "ChargerOffline"  # refused: the charge point is not connected
    REMOTE_START_REJECTED = "RemoteStartRejected"  # the charge point answered RemoteStart... Rejected
    TIMEOUT = "Timeout"  # the charge point did not answer in time (it may still start: the CSMS should bill it)
    UNKNOWN_CHARGER = "UnknownCharger"  # the CSMS does not know the charge point
    ID_TAG_REJECTED = "IdTagRejected"  # the CSMS refused the id tag
    OTHER = "Other"  # anything else


class NotSupportedError(Exception):
    """The CSMS behind an adapter cannot answer this question (the scenario is skipped)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the CSMS believes about one connector, with its own explanation."""

    verdict: str  # FREE, BUSY, OFFLINE or UNKNOWN
    reasons: tuple[str, ...] = ()
    signals: Mapping[str, Any] | None = field(default=None, compare=False)  # raw signals, as the CSMS gives them


@dataclass(frozen=True, slots=True)
class StartResult:
    accepted: bool
    session_id: str | None = None
    status: int | None = None  # HTTP status (or None for a non-HTTP CSMS)
    code: str | None = None  # an Outcome when refused (compares equal to its string)
    message: str = ""
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnlockResult:
    unlocked: bool  # the charge point answered Unlocked
    cleaned_sessions: tuple[str, ...] = ()
    status: int | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()
    sessions_cleared: int | None = None  # the count the CSMS reports (None if it reports none)


@dataclass(frozen=True, slots=True)
class StoredSession:
    session_id: str
    status: str | None
    tariff: Decimal | None
    energy_wh: int | None
    fee: Decimal | None
    meter_source: str | None = None
    reconciled: bool = False
    end_reason: str | None = None
    review: bool = False  # the CSMS flagged this bill for a person (its readings contradict each other)
    ended: bool | None = None  # None: the CSMS does not say


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    transaction_id: int
    cp: str
    connector: int
    id_tag: str
    meter_start: int
    meter_stop: int | None
    stop_reason: str | None
    closed: bool
    session: StoredSession | None = None
    station_tx_id: str | None = None  # OCPP 2.0.1: the station's own transactionId, as the CSMS stored it


@runtime_checkable
class CsmsAdapter(Protocol):
    """What the harness needs from a CSMS. Coroutines; raise NotSupportedError for what it cannot do."""

    ocpp_url: str  # where charge points connect: {ocpp_url}/{chargePointId}

    async def verdicts(self, connectors: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Verdict]:
        """The CSMS's verdict for each (charge point, connector) asked about, in as few calls as it can."""
        ...

    async def start(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        """A user starts a session from the app (remote start)."""
        ...

    async def stop(self, session_id: str) -> bool:
        """A user stops a session from the app; True if the CSMS accepted the request."""
        ...

    async def unlock(self, cp: str, connector: int) -> UnlockResult:
        """The admin action for a stuck connector."""
        ...

    async def transactions(self, cp_prefix: str) -> list[StoredTransaction]:
        """Every transaction the CSMS stored for charge points whose id starts with `cp_prefix`."""
        ...

    async def session(self, session_id: str) -> StoredSession:
        """One charging session as the CSMS stored it (also one with no transaction: a start that never began)."""
        ...

    async def reserve(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        """A paid reservation of a connector (create + confirm); NotSupportedError if the CSMS has none."""
        ...

    async def create_reservation(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        """Only the first step of a paid reservation: created, never paid (`session_id` is the reservation's id).

        The client may abandon it there; the CSMS must hold the connector meanwhile and release it by itself.
        """
        ...

    async def aclose(self) -> None: ...
