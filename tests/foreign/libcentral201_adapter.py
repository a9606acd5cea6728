"""A `CsmsAdapter` for the `ocpp` library's 2.0.1 central system (`python -m tests.foreign.libcentral201_serve`).

A 2.0.1 central system we did not write, judged as a QA team would judge theirs: over its network API
only. It answers every station message and remembers what it received; it has no occupancy rule, no
sessions, no healing. The adapter answers the harness from what such a plain 2.0.1 central system
knows, read the way its own handlers would read it:
- **verdicts**: the station's WebSocket not open -> offline; a transaction it received an event of and
  no Ended for -> busy (on the EVSE the transaction's events named); else
  the EVSE's last StatusNotification (Available -> free, none -> unknown, anything else -> busy).
- **transactions**: one per station transactionId, in the order first seen; meterStart from the first
  Energy.Active.Import.Register it was sent, closed by the first Ended with its Transaction.End reading
  (or the last reading) and its stoppedReason. An event that names no EVSE books the transaction
  nowhere until one does (a plain central system has nothing else to go by).
- **start / stop**: RequestStartTransaction with a remoteStartId of its own; the session is the
  transaction whose Started carries that remoteStartId; stop sends RequestStopTransaction for it.
- **unlock**: UnlockConnector for (evseId, connector 1); it cleans nothing.
- No sessions, fees or reservations (NotSupportedError).
Profile: `tests/foreign/libcentral201.toml`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import trio

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

__all__ = ["LibCentral201Adapter"]

FOLDED = ("StatusNotification", "TransactionEvent")
ENERGY = "Energy.Active.Import.Register"


def _readings(payload: dict[str, Any]) -> list[tuple[str, int]]:
    """(context, Wh) of every energy register reading in an event, in order."""
    out = []
    for mv in payload.get("meterValue") or ():
        for sv in mv.get("sampledValue") or ():
            if sv.get("measurand", ENERGY) != ENERGY:
                continue
            unit = (sv.get("unitOfMeasure") or {}).get("unit", "Wh")
            value = Decimal(str(sv.get("value", 0)))
            out.append((sv.get("context", "Sample.Periodic"), int(value * 1000 if unit == "kWh" else value)))
    return out


@dataclass
class _Tx:
    number: int
    cp: str
    station_tx_id: str
    evse: int | None = None
    id_tag: str = ""
    meter_start: int | None = None
    remote_start_id: int | None = None
    ended: bool = False
    meter_stop: int | None = None
    stop_reason: str | None = None


@dataclass
class _Book:
    status: dict[tuple[str, int], str] = field(default_factory=dict)  # last connectorStatus per EVSE
    txs: dict[tuple[str, str], _Tx] = field(default_factory=dict)  # (cp, station transactionId) -> transaction
    connected: set[str] = field(default_factory=set)

    def fold(self, received: list[dict[str, Any]], connected: set[str]) -> None:
        for r in received:
            cp, action, p = r["cp"], r["action"], r["payload"]
            if action == "StatusNotification":
                self.status[(cp, int(p["evseId"]))] = p["connectorStatus"]
            elif action == "TransactionEvent":
                self._event(cp, p)
        self.connected = connected

    def _event(self, cp: str, p: dict[str, Any]) -> None:
        info = p.get("transactionInfo") or {}
        key = (cp, str(info.get("transactionId")))
        tx = self.txs.get(key)
        if tx is None:
            tx = self.txs[key] = _Tx(len(self.txs) + 1, cp, key[1])
        if tx.evse is None and isinstance(p.get("evse"), dict):
            tx.evse = int(p["evse"]["id"])
        if not tx.id_tag and isinstance(p.get("idToken"), dict):
            tx.id_tag = str(p["idToken"].get("idToken", ""))
        if tx.remote_start_id is None and info.get("remoteStartId") is not None:
            tx.remote_start_id = int(info["remoteStartId"])
        readings = _readings(p)
        if tx.meter_start is None and readings:
            tx.meter_start = readings[0][1]
        if p.get("eventType") == "Ended" and not tx.ended:
            ends = [wh for context, wh in readings if context == "Transaction.End"]
            tx.ended, tx.stop_reason = True, info.get("stoppedReason", "Local")
            tx.meter_stop = ends[-1] if ends else (readings[-1][1] if readings else tx.meter_start)


class LibCentral201Adapter:
    """Answers the harness from what `libcentral201_serve` received (it has no occupancy or session API)."""

    def __init__(self, ocpp_url: str, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.ocpp_url = ocpp_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )
        self._after = 0
        self._book = _Book()
        self._pulling = trio.Lock()  # the observer and the scenario ask at once; each record is folded once
        self._remote_ids = itertools.count(1)
        self._sessions: dict[str, tuple[str, int]] = {}  # session id -> (cp, remoteStartId)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def describe(self) -> dict[str, Any]:
        body = (await self._http.get("/health")).json()
        return {k: body[k] for k in ("name", "version") if k in body}

    async def _refresh(self) -> _Book:
        async with self._pulling:
            res = await self._http.get("/api/records", params={"after": self._after, "actions": ",".join(FOLDED)})
            if res.status_code != 200:
                raise RuntimeError(f"GET /api/records answered {res.status_code}: {res.text[:300]}")
            body = res.json()
            self._after = int(body["next"])
            self._book.fold(body["received"], set(body["connected"]))
        return self._book

    async def _call(self, cp: str, action: str, payload: dict[str, Any]) -> tuple[dict[str, Any] | None, int, str]:
        res = await self._http.post("/api/call", json={"cp": cp, "action": action, "payload": payload})
        body = res.json() if res.headers.get("content-type", "").startswith("application/json") else {}
        return body.get("result"), res.status_code, str(body.get("message", res.text[:300]))

    # ----------------------------------------------------------- verdicts
    async def verdicts(self, connectors: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Verdict]:
        book = await self._refresh()
        open_tx: dict[tuple[str, int], list[str]] = {}
        for tx in book.txs.values():
            if not tx.ended and tx.evse is not None:
                open_tx.setdefault((tx.cp, tx.evse), []).append(tx.station_tx_id)
        out = {}
        for key in connectors:
            last, txs, online = book.status.get(key), open_tx.get(key, []), key[0] in book.connected
            signals: dict[str, Any] = {"connected": online, "lastStatus": last, "openTransactions": txs}
            if not online:
                out[key] = Verdict(OFFLINE, ("station:disconnected",), signals)
            elif txs:
                out[key] = Verdict(BUSY, (*(f"transaction:{t}:open" for t in txs), f"status:{last}"), signals)
            elif last is None:
                out[key] = Verdict(UNKNOWN, ("status:none",), signals)
            else:
                out[key] = Verdict(FREE if last == "Available" else BUSY, (f"status:{last}",), signals)
        return out

    # ------------------------------------------------------------ actions
    async def start(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        remote_id = next(self._remote_ids)
        payload = {"idToken": {"idToken": id_tag, "type": "Central"}, "remoteStartId": remote_id, "evseId": connector}
        result, status, message = await self._call(cp, "RequestStartTransaction", payload)
        if result is None:
            code = {404: Outcome.CHARGER_OFFLINE, 504: Outcome.TIMEOUT}.get(status, Outcome.OTHER)
            return StartResult(False, status=status, code=code, message=f"RequestStartTransaction: {message}")
        if result.get("status") != "Accepted":
            said = result.get("status")
            return StartResult(False, status=status, code=Outcome.REMOTE_START_REJECTED, message=f"it said {said}")
        session_id = f"{cp}/{connector}/{remote_id}"
        self._sessions[session_id] = (cp, remote_id)
        return StartResult(True, session_id=session_id, status=status, message="the station accepted")

    async def stop(self, session_id: str) -> bool:
        if session_id not in self._sessions:
            return False
        cp, remote_id = self._sessions[session_id]
        book = await self._refresh()
        tx = next((t for t in book.txs.values() if t.cp == cp and t.remote_start_id == remote_id), None)
        if tx is None:
            return False
        result, _, _ = await self._call(cp, "RequestStopTransaction", {"transactionId": tx.station_tx_id})
        return result is not None and result.get("status") == "Accepted"

    async def unlock(self, cp: str, connector: int) -> UnlockResult:
        result, status, message = await self._call(cp, "UnlockConnector", {"evseId": connector, "connectorId": 1})
        if result is None:
            return UnlockResult(False, status=status, message=f"UnlockConnector: {message}")
        said = result.get("status")
        return UnlockResult(said == "Unlocked", status=status, message=f"the station said {said}")

    async def reserve(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        raise NotSupportedError("the ocpp-library 2.0.1 central system has no reservations or payments")

    async def create_reservation(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        raise NotSupportedError("the ocpp-library 2.0.1 central system has no reservations or payments")

    async def session(self, session_id: str) -> StoredSession:
        raise NotSupportedError("the ocpp-library 2.0.1 central system keeps no charging sessions")

    # -------------------------------------------------------------- stored
    async def transactions(self, cp_prefix: str) -> list[StoredTransaction]:
        book = await self._refresh()
        return [
            StoredTransaction(
                transaction_id=tx.number,
                cp=tx.cp,
                connector=tx.evse or 0,
                id_tag=tx.id_tag,
                meter_start=tx.meter_start or 0,
                meter_stop=tx.meter_stop,
                stop_reason=tx.stop_reason,
                closed=tx.ended,
                station_tx_id=tx.station_tx_id,
            )
            for tx in book.txs.values()
            if tx.cp.startswith(cp_prefix)
        ]
