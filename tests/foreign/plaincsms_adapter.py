"""The `CsmsAdapter` for plaincsms (`tests/foreign/plaincsms.py`): its REST API only, no import of it.

What a QA team writes for a CSMS that is not ours: one class, built as
`PlainCsmsAdapter(ocpp_url, api_url, token)`, translating the harness's questions
into that CSMS's calls and its answers back. Profile: `tests/foreign/plaincsms.toml`.

The translation:
- verdicts: `GET /api/connectors?prefix=` (its own occupancy: free, busy, offline,
  unknown, with its reasons); a connector it lists no row for is asked alone
  (`GET /api/connectors/{cp}/{n}`; a charger it never saw is offline).
- start: `POST /api/start`; the session id is its start request id (it links the
  StartTransaction that follows to it), refusals mapped onto `Outcome` (table below).
- stop: `POST /api/stop {"requestId"}`.
- unlock: `POST /api/unlock`; `cleaned_sessions` are the start requests whose
  transactions the unlock ended (the charger's own StopTransaction UnlockCommand,
  or its close on an Unlocked answer), `warnings` name the transactions. Its profile claims no
  unlock_cleanup: it keeps no sessions and ends no start that never began.
- transactions: `GET /api/transactions?prefix=`; no sessions (`session` is None).
- session, reserve, create_reservation: NotSupportedError (it has neither).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import httpx

from scenarios.adapters.base import (
    OFFLINE,
    NotSupportedError,
    Outcome,
    StartResult,
    StoredSession,
    StoredTransaction,
    UnlockResult,
    Verdict,
)

__all__ = ["PlainCsmsAdapter", "CODES"]

CODES: dict[str, Outcome] = {  # plaincsms's error codes -> the harness's outcomes
    "connector_in_use": Outcome.CONNECTOR_BUSY,
    "charger_not_connected": Outcome.CHARGER_OFFLINE,
    "charger_rejected": Outcome.REMOTE_START_REJECTED,
    "charger_timeout": Outcome.TIMEOUT,
    "unknown_charger": Outcome.UNKNOWN_CHARGER,
}


def _verdict(row: dict[str, Any]) -> Verdict:
    return Verdict(row["state"], tuple(row.get("why", ())), row)


class PlainCsmsAdapter:
    """Asks plaincsms over its REST API with a bearer token."""

    def __init__(self, ocpp_url: str, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.ocpp_url = ocpp_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def describe(self) -> dict[str, Any]:
        """Its /health (name, version): the report's header names the CSMS judged."""
        body = (await self._http.get("/health")).json()
        return {k: body[k] for k in ("name", "version") if k in body}

    async def _get(self, path: str, **params: Any) -> Any:
        res = await self._http.get(path, params=params)
        if res.status_code != 200:
            raise RuntimeError(f"GET {path} answered {res.status_code}: {res.text[:300]}")
        return res.json()

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        res = await self._http.post(path, json=body)
        try:
            return res.status_code, res.json()
        except ValueError:
            return res.status_code, {"error": "not_json", "message": res.text[:300]}

    # ----------------------------------------------------------- verdicts
    async def verdicts(self, connectors: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Verdict]:
        wanted = list(connectors)
        prefix = os.path.commonprefix([cp for cp, _ in wanted])
        rows = (await self._get("/api/connectors", prefix=prefix))["connectors"]
        known = {(r["chargePoint"], int(r["connector"])): _verdict(r) for r in rows}
        out = {}
        for cp, n in wanted:
            if (cp, n) in known:
                out[(cp, n)] = known[(cp, n)]
                continue
            res = await self._http.get(f"/api/connectors/{cp}/{n}")
            if res.status_code == 404:  # it never saw this charger: nowhere to charge
                out[(cp, n)] = Verdict(OFFLINE, ("charger:unknown",))
            elif res.status_code == 200:
                out[(cp, n)] = _verdict(res.json())
            else:
                raise RuntimeError(f"GET /api/connectors/{cp}/{n} answered {res.status_code}: {res.text[:300]}")
        return out

    # ------------------------------------------------------------ actions
    async def start(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        """Remote start; the tariff has nowhere to go (no sessions, no fees)."""
        status, body = await self._post("/api/start", {"chargePoint": cp, "connector": connector, "idTag": id_tag})
        request = body.get("requestId")
        session_id = None if request is None else str(request)  # also on a timeout: the charger may start anyway
        if status == 200:
            return StartResult(True, session_id=session_id, status=status, message="the charger accepted")
        code = CODES.get(str(body.get("error")), Outcome.OTHER)
        return StartResult(
            False,
            session_id=session_id,
            status=status,
            code=code,
            message=str(body.get("message", "")),
            reasons=tuple(body.get("why", ())),
        )

    async def stop(self, session_id: str) -> bool:
        if not session_id.isdigit():
            return False
        status, _ = await self._post("/api/stop", {"requestId": int(session_id)})
        return status == 200

    async def unlock(self, cp: str, connector: int) -> UnlockResult:
        status, body = await self._post("/api/unlock", {"chargePoint": cp, "connector": connector})
        if status != 200:
            return UnlockResult(False, status=status, message=str(body.get("message", "")))
        closed = body.get("closedTransactions", [])
        return UnlockResult(
            unlocked=body.get("status") == "Unlocked",
            cleaned_sessions=tuple(str(r) for r in body.get("closedRequests", [])),
            status=status,
            message=f"the charger answered {body.get('status')}",
            warnings=tuple(f"transaction {t['transactionId']} closed ({t['stopReason']})" for t in closed),
        )

    async def reserve(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        raise NotSupportedError("plaincsms has no reservations or payments")

    async def create_reservation(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        raise NotSupportedError("plaincsms has no reservations or payments")

    async def session(self, session_id: str) -> StoredSession:
        raise NotSupportedError("plaincsms keeps no charging sessions")

    # -------------------------------------------------------------- stored
    async def transactions(self, cp_prefix: str) -> list[StoredTransaction]:
        rows = (await self._get("/api/transactions", prefix=cp_prefix))["transactions"]
        return [
            StoredTransaction(
                transaction_id=int(r["transactionId"]),
                cp=r["chargePoint"],
                connector=int(r["connector"]),
                id_tag=r["idTag"],
                meter_start=int(r["meterStart"]),
                meter_stop=None if r["meterStop"] is None else int(r["meterStop"]),
                stop_reason=r["stopReason"],
                closed=r["stopReason"] is not None,
            )
            for r in rows
        ]
