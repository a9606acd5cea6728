"""Provisioning a charge point (its id, station and password) for the REST API and the console alike."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio
from sqlalchemy.orm import Session

from csms.context import Context
from csms.core.chargepoint_auth import hash_password
from csms.db import credential_store
from csms.db.cleanup_store import audit

__all__ = ["Provisioned", "provision"]

log = logging.getLogger("csms.provisioning")


@dataclass(frozen=True)
class Provisioned:
    result: credential_store.ProvisionResult
    disconnected: bool  # a new password closed the charger's open connection here


async def provision(
    ctx: Context, cp_id: str, password: str | None, *, actor: str, create_station: bool, via: str | None = None
) -> Provisioned:
    """Register `cp_id` if new and set its password when given (a scrypt hash, audited in the same write).

    A new password is an end to trust in the old one: whoever holds the charger's open connection
    proved only that, so it is closed (this node's connection: in a cluster, a charger held by
    another node keeps its connection until it reconnects, then needs the new password).
    """
    pw_hash = None if password is None else await trio.to_thread.run_sync(hash_password, password)
    now = ctx.clock.now()

    def work(s: Session) -> credential_store.ProvisionResult:
        result = credential_store.provision(s, cp_id, pw_hash, now, create_station=create_station)
        extra: dict[str, Any] = {} if via is None else {"via": via}
        audit(
            s,
            actor=actor,
            action="charge_point.provisioned",
            at=now,
            charge_point_id=cp_id,
            created=result.created,
            passwordChanged=pw_hash is not None,
            **extra,
        )
        return result

    result = await ctx.db.write(work)
    ctx.known_charge_points.add(cp_id)
    log.info(
        "charge_point.provisioned charge_point=%s created=%s password_changed=%s by=%s",
        cp_id,
        result.created,
        pw_hash is not None,
        actor,
    )
    live = ctx.registry.local(cp_id) if pw_hash is not None else None
    if live is not None:
        log.warning("charge_point.password_rotated charge_point=%s (its open connection is closed)", cp_id)
        with trio.move_on_after(2):
            await live.connection.ws.aclose(1008, "password changed: reconnect with the new one")
    return Provisioned(result, live is not None)
