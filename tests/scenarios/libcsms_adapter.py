"""A `CsmsAdapter` over the `ocpp` library's central system (`tests/simulator/libcsms.py`).

Software we did not write, judged by the same oracle: `LibCentral` is the
library's asyncio `ChargePoint` + `@on` handlers behind `websockets.serve`, as
its README builds one. It answers every Call and remembers what it received,
nothing more. This adapter lets the harness ask it the questions it asks any
CSMS, answering each from what such a plain central system really knows.

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
  oracle's fee and tariff checks have nothing to look at. `start` returns a
  session id made up here ("cp/connector/n": which remote start it was); `stop`
  looks for the StartTransaction that followed it on that connector with that
  id tag and sends RemoteStopTransaction for its transactionId.
- **No reservations.** `reserve` raises NotSupportedError.
- **No authorization backend.** Every id tag is Accepted, except those starting
  with BAD; nothing survives a restart of the central system.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import trio
from ocpp.v16 import call

from scenarios.adapters.base import (
    BUSY,
    FREE,
    OFFLINE,
    UNKNOWN,
    NotSupportedError,
    StartResult,
    StoredTransaction,
    UnlockResult,
    Verdict,
)
from tests.simulator.libcsms import LibCentral

__all__ = ["LibCsmsAdapter"]


class LibCsmsAdapter:
    """Answers the harness's questions from a running `LibCentral`'s own records (no REST API exists)."""

    def __init__(self, central: LibCentral) -> None:
        self.central = central
        self.ocpp_url = central.url
        self._sessions: dict[str, tuple[str, int, str, int]] = {}  # id -> (cp, connector, tag, starts before it)
        self._numbers = itertools.count(1)

    async def aclose(self) -> None:
        """The central system belongs to whoever started it."""

    # ----------------------------------------------------------- verdicts
    async def verdicts(self, connectors: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Verdict]:
        connected = set(self.central.connected())
        status: dict[tuple[str, int], str] = {}
        for r in self.central.received(action="StatusNotification"):
            status[(r.cp, int(r.payload["connectorId"]))] = r.payload["status"]
        stopped = {(r.cp, r.payload.get("transactionId")) for r in self.central.received(action="StopTransaction")}
        open_tx: dict[tuple[str, int], list[int]] = {}
        for s in self.central.started():
            if (s.cp, s.transaction_id) not in stopped:
                open_tx.setdefault((s.cp, s.connector_id), []).append(s.transaction_id)
        out = {}
        for key in connectors:
            last, txs = status.get(key), open_tx.get(key, [])
            signals: dict[str, Any] = {"connected": key[0] in connected, "lastStatus": last, "openTransactions": txs}
            if key[0] not in connected:
                out[key] = Verdict(OFFLINE, ("charger:disconnected",), signals)
            elif txs:
                out[key] = Verdict(BUSY, (*(f"transaction:{t}:open" for t in txs), f"status:{last}"), signals)
            elif last is None:
                out[key] = Verdict(UNKNOWN, ("status:none",), signals)
            else:
                out[key] = Verdict(FREE if last == "Available" else BUSY, (f"status:{last}",), signals)
        return out

    # ------------------------------------------------------------ actions
    async def _send(self, cp: str, request: Any) -> tuple[Any, str | None]:
        """(call_result, None), or (None, why) when the charge point is gone, silent or answers a CallError."""
        try:
            res = await trio.to_thread.run_sync(self.central.send, cp, request, True)
        except KeyError:
            return None, "ChargerOffline"
        except TimeoutError:
            return None, "Timeout"
        return (res, None) if res is not None else (None, "CallError")

    async def start(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        """RemoteStartTransaction; the tariff has nowhere to go (no sessions, no fees)."""
        before = len(self.central.started(cp))
        res, why = await self._send(cp, call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector))
        if res is None:
            return StartResult(False, code=why, message=f"RemoteStartTransaction: {why}")
        if res.status != "Accepted":
            return StartResult(False, code="RemoteStartRejected", message=f"the charge point said {res.status}")
        session_id = f"{cp}/{connector}/{next(self._numbers)}"
        self._sessions[session_id] = (cp, connector, id_tag, before)
        return StartResult(True, session_id=session_id, message="the charge point accepted")

    def transaction_of(self, session_id: str) -> int | None:
        """The transactionId of the first StartTransaction on that connector with that tag after the remote start."""
        if session_id not in self._sessions:
            return None
        cp, connector, tag, before = self._sessions[session_id]
        return next(
            (
                s.transaction_id
                for s in self.central.started(cp)[before:]
                if s.connector_id == connector and s.id_tag == tag
            ),
            None,
        )

    async def stop(self, session_id: str) -> bool:
        transaction_id = self.transaction_of(session_id)
        if transaction_id is None:
            return False
        cp = self._sessions[session_id][0]
        res, _ = await self._send(cp, call.RemoteStopTransaction(transaction_id=transaction_id))
        return res is not None and res.status == "Accepted"

    async def unlock(self, cp: str, connector: int) -> UnlockResult:
        """UnlockConnector, and nothing else: a plain central system closes no transaction for it."""
        res, why = await self._send(cp, call.UnlockConnector(connector_id=connector))
        if res is None:
            return UnlockResult(False, message=f"UnlockConnector: {why}")
        return UnlockResult(res.status == "Unlocked", message=f"the charge point said {res.status}")

    async def reserve(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        raise NotSupportedError("the ocpp-library central system has no reservations or payments")

    # -------------------------------------------------------------- stored
    async def transactions(self, cp_prefix: str) -> list[StoredTransaction]:
        """Every StartTransaction it answered, closed by the first StopTransaction for its id."""
        stops: dict[tuple[str, Any], dict[str, Any]] = {}
        for r in self.central.received(action="StopTransaction"):
            stops.setdefault((r.cp, r.payload.get("transactionId")), r.payload)
        out = []
        for s in self.central.started():
            if not s.cp.startswith(cp_prefix):
                continue
            stop = stops.get((s.cp, s.transaction_id))
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
