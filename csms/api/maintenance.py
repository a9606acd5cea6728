"""/api/maintenance/run: run every maintenance rule now (admin), optionally as a dry run."""

from __future__ import annotations

from fastapi import APIRouter, Request

from csms.api.auth import Admin
from csms.api.envelope import CamelModel, ok
from csms.db.cleanup_store import audit
from csms.services.maintenance import run_once

router = APIRouter(prefix="/api/maintenance", tags=["maintenance"])


class RunIn(CamelModel):
    dry_run: bool = False


@router.post("/run")
async def run_maintenance(request: Request, who: Admin, body: RunIn | None = None):
    dry_run = body.dry_run if body is not None else False
    ctx = request.app.state.ctx
    now = ctx.clock.now()
    ctx.db.submit(lambda s: audit(s, actor=who.name, action="maintenance.run_requested", at=now, dryRun=dry_run))
    actions = await run_once(request.app.state.ctx, dry_run=dry_run)
    rows = [
        {
            "kind": a.kind.value,
            "chargePointId": a.charge_point_id,
            "connectorId": a.connector_id,
            "subject": a.subject,
            "reason": a.reason,
        }
        for a in actions
    ]
    verb = "would apply" if dry_run else "applied"
    return ok({"dryRun": dry_run, "actions": rows}, f"Maintenance {verb} {len(rows)} action(s)")
