"""The console's transactions: the site's list (filters, paging, a CSV download) and one transaction with its chart.

Any signed-in role reads them. The rules live in pure modules (`transaction_rows`: filters, numbers,
CSV; `charts`: the SVG geometry); this shell reads the database and renders.
"""

from __future__ import annotations

from datetime import UTC

from fastapi import APIRouter, Request
from fastapi.responses import Response

from csms.db.session_end import ESTIMATED_REASONS
from csms.ui import transactions_store
from csms.ui.charts import energy_chart, series
from csms.ui.transaction_rows import csv_filename, csv_text, energy_wh, fee, kwh, parse_filter
from csms.ui.web import HEADERS, Refused, ctx_of, page, signed_in, site_now, station_path

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

# Stop reasons offered as suggestions: OCPP 1.6 Reason / 2.0.1 ReasonEnumType, then the CSMS's own closes.
REASONS = (
    "DeAuthorized",
    "EmergencyStop",
    "EVDisconnected",
    "HardReset",
    "Local",
    "Other",
    "PowerLoss",
    "Reboot",
    "Remote",
    "SoftReset",
    "UnlockCommand",
    *sorted(ESTIMATED_REASONS),
)


@router.get("/transactions")
async def transactions_page(request: Request):
    session = await signed_in(request)
    ctx = ctx_of(request)
    f = parse_filter(request.query_params, site_now(ctx).tzinfo or UTC)
    if request.query_params.get("format") == "csv":
        records = await ctx.db.read(lambda s: transactions_store.all_of(s, f))
        response = Response(
            csv_text(records).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename={csv_filename(ctx.clock.now().date())}"},
        )
        response.headers.update(HEADERS)
        return response
    found = await ctx.db.read(lambda s: transactions_store.page_of(s, f))
    return page(
        request,
        "transactions.html",
        session,
        f=f,
        rows=found.rows,
        energy_wh=energy_wh,
        kwh=kwh,
        fee=fee,
        reasons=REASONS,
        csv_url="/ui/transactions?" + f.query(format="csv"),
        older=None if found.older is None else "/ui/transactions?" + f.query(before=found.older),
        newest="/ui/transactions?" + f.query() if f.before is not None else None,
    )


@router.get("/transactions/{tx_id}")
async def transaction_page(request: Request, tx_id: str):
    session = await signed_in(request)
    ctx = ctx_of(request)
    if not tx_id.isdigit() or len(tx_id) > 12:
        raise Refused(404, "Not found", f"No transaction {tx_id!r}: transaction ids are numbers.")
    number = int(tx_id)
    detail = await ctx.db.read(lambda s: transactions_store.detail_of(s, number))
    if detail is None:
        raise Refused(404, "Not found", f"No transaction {number}.")
    t = detail.record
    points = series(
        t.start_time,
        t.meter_start,
        ((p.at, p.wh, p.w) for p in detail.samples),
        None if t.latest_meter_at is None or t.latest_meter_wh is None else (t.latest_meter_at, t.latest_meter_wh),
        None if t.stop_time is None or t.meter_stop is None else (t.stop_time, t.meter_stop),
    )
    station = detail.station_id or t.charge_point_id
    zone = site_now(ctx).tzinfo or UTC
    return page(
        request,
        "transaction.html",
        session,
        t=t,
        wh=energy_wh(t),
        kwh=kwh,
        fee=fee(t),
        points=points,
        chart=energy_chart(points, zone=zone),
        chart_narrow=energy_chart(points, width=360, height=240, x_ticks=2, zone=zone),  # a phone's: legible labels
        connector_url=f"/ui/connectors/{station_path(station)}/{t.connector_id}",
        sample_seconds=ctx.settings.meter_sample_seconds,
    )
