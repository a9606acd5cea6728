"""The adapter for unstuck's CSMS: its public REST API only (no `csms` import).

Station ids are the charge point ids: the harness runs the CSMS with
`--allow-unknown-chargers`, which registers a station of the same id on a
charge point's first boot.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import httpx

from .base import (
    OFFLINE,
    Outcome,
    StartResult,
    StoredSession,
    StoredTransaction,
    UnlockResult,
    Verdict,
)

__all__ = ["UnstuckRestAdapter"]


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class UnstuckRestAdapter:
    """Asks `csms serve` through `GET /api/connectors`, `/api/transactions`, `/api/ChargingSession/...`."""

    speaks_seed_api = True  # the seed's REST texts and codes: scenarios may check them exactly

    def __init__(self, ocpp_url: str, api_url: str, token: str, *, timeout: float = 30.0, cp_prefix: str = "") -> None:
        self.ocpp_url = ocpp_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.cp_prefix = cp_prefix  # narrows the all-connectors question to this run's charge points
        self._http = httpx.AsyncClient(
            base_url=self.api_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def describe(self) -> dict[str, Any]:
        """What the CSMS says of itself on /health: the report's header names it."""
        res = await self._http.get("/health")
        body = res.json() if res.headers.get("content-type", "").startswith("application/json") else {}
        return {k: body[k] for k in ("name", "version") if k in body}

    async def _get(self, path: str, **params: Any) -> Any:
        res = await self._http.get(path, params=params)
        if res.status_code != 200:
            raise RuntimeError(f"GET {path} answered {res.status_code}: {res.text[:300]}")
        return res.json()["data"]

    # ----------------------------------------------------------- verdicts
    async def verdicts(self, connectors: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Verdict]:
        wanted = list(connectors)
        rows = await self._get("/api/connectors", detail="true", chargePointIdPrefix=self.cp_prefix)
        out: dict[tuple[str, int], Verdict] = {}
        for row in rows:
            key = (row["chargePointId"], int(row["connectorId"]))
            out[key] = Verdict(row["verdict"], tuple(row.get("reasons", ())), row.get("signals"))
        for key in wanted:
            if key not in out:  # a connector the CSMS has no row for yet: ask it directly
                out[key] = await self.verdict(*key)
        return {key: out[key] for key in wanted}

    async def verdict(self, cp: str, connector: int) -> Verdict:
        res = await self._http.get(f"/api/connectors/{cp}/{connector}/occupancy")
        if res.status_code == 404:  # no station yet: it never booted, so it is nowhere to charge
            return Verdict(OFFLINE, ("station:unknown",))
        if res.status_code != 200:
            raise RuntimeError(f"occupancy of {cp}/{connector} answered {res.status_code}: {res.text[:300]}")
        row = res.json()["data"]
        return Verdict(row["verdict"], tuple(row.get("reasons", ())), row.get("signals"))

    # ------------------------------------------------------------ actions
    async def start(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        res = await self._http.post(
            "/api/ChargingSession/start-charging-session",
            json={
                "chargingStationId": cp,
                "connectorId": connector,
                "chargeTagId": id_tag,
                "chargingTariff": str(tariff),
            },
        )
        return _start_result(res, "sessionId")

    async def stop(self, session_id: str) -> bool:
        res = await self._http.post("/api/ChargingSession/stop-charging-session", json={"sessionId": session_id})
        return res.status_code == 200

    async def unlock(self, cp: str, connector: int) -> UnlockResult:
        res = await self._http.post(
            "/api/ChargingSession/unlock-connector", json={"chargingStationId": cp, "connectorId": connector}
        )
        body = res.json()
        data = body.get("data") or {}
        return UnlockResult(
            unlocked=res.status_code == 200 and data.get("status") == "Unlocked",
            cleaned_sessions=tuple(data.get("cleanedSessions", ())),
            status=res.status_code,
            message=body.get("message", ""),
            warnings=tuple(data.get("warnings", ())),
            sessions_cleared=data.get("sessionsCleared"),
        )

    async def create_reservation(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        res = await self._http.post(
            "/api/Payments/Create",
            json={
                "chargingStationId": cp,
                "connectorId": connector,
                "chargeTagId": id_tag,
                "chargingTariff": str(tariff),
            },
        )
        return _start_result(res, "reservationId")

    async def reserve(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        created = await self.create_reservation(cp, connector, id_tag, tariff)
        if not created.accepted:
            return created
        res = await self._http.post(
            "/api/Payments/Confirm", json={"reservationId": created.session_id, "paymentMethod": "card"}
        )
        return _start_result(res, "sessionId")

    # -------------------------------------------------------------- stored
    async def transactions(self, cp_prefix: str) -> list[StoredTransaction]:
        rows = await self._get("/api/transactions", chargePointIdPrefix=cp_prefix, limit=100000)
        return [_transaction(row) for row in rows]

    async def session(self, session_id: str) -> StoredSession:
        s = await self._get(f"/api/ChargingSession/{session_id}")
        return StoredSession(
            session_id=s["sessionId"],
            status=s.get("status"),
            tariff=_decimal(s.get("chargingTariff")),
            energy_wh=s.get("energyWh"),
            fee=_decimal(s.get("chargingTotalFee")),
            meter_source=s.get("meterSource"),
            reconciled=bool(s.get("reconciled")),
            end_reason=s.get("endReason"),
            review=bool(s.get("review")),
            ended=s.get("endTime") is not None,
        )


# What a refusal without its own code means (docs/harness.md, "Outcome codes").
_CODE_OF_STATUS = {404: Outcome.UNKNOWN_CHARGER, 403: Outcome.ID_TAG_REJECTED, 504: Outcome.TIMEOUT}


def _start_result(res: httpx.Response, id_field: str) -> StartResult:
    try:
        body = res.json()
    except ValueError:
        body = {"message": res.text[:300]}
    data = body.get("data") or {}
    code = data.get("code") or _CODE_OF_STATUS.get(res.status_code)
    return StartResult(
        accepted=res.status_code == 200,
        session_id=data.get(id_field),
        status=res.status_code,
        code=code,
        message=body.get("message", ""),
        reasons=tuple(data.get("reasons", ())),
    )


def _transaction(row: dict[str, Any]) -> StoredTransaction:
    s = row.get("session")
    session = (
        None
        if s is None
        else StoredSession(
            session_id=s["sessionId"],
            status=s.get("status"),
            tariff=_decimal(s.get("tariff")),
            energy_wh=s.get("energyWh"),
            fee=_decimal(s.get("fee")),
            meter_source=s.get("meterSource"),
            reconciled=bool(s.get("reconciled")),
            end_reason=s.get("endReason"),
            review=bool(s.get("review")),
            ended=(s["endTime"] is not None) if "endTime" in s else None,
        )
    )
    return StoredTransaction(
        transaction_id=int(row["transactionId"]),
        cp=row["chargePointId"],
        connector=int(row["connectorId"]),
        id_tag=row["idTag"],
        meter_start=int(row["meterStart"]),
        meter_stop=None if row.get("meterStop") is None else int(row["meterStop"]),
        stop_reason=row.get("stopReason"),
        closed=row.get("stopTime") is not None,
        session=session,
        station_tx_id=row.get("stationTransactionId"),
    )
