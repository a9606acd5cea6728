"""/api/connectors: occupancy verdicts with their reasons and raw signals (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from csms.api.auth import Admin
from csms.api.envelope import ApiError, ok
from csms.core.occupancy import Verdict
from csms.services.occupancy import evaluate, evaluate_all, explain
from csms.services.sessions import active_station

router = APIRouter(prefix="/api/connectors", tags=["connectors"])


def _minutes(ctx) -> float:
    return ctx.settings.freshness.total_seconds() / 60


@router.get("/{station_id}/{connector_id}/occupancy")
async def connector_occupancy(
    station_id: str, connector_id: Annotated[int, Path(ge=0, le=100)], request: Request, who: Admin
):
    ctx = request.app.state.ctx
    station = await active_station(ctx, station_id)
    ev = await evaluate(ctx, station.charge_point_id, connector_id)
    return ok({"chargingStationId": station.id, **explain(ev, _minutes(ctx))})


_SHORT = ("chargePointId", "connectorId", "verdict", "reasons")


@router.get("")
async def list_connectors(
    request: Request,
    who: Admin,
    verdict: str | None = None,
    detail: Annotated[bool, Query(description="each row is the full occupancy answer, with every raw signal")] = False,
    charge_point_id_prefix: Annotated[
        str | None,
        Query(alias="chargePointIdPrefix", max_length=64, description="only charge points whose id starts with this"),
    ] = None,
):
    ctx = request.app.state.ctx
    if verdict is not None and verdict not in {v.value for v in Verdict}:
        raise ApiError(400, f"verdict must be one of {', '.join(v.value for v in Verdict)}")
    evaluations = await evaluate_all(ctx, charge_point_id_prefix=charge_point_id_prefix)
    rows = [explain(ev, _minutes(ctx)) for ev in evaluations]
    if verdict is not None:
        rows = [r for r in rows if r["verdict"] == verdict]
    return ok(rows if detail else [{k: r[k] for k in _SHORT} for r in rows])
