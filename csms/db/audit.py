"""The audit trail: one row per thing done to someone's money or connector, with who and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from csms.db.models import AuditEvent

__all__ = ["audit"]


def audit(
    s: Session,
    *,
    actor: str,
    action: str,
    at: datetime,
    charge_point_id: str | None = None,
    connector_id: int | None = None,
    subject: str | None = None,
    **details: Any,
) -> None:
    s.add(
        AuditEvent(
            at=at,
            actor=actor,
            action=action,
            charge_point_id=charge_point_id,
            connector_id=connector_id,
            subject=subject,
            details=details or None,
        )
    )
