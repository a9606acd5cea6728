"""A `CsmsAdapter` over the `ocpp` library's central system (`tests/simulator/libcsms.py`).

Software we did not write, judged by the same oracle: `LibCentral` is the
library's asyncio `ChargePoint` + `@on` handlers behind `websockets.serve`, as
its README builds one. It answers every Call and remembers what it received,
nothing more. This adapter lets the harness ask it the questions it asks any
CSMS, answering each from what such a plain central system really knows.

Two ways to reach it, one set of rules:
- over the network, as the harness builds any adapter: `LibCsmsAdapter(ocpp_url,
  api_url, token)` against `python -m tests.foreign.libcentral_serve` (its JSON
  API: `/api/records`, `/api/call`); profile `tests/foreign/libcentral.toml`;
- in process: `LibCsmsAdapter.in_process(central)` reads a `LibCentral` started
  by the test itself (`tests/scenarios/test_oracle_against_libcsms.py`).
Either way it folds what the central system received, as it comes, into the
little it needs (last status per connector, transactions started and stopped).

What a plain central system cannot answer, and how the adapter approximates:
- **No occupancy concept.** It has no rule for "is this connector free". The
  adapter derives one from what it received: the charge point's WebSocket is
  not open -> offline; a transaction it handed an id to and never saw a
  StopTransaction for -> busy; else the last StatusNotification (Available ->
  free, none yet -> unknown, anything else -> busy). So its verdict is exactly
  as good as what the charger says: it never asks (no TriggerMessage), has no
  orphan or stale-status rule and no heartbeat timeout (a hung charger whose
  socket is open stays "connected").
- **No recovery path.** A StopTransaction that never comes leaves the
  transaction open forever; a repeated StartTransaction gets a new id; an
  unlock only sends UnlockConnector and cleans nothing (`cleaned_sessions` is
  empty).
- **No sessions, tariffs or fees.** `StoredTransaction.session` is None, so the
  oracle's fee and tariff checks have nothing to look at; `session` raises
  NotSupportedError. `start` returns a session id made up here ("cp/connector/n":
  which remote start it was); `stop` looks for the StartTransaction that followed
  it on that connector with that id tag and sends RemoteStopTransaction for its
  transactionId.
- **No reservations.** `reserve` and `create_reservation` raise NotSupportedError.
- **No authorization backend.** Every id tag is Accepted, except those starting
  with BAD; nothing survives a restart of the central system.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import httpx
import trio
from ocpp.exceptions import OCPPError

from scenarios.adapters.base import (
    BUSY,
    FREE,
    OFFLINE,
    UNKNOWN,
    NotSupportedError,
    Outcome,
    StartResult,
    StoredSession,
    StoredTransaction,
    UnlockResult,
    Verdict,
)
from tests.foreign.libcentral_serve import VERSION, call_payload, result_json
from tests.simulator.libcsms import LibCentral, Started

__all__ = ["LibCsmsAdapter"]

FOLDED = ("StatusNotification", "StopTransaction")  # the only received actions a verdict or a stored row needs


@dataclass
class _Batch:
    """New records since the last pull, and who is connected now."""

    received: list[tuple[str, str, dict[str, Any]]]  # (cp, action, payload)
    started: list[Started]
    connected: set[str]


@dataclass
class _Answer:
    """A Call's fate: the charge point's result, or why there is none (an Outcome) and the CSMS's words."""

    result: dict[str, Any] | None
    code: Outcome | None = None
    message: str = ""
    status: int | None = None  # the HTTP status of the API (None in process)


class _Source(Protocol):
    async def describe(self) -> dict[str, Any]: ...
    async def pull(self) -> _Batch: ...
    async def call(self, cp: str, action: str, payload: dict[str, Any]) -> _Answer: ...
    async def aclose(self) -> None: ...


class _InProcess:
    """A `LibCentral` in this process: read its lists, send through its thread."""

    def __init__(self, central: LibCentral) -> None:
        self.central = central
        self._received = self._started = 0

    def pull_now(self) -> _Batch:
        received, started = self.central.records_since(self._received, self._started)
        self._received += len(received)
        self._started += len(started)
        return _Batch(
            [(r.cp, r.action, r.payload) for r in received if r.action in FOLDED],
            started,
            set(self.central.connected()),
        )

    async def pull(self) -> _Batch:
        return self.pull_now()

    async def describe(self) -> dict[str, Any]:
        return {"name": "libcentral (in process)", "version": VERSION}

    async def call(self, cp: str, action: str, payload: dict[str, Any]) -> _Answer:
        try:
            res = await trio.to_thread.run_sync(self.central.send, cp, call_payload(action, payload), False)
        except KeyError:
            return _Answer(None, Outcome.CHARGER_OFFLINE, f"{cp} is not connected")
        except TimeoutError:
            return _Answer(None, Outcome.TIMEOUT, f"{cp} did not answer {action} in time")
        except OCPPError as exc:
            return _Answer(None, Outcome.OTHER, f"{cp} answered {action} with {exc!r}")
        except Exception as exc:  # websockets.ConnectionClosed: gone while we waited
            return _Answer(None, Outcome.CHARGER_OFFLINE, f"{cp}: {exc!r}")
        return _Answer(result_json(res))

    async def aclose(self) -> None:
        """The central system belongs to whoever started it."""


class _OverHttp:
    """`tests.foreign.libcentral_serve`'s JSON API: records from a cursor on, Calls by name."""

    CODES = {404: Outcome.CHARGER_OFFLINE, 504: Outcome.TIMEOUT}  # its refusals; anything else is OTHER

    def __init__(self, api_url: str, token: str, timeout: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )
        self._received = self._started = 0

    async def describe(self) -> dict[str, Any]:
        body = (await self._http.get("/health")).json()
        return {k: body[k] for k in ("name", "version") if k in body}

    async def pull(self) -> _Batch:
        res = await self._http.get(
            "/api/records",
            params={"after": self._received, "startedAfter": self._started, "actions": ",".join(FOLDED)},
        )
        if res.status_code != 200:
            raise RuntimeError(f"GET /api/records answered {res.status_code}: {res.text[:300]}")
        body = res.json()
        self._received, self._started = int(body["next"]), int(body["startedNext"])
        return _Batch(
            [(r["cp"], r["action"], r["payload"]) for r in body["received"]],
            [Started(**s) for s in body["started"]],
            set(body["connected"]),
        )

    async def call(self, cp: str, action: str, payload: dict[str, Any]) -> _Answer:
        res = await self._http.post("/api/call", json={"cp": cp, "action": action, "payload": payload})
        try:
            body = res.json()
        except ValueError:
            body = {"message": res.text[:300]}
        if res.status_code == 200:
            return _Answer(body["result"], status=200)
        code = self.CODES.get(res.status_code, Outcome.OTHER)
        return _Answer(None, code, str(body.get("message", "")), res.status_code)

    async def aclose(self) -> None:
        await self._http.aclose()


@dataclass
class _Book:
    """What the central system received, folded: enough for verdicts and stored transactions."""

    status: dict[tuple[str, int], str] = field(default_factory=dict)  # last StatusNotification per connector
    stops: dict[tuple[str, Any], dict[str, Any]] = field(default_factory=dict)  # first StopTransaction per id
    started: list[Started] = field(default_factory=list)
    connected: set[str] = field(default_factory=set)

    def fold(self, batch: _Batch) -> None:
        for cp, action, payload in batch.received:
            if action == "StatusNotification":
                self.status[(cp, int(payload["connectorId"]))] = payload["status"]
            elif action == "StopTransaction":
                self.stops.setdefault((cp, payload.get("transactionId")), payload)
        self.started.extend(batch.started)
        self.connected = batch.connected

    def started_of(self, cp: str) -> list[Started]:
        return [s for s in self.started if s.cp == cp]


class LibCsmsAdapter:
    """Answers the harness's questions from a `LibCentral`'s own records (it has no occupancy or session API)."""

    def __init__(self, ocpp_url: str, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.ocpp_url = ocpp_url.rstrip("/")
        self._setup(_OverHttp(api_url, token, timeout))

    @classmethod
    def in_process(cls, central: LibCentral) -> LibCsmsAdapter:
        """For a `LibCentral` the test started in this process (no API in between)."""
        self = cls.__new__(cls)
        self.ocpp_url = central.url
        self._setup(_InProcess(central))
        return self

    def _setup(self, source: _Source) -> None:
        self._source = source
        self._book = _Book()
        self._pulling = trio.Lock()  # the observer and the scenario ask at once; each record is folded once
        self._sessions: dict[str, tuple[str, int, str, int]] = {}  # id -> (cp, connector, tag, starts before it)
        self._numbers = itertools.count(1)

    async def aclose(self) -> None:
        await self._source.aclose()

    async def describe(self) -> dict[str, Any]:
        """The report's header names the CSMS judged (its /health over the network)."""
        return await self._source.describe()

    async def _refresh(self) -> _Book:
        async with self._pulling:
            self._book.fold(await self._source.pull())
        return self._book

    # ----------------------------------------------------------- verdicts
    async def verdicts(self, connectors: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Verdict]:
        book = await self._refresh()
        open_tx: dict[tuple[str, int], list[int]] = {}
        for s in book.started:
            if (s.cp, s.transaction_id) not in book.stops:
                open_tx.setdefault((s.cp, s.connector_id), []).append(s.transaction_id)
        out = {}
        for key in connectors:
            last, txs = book.status.get(key), open_tx.get(key, [])
            online = key[0] in book.connected
            signals: dict[str, Any] = {"connected": online, "lastStatus": last, "openTransactions": txs}
            if not online:
                out[key] = Verdict(OFFLINE, ("charger:disconnected",), signals)
            elif txs:
                out[key] = Verdict(BUSY, (*(f"transaction:{t}:open" for t in txs), f"status:{last}"), signals)
            elif last is None:
                out[key] = Verdict(UNKNOWN, ("status:none",), signals)
            else:
                out[key] = Verdict(FREE if last == "Available" else BUSY, (f"status:{last}",), signals)
        return out

    # ------------------------------------------------------------ actions
    async def start(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        """RemoteStartTransaction; the tariff has nowhere to go (no sessions, no fees)."""
        before = len((await self._refresh()).started_of(cp))
        ans = await self._source.call(cp, "RemoteStartTransaction", {"idTag": id_tag, "connectorId": connector})
        if ans.result is None:
            return StartResult(
                False, status=ans.status, code=ans.code, message=f"RemoteStartTransaction: {ans.message}"
            )
        said = ans.result.get("status")
        if said != "Accepted":
            return StartResult(
                False, status=ans.status, code=Outcome.REMOTE_START_REJECTED, message=f"the charge point said {said}"
            )
        session_id = f"{cp}/{connector}/{next(self._numbers)}"
        self._sessions[session_id] = (cp, connector, id_tag, before)
        return StartResult(True, session_id=session_id, status=ans.status, message="the charge point accepted")

    def transaction_of(self, session_id: str) -> int | None:
        """The transactionId of the first StartTransaction on that connector with that tag after the remote start.

        From what was folded so far; in process it reads the central system first.
        """
        if session_id not in self._sessions:
            return None
        if isinstance(self._source, _InProcess):
            self._book.fold(self._source.pull_now())
        cp, connector, tag, before = self._sessions[session_id]
        return next(
            (
                s.transaction_id
                for s in self._book.started_of(cp)[before:]
                if s.connector_id == connector and s.id_tag == tag
            ),
            None,
        )

    async def stop(self, session_id: str) -> bool:
        await self._refresh()
        transaction_id = self.transaction_of(session_id)
        if transaction_id is None:
            return False
        cp = self._sessions[session_id][0]
        ans = await self._source.call(cp, "RemoteStopTransaction", {"transactionId": transaction_id})
        return ans.result is not None and ans.result.get("status") == "Accepted"

    async def unlock(self, cp: str, connector: int) -> UnlockResult:
        """UnlockConnector, and nothing else: a plain central system closes no transaction for it."""
        ans = await self._source.call(cp, "UnlockConnector", {"connectorId": connector})
        if ans.result is None:
            return UnlockResult(False, status=ans.status, message=f"UnlockConnector: {ans.message}")
        said = ans.result.get("status")
        return UnlockResult(said == "Unlocked", status=ans.status, message=f"the charge point said {said}")

    async def reserve(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        raise NotSupportedError("the ocpp-library central system has no reservations or payments")

    async def create_reservation(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        raise NotSupportedError("the ocpp-library central system has no reservations or payments")

    async def session(self, session_id: str) -> StoredSession:
        raise NotSupportedError("the ocpp-library central system keeps no charging sessions")

    # -------------------------------------------------------------- stored
    async def transactions(self, cp_prefix: str) -> list[StoredTransaction]:
        """Every StartTransaction it answered, closed by the first StopTransaction for its id."""
        book = await self._refresh()
        out = []
        for s in book.started:
            if not s.cp.startswith(cp_prefix):
                continue
            stop = book.stops.get((s.cp, s.transaction_id))
            out.append(
                StoredTransaction(
                    transaction_id=s.transaction_id,
                    cp=s.cp,
                    connector=s.connector_id,
                    id_tag=s.id_tag,
                    meter_start=s.meter_start,
                    meter_stop=None if stop is None else int(stop["meterStop"]),
                    stop_reason=None if stop is None else stop.get("reason", "Local"),
                    closed=stop is not None,
                )
            )
        return out
