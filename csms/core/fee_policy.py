"""What a force-ended session costs: `--force-end-fee charge|waive` (the seed's enhancement 4).

Pure. The policy covers sessions an admin force-ended (unlock-connector, reason
`ForceEnded`): there the operator stepped in, and may choose not to bill the driver
for it. Sessions the CSMS closed because a message was lost (`Orphaned`,
`Superseded`, `IdleTimeout`, `InvalidMeterStop`) are billed from their meter either way.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from enum import StrEnum

from csms.core.billing import Settlement

__all__ = ["FeePolicy", "WAIVABLE_REASONS", "waiver_reason", "apply_waiver"]

WAIVABLE_REASONS = frozenset({"ForceEnded"})
_ZERO = Decimal("0.00")


class FeePolicy(StrEnum):
    CHARGE = "charge"
    WAIVE = "waive"


def waiver_reason(policy: FeePolicy | str, end_reason: str) -> str | None:
    """Why this session's fee is waived, or None when it is billed."""
    if FeePolicy(policy) is FeePolicy.WAIVE and end_reason in WAIVABLE_REASONS:
        return f"fee waived: force-ended by an admin ({end_reason}) under --force-end-fee waive"
    return None


def apply_waiver(settlement: Settlement, policy: FeePolicy | str, end_reason: str) -> tuple[Settlement, str | None]:
    """The settlement to store (energy kept, fee 0.00 when waived) and the waiver's reason."""
    why = waiver_reason(policy, end_reason)
    return (settlement if why is None else replace(settlement, fee=_ZERO)), why
